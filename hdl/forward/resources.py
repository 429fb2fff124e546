"""Resources of every whole-forward unit on iCE40: Yosys ``synth_ice40 -dsp``, then nextpnr packing.

    python -m hdl.forward.resources [--checkpoint DIR] [--only NAME] [--no-pack] [--json]

Each unit is sized from the checkpoint's compiled artefact (`hdl.forward.units`)
and synthesized alone; the table gives Yosys's cell counts (SB_LUT4,
SB_CARRY, flip-flops, SB_MAC16 DSPs, SB_RAM40_4K EBRs) and nextpnr's packed
logic cells (ICESTORM_LC). The iCE40UP5K has 5,280 LC, 8 DSP and 30 EBR.
Figures come from the tools' own reports; nothing is estimated here.
"""

import argparse
import json
import re
import sys
import tempfile
from pathlib import Path

from ..toolchain import ToolError, run_tool, tool_command

__all__ = ["synthesize_unit", "unit_resources", "main"]

UP5K = {"lc": 5280, "dsp": 8, "ebr": 30}


def synthesize_unit(component, name, work_dir, *, pack=True):
    """Synthesize `component` for iCE40 with DSP inference; return {"lut4", "carry", "dff", "dsp", "ebr", "lc"}."""
    from amaranth.back import verilog

    work = Path(work_dir) / name
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(verilog.convert(component, name="top", emit_src=False))
    (work / "synth.ys").write_text("read_verilog top.v\nsynth_ice40 -dsp -top top -json top.json\n"
                                   "tee -q -o stat.json stat -json\n")
    run_tool("YOSYS", ["-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=work, log_path=work / "yosys.out")
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    result = {"lut4": cells.get("SB_LUT4", 0), "carry": cells.get("SB_CARRY", 0),
              "dff": sum(n for cell, n in cells.items() if cell.startswith("SB_DFF")),
              "dsp": cells.get("SB_MAC16", 0), "ebr": cells.get("SB_RAM40_4K", 0), "lc": None}
    if pack:
        log = run_tool("NEXTPNR_ICE40", ["--up5k", "--package", "sg48", "--json", "top.json", "--pack-only",
                                         "-l", "nextpnr.log"], cwd=work, log_path=work / "nextpnr.out")
        text = (work / "nextpnr.log").read_text() if (work / "nextpnr.log").exists() else log
        found = re.search(r"ICESTORM_LC:\s+(\d+)", text)
        result["lc"] = int(found.group(1)) if found else None
    return result


def unit_resources(compiled, *, pack=True, only=None, progress=None):
    """``[{"unit", ...synthesize_unit's figures}]`` for the units of `compiled` (`hdl.forward.units.units_for`).

    `only`: a substring; only units whose name contains it.
    """
    from .units import units_for

    rows = []
    units = {label: unit for label, unit in units_for(compiled).items() if only is None or only in label}
    if not units:
        raise ValueError(f"no unit name contains {only!r}")
    with tempfile.TemporaryDirectory(prefix="potgen-forward-") as work:
        for index, (label, unit) in enumerate(units.items()):
            row = {"unit": label, **synthesize_unit(unit, f"unit{index}", work, pack=pack)}
            rows.append(row)
            if progress:
                progress(row)
    return rows


def _table(rows):
    head = f"{'unit':<28}{'LUT4':>7}{'CARRY':>7}{'DFF':>7}{'DSP':>5}{'EBR':>5}{'LC':>7}{'LC % UP5K':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lc = "-" if r["lc"] is None else str(r["lc"])
        share = "-" if r["lc"] is None else f"{100 * r['lc'] / UP5K['lc']:.1f}"
        lines.append(f"{r['unit']:<28}{r['lut4']:>7}{r['carry']:>7}{r['dff']:>7}{r['dsp']:>5}{r['ebr']:>5}"
                     f"{lc:>7}{share:>11}")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m hdl.forward.resources", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Synthesize each whole-forward unit, sized from a compiled checkpoint, for the iCE40UP5K "
                    "and print LUT4 / carry / DFF / DSP / EBR / logic cells per unit.",
        epilog="example: python -m hdl.forward.resources --json > build/forward_units.json")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--bits", metavar="b", type=int, default=4, help="PoT code width of the linear layers")
    p.add_argument("--only", metavar="NAME", default=None, help="only the units whose name contains NAME")
    p.add_argument("--no-pack", action="store_true", help="skip nextpnr packing (no logic-cell counts)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    from golden.compile import CompileError, compile_checkpoint

    try:
        tool_command("YOSYS")
        if args.checkpoint is not None and not Path(args.checkpoint).exists():
            raise ValueError(f"checkpoint {args.checkpoint} does not exist")
        compiled = compile_checkpoint(args.checkpoint, bits=args.bits)
        rows = unit_resources(compiled, pack=not args.no_pack, only=args.only,
                              progress=lambda row: print(f"synthesized {row['unit']}", file=sys.stderr))
    except (TypeError, ValueError, CompileError, ToolError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"device": "iCE40UP5K", "budget": UP5K, "units": rows}, indent=1) if args.json
          else _table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
