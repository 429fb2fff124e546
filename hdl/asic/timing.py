"""The critical path of a mapped netlist: OpenSTA over the characterised Liberty, or an estimate.

``nldm-sta``: OpenSTA (Debian's ``opensta``, the ``sta`` command) reads the
Liberty with the NLDM tables of `hdl.asic.characterize`, the mapped netlist and
a clock on ``clk``; every input is taken to come from a flop (input delay = the
flop's clock-to-Q delay at the larger characterised load, 100 ps transition),
outputs are not timed (in the array every PE output feeds a flop, which the
register-to-register paths cover). The minimum period is the clock period less
the worst setup slack. Loads are the input pins' capacitances only (no wires,
no buffering or resizing: a pre-layout figure).

``estimate``: when OpenSTA or ngspice is not there, logic depth (cells on the
longest path) x the FO4 inverter delay measured in ngspice, labelled so.
"""

import re
import shutil
import subprocess
from pathlib import Path

from ..toolchain import ToolError
from .pdk import FLOP

__all__ = ["sta_command", "critical_path", "estimate"]

_PERIOD = 20.0          # ns: generous, so every path has positive slack to subtract


def sta_command():
    """The OpenSTA executable (``STA`` in the environment, else ``sta``), or None."""
    import os
    return shutil.which(os.environ.get("STA", "sta"))


def _clock_to_q(timing):
    arcs = timing[FLOP]["arcs"]
    (arc,) = next(iter(arcs.values()))
    return max(arc["cell_rise"][0][-1], arc["cell_fall"][0][-1])


def _bits(term, widths):
    """The single-bit references a netlist term stands for, most significant first."""
    term = term.strip()
    ranged = re.fullmatch(r"(\S+)\s*\[(\d+):(\d+)\]", term)
    if ranged:
        name, hi, lo = ranged.group(1), int(ranged.group(2)), int(ranged.group(3))
        return [f"{name}[{i}]" for i in range(hi, lo - 1, -1)]
    if "[" in term or term not in widths:
        return [term]
    hi, lo = widths[term]
    return [f"{term}[{i}]" for i in range(hi, lo - 1, -1)]


def _split_assign(match, widths):
    def side(text):
        text = text.strip()
        parts = text[1:-1].split(",") if text.startswith("{") else [text]
        return [bit for part in parts for bit in _bits(part, widths)]
    lhs, rhs = side(match.group(1)), side(match.group(2))
    if len(lhs) != len(rhs):
        return match.group(0)
    return "\n".join(f"  assign {a} = {b};" for a, b in zip(lhs, rhs))


def _sta_netlist(text):
    """The netlist in the Verilog subset OpenSTA (2019) reads: no `signed`, one bit per assign."""
    text = re.sub(r"\b(input|output|wire)\s+signed\b", r"\1", text)
    widths = {name: (int(hi), int(lo)) for hi, lo, name in
              re.findall(r"^\s*(?:wire|input|output)\s+\[(\d+):(\d+)\]\s+(\S+);", text, re.M)}
    return re.sub(r"^\s*assign\s+(.+?)\s*=\s*(.+?);", lambda m: _split_assign(m, widths), text, flags=re.M)


def critical_path(work_dir, liberty_path, timing, *, netlist="mapped.v"):
    """Time `netlist` in `work_dir`; return {"method", "period_ns", "fmax_mhz", "startpoint", "endpoint"}."""
    command = sta_command()
    if command is None:
        raise ToolError("OpenSTA (`sta`) not found; install it (apt-get install opensta, or ./setup.sh)")
    work = Path(work_dir)
    (work / "sta.v").write_text(_sta_netlist((work / netlist).read_text()))
    if Path(liberty_path).resolve() != (work / "timed.lib").resolve():
        shutil.copyfile(liberty_path, work / "timed.lib")
    clock_to_q = _clock_to_q(timing)
    (work / "sta.tcl").write_text(f"""\
read_liberty timed.lib
read_verilog sta.v
link_design top
create_clock -name clk -period {_PERIOD} [get_ports clk]
set inputs [delete_from_list [all_inputs] [get_ports clk]]
set_input_delay {clock_to_q:.4f} -clock clk $inputs
set_input_transition 0.1 $inputs
report_checks -path_delay max -digits 4 -format full
exit
""")
    result = subprocess.run([command, "-no_init", "-exit", "sta.tcl"], cwd=work, capture_output=True, text=True)
    log = result.stdout + result.stderr
    (work / "sta.log").write_text(log)
    slack = re.search(r"^\s*(-?[\d.]+)\s+slack \((MET|VIOLATED)\)", log, re.M)
    if result.returncode != 0 or slack is None:
        last = [line for line in log.splitlines() if line.strip()][-1:] or ["(no output)"]
        raise ToolError(f"OpenSTA found no timed path: {last[0].strip()} (log: {work / 'sta.log'})")
    period = _PERIOD - float(slack.group(1))
    start = re.search(r"^Startpoint:\s*(\S+)", log, re.M)
    end = re.search(r"^Endpoint:\s*(\S+)", log, re.M)
    return {"method": "nldm-sta", "period_ns": round(period, 4), "fmax_mhz": round(1e3 / period, 1),
            "startpoint": start.group(1) if start else None, "endpoint": end.group(1) if end else None}


def estimate(logic_depth, fo4_ns):
    """The labelled estimate: `logic_depth` x FO4 delay."""
    period = logic_depth * fo4_ns
    return {"method": "estimate (logic depth x FO4)", "period_ns": round(period, 4),
            "fmax_mhz": round(1e3 / period, 1) if period else None, "fo4_ns": round(fo4_ns, 5)}
