"""Resources of every whole-forward unit on iCE40: Yosys ``synth_ice40 -dsp``, then nextpnr packing.

    python -m hdl.forward.resources [--checkpoint DIR] [--only NAME] [--no-pack] [--json]

Each unit is sized from the checkpoint's compiled artefact (`hdl.forward.units`)
and synthesized alone (`hdl.bench.synthesize` with DSP inference); the table gives Yosys's cell counts (SB_LUT4,
SB_CARRY, flip-flops, SB_MAC16 DSPs, SB_RAM40_4K EBRs) and nextpnr's packed
logic cells (ICESTORM_LC). The iCE40UP5K has 5,280 LC, 8 DSP and 30 EBR.
Figures come from the tools' own reports; nothing is estimated here.
"""

import json
import sys
import tempfile

from golden.cli import ArgumentParser, HelpFormatter, positive_int, run

from ..bench import synthesize
from ..toolchain import tool_command

__all__ = ["unit_resources", "main"]

UP5K = {"lc": 5280, "dsp": 8, "ebr": 30}


def unit_resources(compiled, *, pack=True, only=None, progress=None):
    """``[{"unit", ...hdl.bench.synthesize's figures}]`` for the units of `compiled` (`hdl.forward.units.units_for`).

    `only`: a substring; only units whose name contains it.
    """
    from .units import units_for

    rows = []
    units = {label: unit for label, unit in units_for(compiled).items() if only is None or only in label}
    if not units:
        raise ValueError(f"no unit name contains {only!r}")
    with tempfile.TemporaryDirectory(prefix="potgen-forward-") as work:
        for index, (label, unit) in enumerate(units.items()):
            row = {"unit": label, **synthesize(unit, f"unit{index}", work, pack=pack, dsp=True)}
            rows.append(row)
            if progress:
                progress(row)
    return rows


def _table(rows):
    head = f"{'unit':<44}{'LUT4':>7}{'CARRY':>7}{'DFF':>7}{'DSP':>5}{'EBR':>5}{'LC':>7}{'LC % UP5K':>11}"
    lines = [head, "-" * len(head)]
    for r in rows:
        lc = "-" if r["lc"] is None else str(r["lc"])
        share = "-" if r["lc"] is None else f"{100 * r['lc'] / UP5K['lc']:.1f}"
        lines.append(f"{r['unit']:<44}{r['lut4']:>7}{r['carry']:>7}{r['dff']:>7}{r['dsp']:>5}{r['ebr']:>5}"
                     f"{lc:>7}{share:>11}")
    return "\n".join(lines)


def main(argv=None):
    p = ArgumentParser(
        prog="python -m hdl.forward.resources", formatter_class=HelpFormatter,
        description="Synthesize each whole-forward unit, sized from a compiled checkpoint, for the iCE40UP5K "
                    "and print LUT4 / carry / DFF / DSP / EBR / logic cells per unit.",
        epilog="example: python -m hdl.forward.resources --only sampler --json > build/forward_units.json")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--bits", metavar="b", type=positive_int, default=4, help="PoT code width of the linear layers")
    p.add_argument("--only", metavar="NAME", default=None, help="only the units whose name contains NAME")
    p.add_argument("--no-pack", action="store_true", help="skip nextpnr packing (no logic-cell counts)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    from golden.compile import compile_checkpoint

    tool_command("YOSYS")
    compiled = compile_checkpoint(args.checkpoint, bits=args.bits)
    rows = unit_resources(compiled, pack=not args.no_pack, only=args.only,
                          progress=lambda row: print(f"synthesized {row['unit']}", file=sys.stderr))
    print(json.dumps({"device": "iCE40UP5K", "budget": UP5K, "units": rows}, indent=1) if args.json
          else _table(rows))
    return 0


if __name__ == "__main__":
    run(main, "python -m hdl.forward.resources")
