"""Synthesis of an Amaranth component onto sky130_fd_sc_hd with (YoWASP) Yosys.

The component is converted with Amaranth's RTLIL backend, then Yosys runs its
generic ``synth -flatten`` (``-booth`` for a Booth-encoded multiplier), maps
flip-flops with ``dfflibmap`` and logic with ``abc -liberty`` to the generated
Liberty, and reports area (``stat -liberty``) and logic depth (``ltp`` with the
flops and memories cut out: cells on the longest combinational path). Memories, when kept, stay
``$mem_v2`` cells: an ASIC would use SRAM macros, which this library does not
have, so their bits are counted and not their area.

The WebAssembly Yosys sees only its working directory: the Liberty is copied there.
A folder that already holds a finished run of the same RTL, script and Liberty
is reused as it is (the big arrays take minutes).
"""

import hashlib
import json
import re
import shutil
from pathlib import Path

from ..toolchain import run_tool
from .pdk import FLOP

__all__ = ["synthesize", "SynthResult"]

_MAP = """\
dfflibmap -liberty cells.lib
abc -liberty cells.lib
delete t:$scopeinfo
opt_clean
tee -q -o stat.json stat -json -liberty cells.lib
write_verilog -noattr mapped.v
select t:$mem_v2
write_rtlil -selected memories.il
select -clear
read_liberty -lib cells.lib
delete t:$mem_v2 t:sky130_fd_sc_hd__dfxtp_1
tee -q -o ltp.txt ltp
"""

# `synth` up to its fine stage, then its fine stage without memory_map.
_KEEP_MEMORIES = """\
synth -flatten -top top{booth} -run begin:fine
opt -fast -full
opt -full
techmap
opt -fast
abc
opt -fast
"""


class SynthResult(dict):
    """{"area_um2", "cells", "flops", "logic_depth", "memory_bits", "cell_types"} of one mapped design."""


def synthesize(component, work_dir, liberty_path, *, booth=False, keep_memories=False):
    """Map `component` (its top named ``top``) in `work_dir`; return a `SynthResult`.

    Leaves ``top.il`` (the RTL), ``mapped.v`` (the netlist), ``cells.lib`` and
    Yosys's log ``synth.log`` in `work_dir`.
    """
    from amaranth.back import rtlil

    work = Path(work_dir)
    work.mkdir(parents=True, exist_ok=True)
    rtl = rtlil.convert(component, name="top", emit_src=False)
    booth = " -booth" if booth else ""
    body = _KEEP_MEMORIES.format(booth=booth) if keep_memories else f"synth -flatten -top top{booth}\n"
    script = "read_rtlil top.il\nhierarchy -top top\n" + body + _MAP
    inputs = hashlib.sha256("\0".join([rtl, script, Path(liberty_path).read_text()]).encode()).hexdigest()
    stamp = work / "inputs.sha256"
    # The same RTL, script and Liberty as a finished run in `work`: its results stand.
    if stamp.exists() and stamp.read_text() == inputs and (work / "stat.json").exists():
        return read_result(work)
    stamp.unlink(missing_ok=True)
    shutil.copyfile(liberty_path, work / "cells.lib")
    (work / "top.il").write_text(rtl)
    (work / "synth.ys").write_text(script)
    run_tool("YOSYS", ["-q", "-l", "synth.log", "-s", "synth.ys"], cwd=work)
    result = read_result(work)
    stamp.write_text(inputs)
    return result


def read_result(work):
    """The `SynthResult` of a finished run in `work`."""
    stat = json.loads((work / "stat.json").read_text())
    design = stat["design"]
    types = design.get("num_cells_by_type", {})
    found = re.search(r"length=(\d+)", (work / "ltp.txt").read_text())
    memory_bits = 0
    memories = (work / "memories.il").read_text()
    for cell in re.findall(r"cell \$mem_v2 .*?\n  end", memories, re.S):
        size = re.search(r"parameter \\SIZE (\d+)", cell)
        width = re.search(r"parameter \\WIDTH (\d+)", cell)
        memory_bits += int(size.group(1)) * int(width.group(1))
    unmapped = sorted(t for t in types if not t.startswith("sky130_fd_sc_hd__") and t != "$mem_v2")
    if unmapped:
        raise RuntimeError(f"cells left unmapped: {', '.join(unmapped)} (log: {work / 'synth.log'})")
    return SynthResult(
        area_um2=round(float(design["area"]), 4),
        cells=int(design["num_cells"]) - types.get("$mem_v2", 0),
        flops=int(types.get(FLOP, 0)),
        logic_depth=int(found.group(1)) if found else None,
        memory_bits=memory_bits,
        cell_types={t: n for t, n in types.items() if t.startswith("sky130_fd_sc_hd__")},
    )
