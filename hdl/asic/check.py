"""Checks of what the flow generates: Liberty functions against the cells' own models, netlists against RTL.

`check_functions` simulates every cell's functional Verilog model (the
library's, with its UDPs, in Icarus Verilog) beside the same cell as Yosys
reads it back from the generated Liberty (``read_liberty``, then
``write_verilog``), over every input combination of a combinational cell and a
random clocked sequence for the flop; any difference is reported. Neither side
uses the Python that wrote the Liberty, so a wrong function cannot check itself.

`prove_equivalent` proves a mapped netlist equivalent to its RTL with Yosys's
``equiv_make`` / ``equiv_simple`` / ``equiv_induct`` / ``equiv_status
-assert``, the cells taken with their Liberty functions. The RTL side only goes
through ``proc``, ``flatten`` and ``wreduce`` (which drops register bits nothing
reads, as synthesis does, so that they are not left as unmatched points).
"""

import hashlib
import itertools
import json
import random
import re
import shutil
import subprocess
from pathlib import Path

from ..toolchain import ToolError, run_tool

__all__ = ["check_functions", "prove_equivalent"]

_PREFIX = "liberty__"


def _testbench(cells, flop_cycles):
    lines = ["`timescale 1ns/1ps", "module tb;", "  integer errors = 0;"]
    body = []
    rng = random.Random(1)
    for n, cell in enumerate(sorted(cells.values(), key=lambda c: c.name)):
        ins = [p for p in cell.inputs]
        for pin in ins:
            lines.append(f"  reg c{n}_{pin};")
        for pin in cell.outputs:
            lines.append(f"  wire c{n}_{pin}_model, c{n}_{pin}_lib;")
        for suffix, module in (("model", cell.name), ("lib", _PREFIX + cell.name)):
            conns = [f".{p}(c{n}_{p})" for p in ins] + [f".{p}(c{n}_{p}_{suffix})" for p in cell.outputs]
            lines.append(f"  {module} u{n}_{suffix} ({', '.join(conns)});")
        compare = " || ".join(f"c{n}_{p}_model !== c{n}_{p}_lib" for p in cell.outputs)
        show = ", ".join(f"c{n}_{p}" for p in ins + [q + s for q in cell.outputs for s in ("_model", "_lib")])
        fmt = " ".join("%b" for _ in ins + [q for q in cell.outputs for _ in (0, 1)])
        report = (f"begin errors = errors + 1; $display(\"MISMATCH {cell.name} {fmt}\", {show}); end")
        if cell.flop is None:
            for bits in itertools.product((0, 1), repeat=len(ins)):
                sets = " ".join(f"c{n}_{p} = {b};" for p, b in zip(ins, bits))
                body.append(f"    {sets} #1; if ({compare}) {report}")
        else:
            d, clk = cell.flop
            body.append(f"    c{n}_{clk} = 0; c{n}_{d} = 0; #1;")
            for _ in range(flop_cycles):
                body.append(f"    c{n}_{d} = {rng.getrandbits(1)}; #1; c{n}_{clk} = 1; #1; "
                            f"if ({compare}) {report} c{n}_{clk} = 0; #1;")
        body.append(f"    $display(\"CHECKED {cell.name}\");")
    lines += ["  initial begin", *body, "    $display(\"ERRORS %0d\", errors);", "    $finish;", "  end",
              "endmodule"]
    return "\n".join(lines) + "\n"


def check_functions(cells, liberty_path, work_dir, *, flop_cycles=64):
    """Compare each cell of `cells` in the Liberty at `liberty_path` with its functional model.

    Returns ``{"checked": [cell names], "mismatches": [lines]}``; raises ToolError if
    Icarus Verilog (``iverilog``) is missing.
    """
    if shutil.which("iverilog") is None:
        raise ToolError("iverilog not found; install it (apt-get install iverilog, or ./setup.sh) "
                        "to check the Liberty functions")
    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(liberty_path, work / "cells.lib")
    run_tool("YOSYS", ["-q", "-p", "read_liberty cells.lib; write_verilog -noattr liberty_cells.v"],
             cwd=work, log_path=work / "liberty_cells.log")
    text = (work / "liberty_cells.v").read_text()
    text = re.sub(r"^module (\w+)", lambda m: f"module {_PREFIX}{m.group(1)}", text, flags=re.M)
    (work / "liberty_cells.v").write_text(text)
    (work / "tb.v").write_text(_testbench(cells, flop_cycles))
    models = [str(c.model) for c in cells.values()]
    compile_ = subprocess.run(["iverilog", "-g2005", "-grelative-include", "-DUNIT_DELAY=", "-o", "tb.vvp",
                               "tb.v", "liberty_cells.v", *models], cwd=work, capture_output=True, text=True)
    if compile_.returncode != 0:
        raise ToolError(f"iverilog failed: {(compile_.stderr.strip().splitlines() or ['?'])[-1]}")
    run = subprocess.run(["vvp", "-n", "tb.vvp"], cwd=work, capture_output=True, text=True)
    (work / "tb.log").write_text(run.stdout + run.stderr)
    checked = re.findall(r"^CHECKED (\S+)", run.stdout, re.M)
    mismatches = re.findall(r"^MISMATCH .*", run.stdout, re.M)
    if not re.search(r"^ERRORS \d+", run.stdout, re.M):
        raise ToolError(f"the Liberty check simulation did not finish (log: {work / 'tb.log'})")
    return {"checked": checked, "mismatches": mismatches}


_EQUIV = """\
read_rtlil {rtl}
hierarchy -top top
proc
flatten
wreduce
opt_clean
rename top gold
design -stash gold
read_liberty cells.lib
read_verilog {netlist}
hierarchy -top top
flatten
rename top gate
design -stash gate
design -copy-from gold -as gold gold
design -copy-from gate -as gate gate
equiv_make gold gate equiv
hierarchy -top equiv
equiv_simple
equiv_induct
equiv_status -assert
"""


def prove_equivalent(work_dir, *, rtl="top.il", netlist="mapped.v", liberty="cells.lib"):
    """Prove `netlist` (cells of `liberty`) equivalent to `rtl`, all in `work_dir`; True if proven.

    Returns False when Yosys finds unproven or failing points (the log,
    ``equiv.log``, says which); raises ToolError if Yosys itself fails otherwise.
    A verdict already reached in `work_dir` for the same files is returned again
    (proving a multiplier takes minutes).
    """
    work = Path(work_dir)
    if liberty != "cells.lib":
        shutil.copyfile(work / liberty, work / "cells.lib")
    script = _EQUIV.format(rtl=rtl, netlist=netlist)
    digest = hashlib.sha256("\0".join([script] + [(work / f).read_text() for f in (rtl, netlist, "cells.lib")])
                            .encode()).hexdigest()
    verdict = work / "equiv.verdict.json"
    if verdict.exists():
        stored = json.loads(verdict.read_text())
        if stored.get("inputs") == digest:
            return stored["proven"]
    (work / "equiv.ys").write_text(script)
    try:
        run_tool("YOSYS", ["-l", "equiv.log", "-q", "-s", "equiv.ys"], cwd=work)
    except ToolError:
        log = (work / "equiv.log").read_text() if (work / "equiv.log").exists() else ""
        if "unproven $equiv" not in log:
            raise
    log = (work / "equiv.log").read_text()
    found = re.search(r"Of those cells (\d+) are proven and (\d+) are unproven", log)
    proven = bool(found) and int(found.group(2)) == 0 and int(found.group(1)) > 0
    verdict.write_text(json.dumps({"inputs": digest, "proven": proven}))
    return proven
