"""Resources of the forward core's linear engine (`ProgramLinear`) alone, as each board's core builds it.

    python benchmarks/bench_program_linear.py [--board icebreaker|ulx3s] [--constants rom|stream]
        [--requantizer auto|parallel|two-pass|two-pass-serial] [--rows R --columns C] [--fmax] [--checkpoint DIR] [--json]

The engine is built from the compiled checkpoint's linear layers with the
board's array (`hdl.build_forward.FORWARD_CORES`: 4 x 3 with its codes loaded
into SPRAM on the iCEBreaker, 16 x 16 with its codes in ROM on the ULX3S) and
synthesized with its hierarchy kept (`hdl.forward.resources.hierarchy_resources`,
the same synthesis as ``python -m hdl.forward.resources --core``, elaborated
for the iCEBreaker's platform on the iCE40 so the codes are SPRAM): the table
gives Yosys's cells of the PEs (all of them), the requantiser, the code banks
and the engine's own logic (readout, sequencing, output), and nextpnr's packed
logic cells of the whole. ``--fmax`` places and routes the engine alone on the
LFE5U-85F (`hdl.forward.resources.unit_fmax`, seed 1) for its clock. About 20 s
on the iCE40, a few minutes on the ECP5. ``--rows`` / ``--columns`` size another
array in the board's place (to weigh an array before the board takes it).
"""

import json
import sys
import tempfile
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.cli import ArgumentParser, HelpFormatter, positive_int, run  # noqa: E402
from hdl.forward.program_linear import REQUANTIZERS  # noqa: E402

BOARDS = {"icebreaker": ("ice40", "loaded"), "ulx3s": ("ecp5", "rom")}


def engine_for(compiled, board, *, rows=None, columns=None, **options):
    """The `ProgramLinear` of `compiled` with `board`'s array (or `rows` x `columns`) and code store
    (`options`: its other parameters)."""
    from hdl.build_forward import FORWARD_CORES
    from hdl.forward.program_linear import ProgramLinear, program_layers

    f, core = compiled.formats, FORWARD_CORES[board]
    return ProgramLinear(layers=program_layers(compiled), bits=compiled.bits, act_bits=f.act_bits,
                         res_bits=f.res_bits, rows=rows or core["rows"], columns=columns or core["columns"],
                         mult_bits=f.mult_bits, codes=BOARDS[board][1], **options)


def measure(compiled, board, *, fmax=False, **options):
    """``{"parts": {part: cells by column}, "total": {...}, "fmax_mhz"?}`` of `board`'s engine."""
    from hdl.forward.resources import hierarchy_resources, unit_fmax

    family = BOARDS[board][0]
    engine = engine_for(compiled, board, **options)
    platform = None
    if family == "ice40":
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        platform = ICEBreakerPlatform()
    with tempfile.TemporaryDirectory(prefix="potgen-linear-") as work:
        result = hierarchy_resources(engine, family, Path(work) / "synth", platform=platform)
        parts = {}
        for row in result["units"]:
            name = row["unit"]
            part = "PEs" if name.startswith("pe_") else "code banks" if name.startswith("codes") else name
            counts = parts.setdefault(part, Counter())
            counts.update({k: v for k, v in row.items() if k not in ("unit", "instances")})
        figures = {"board": board, "rows": engine.rows, "columns": engine.columns,
                   "code_pack": engine.code_pack, "requantizer": engine.requantizer, "constants": engine.constants,
                   "pe_bits": engine.pe_bits, "acc_bits": engine.acc_bits,
                   "parts": {k: dict(v) for k, v in parts.items()}, "total": result["total"]}
        if fmax:
            figures.update(unit_fmax(engine_for(compiled, board, **options), Path(work) / "ecp5"))
    return figures


def main(argv=None):
    p = ArgumentParser(prog="python benchmarks/bench_program_linear.py", formatter_class=HelpFormatter,
                       description="Synthesize the forward core's linear engine (ProgramLinear) alone, as a "
                                   "board's core builds it, and print its cells by part.",
                       epilog="examples:\n  python benchmarks/bench_program_linear.py --board icebreaker "
                              "--constants stream\n  python benchmarks/bench_program_linear.py --board icebreaker "
                              "--constants stream --rows 4 --columns 3 --requantizer two-pass")
    p.add_argument("--board", choices=tuple(BOARDS), default="icebreaker", help="whose core's engine")
    p.add_argument("--constants", choices=("rom", "stream"), default="rom",
                   help="bias / mult / shift in memories or from the stream")
    p.add_argument("--requantizer", choices=REQUANTIZERS, default="auto", help="the readout's requantiser")
    p.add_argument("--rows", type=positive_int, default=None, help="array rows (default: the board's)")
    p.add_argument("--columns", type=positive_int, default=None, help="array columns (default: the board's)")
    p.add_argument("--fmax", action="store_true", help="also place and route it alone on the LFE5U-85F")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    from golden.compile import compile_checkpoint
    from hdl.toolchain import tool_command

    tool_command("YOSYS")
    if args.fmax:
        tool_command("NEXTPNR_ECP5")
    print(f"synthesizing the {args.board} core's linear engine ...", file=sys.stderr, flush=True)
    figures = measure(compile_checkpoint(args.checkpoint, bits=4), args.board, fmax=args.fmax,
                      constants=args.constants, requantizer=args.requantizer, rows=args.rows,
                      columns=args.columns)
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    columns = [c for c in figures["total"] if c != "lc"]
    print(f"{args.board}: ProgramLinear {figures['rows']} x {figures['columns']} (code pack "
          f"{figures['code_pack']}), {figures['requantizer']} requantiser, constants {figures['constants']}, "
          f"PE accumulators {figures['pe_bits']} bits, held sums {figures['acc_bits']} bits")
    head = f"{'part':<14}" + "".join(f"{c.upper():>8}" for c in columns)
    print(head + "\n" + "-" * len(head))
    for part, counts in figures["parts"].items():
        print(f"{part:<14}" + "".join(f"{counts.get(c, 0):>8}" for c in columns))
    print("-" * len(head) + "\n" + f"{'total':<14}" + "".join(f"{figures['total'][c]:>8}" for c in columns))
    print(f"packed logic cells: {figures['total']['lc']}")
    if "fmax_mhz" in figures:
        print(f"ECP5 (LFE5U-85F, seed 1) Fmax: {figures['fmax_mhz']:.2f} MHz, {figures['ecp5']['LUT4']} LUT4")
    return 0


if __name__ == "__main__":
    run(main, "python benchmarks/bench_program_linear.py")
