"""The iCEBreaker forward top's own logic: what the board adds around the core (UART, link, PLL, flash reader).

    python benchmarks/bench_board_logic.py [--checkpoint DIR] [--context 64] [--no-pack] [--json]

The board top (`boards.forward_top.compose_forward(board="icebreaker")`: the
build's core options) is elaborated for the iCEBreaker as the build does
(``platform.prepare``: PLL, pins, constraints) and synthesized with its
hierarchy kept (Yosys ``synth_ice40 -dsp -noflatten``); each module below the
top gets a row of Yosys's cells (LUT4, CARRY, FF, DSP, EBR, SPRAM), the top's own glue a row
"(own logic)", and the rows other than the core are added up as "board logic".
With packing (the default), nextpnr ``--pack-only`` packs the whole top and
the core alone (`hdl.forward.resources.core_resources`, the same core): the
difference is the board logic in packed logic cells (ICESTORM_LC). Figures
come from the tools' reports.
"""

import json
import re
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.cli import ArgumentParser, HelpFormatter, positive_int, run  # noqa: E402

COLUMNS = ("lut4", "carry", "ff", "dsp", "bram", "spram")


def _synthesize(top, work):
    """Yosys cells per module of `top` as the iCEBreaker build elaborates it (``platform.prepare``: PLL, pins),
    hierarchy kept; returns (rows, nextpnr's packed LC or None)."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from hdl.forward.resources import FAMILIES, _columns, _subtree_cells
    from hdl.read_port import YOSYS_AFTER_READ
    from hdl.toolchain import ToolError, run_tool

    work.mkdir(parents=True, exist_ok=True)
    plan = ICEBreakerPlatform().prepare(top, name="top")
    for name in ("top.il", "top.pcf"):
        content = plan.files[name]
        (work / name).write_bytes(content.encode() if isinstance(content, str) else content)
    (work / "synth.ys").write_text(f"read_rtlil top.il\n{YOSYS_AFTER_READ}\n"
                                   "synth_ice40 -dsp -noflatten -top top -json top.json\n"
                                   "tee -q -o stat.json stat -json -top top\n")
    run_tool("YOSYS", ["-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=work, log_path=work / "yosys.stdout")
    modules = json.loads((work / "stat.json").read_text())["modules"]
    memo, rows = {}, []
    for cell, count in modules["\\top"]["num_cells_by_type"].items():
        if "\\" + cell in modules:
            cells = _subtree_cells(modules, "\\" + cell, memo)
            rows.append({"unit": cell.split(".", 1)[1] if "." in cell else cell,
                         **_columns({k: v * count for k, v in cells.items()}, "ice40")})
    whole = _columns(_subtree_cells(modules, "\\top", memo), "ice40")
    rows.append({"unit": "(own logic)", **{k: whole[k] - sum(row[k] for row in rows) for k in whole}})
    lc = None
    try:
        log = run_tool("NEXTPNR_ICE40", [*FAMILIES["ice40"]["device"], "--json", "top.json", "--pcf", "top.pcf",
                                         "--pack-only", "--log", "pack.log"], cwd=work,
                       log_path=work / "nextpnr.stdout")
        found = re.findall(r"ICESTORM_LC:\s+(\d+)/", log or (work / "pack.log").read_text())
        lc = int(found[-1]) if found else None
    except ToolError:
        pass
    return rows, lc


def measure(compiled, *, context, pack=True, work):
    """``{"rows": [...], "board": {column: n}, "top_lc", "core_lc", "board_lc"}`` for the iCEBreaker top."""
    from boards.forward_top import compose_forward
    from hdl.build_forward import FORWARD_CORES
    from hdl.forward.resources import core_resources

    core = {**FORWARD_CORES["icebreaker"]}
    top = compose_forward(compiled, board="icebreaker", context=context, **core)
    rows, top_lc = _synthesize(top, Path(work) / "top")
    board = {column: sum(row[column] for row in rows if row["unit"] != "core") for column in COLUMNS}
    result = {"context": context, "core": core, "rows": rows, "board": board, "top_lc": top_lc if pack else None,
              "core_lc": None, "board_lc": None}
    if pack:
        alone = core_resources(compiled, family="ice40", context=context, work=Path(work) / "core", **core)
        result["core_lc"] = alone["total"]["lc"]
        if result["top_lc"] is not None and result["core_lc"] is not None:
            result["board_lc"] = result["top_lc"] - result["core_lc"]
    return result


def table(result):
    lines = [f"{'module':<16}" + "".join(f"{c:>7}" for c in COLUMNS)]
    for row in result["rows"]:
        lines.append(f"{row['unit']:<16}" + "".join(f"{row.get(c, 0):>7}" for c in COLUMNS))
    lines.append(f"{'board logic':<16}" + "".join(f"{result['board'][c]:>7}" for c in COLUMNS))
    if result["board_lc"] is not None:
        lines.append(f"packed LC: top {result['top_lc']:,}, core alone {result['core_lc']:,}, "
                     f"board logic {result['board_lc']:,} (of the UP5K's 5,280)")
    return "\n".join(lines)


def main(argv=None):
    p = ArgumentParser(prog="python benchmarks/bench_board_logic.py", formatter_class=HelpFormatter,
                       description="Cells of the iCEBreaker forward top's board logic (UART, link, PLL, flash "
                                   "reader, glue) from Yosys, and its packed logic cells from nextpnr (top minus "
                                   "core).",
                       epilog="example:\n  python benchmarks/bench_board_logic.py --no-pack")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--context", metavar="N", type=positive_int, default=64, help="positions of the top's core")
    p.add_argument("--no-pack", action="store_true", help="Yosys's cells only (no nextpnr packing, no core run)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    from golden.compile import compile_checkpoint

    compiled = compile_checkpoint(args.checkpoint)
    with tempfile.TemporaryDirectory(prefix="potgen-board-logic-") as work:
        result = measure(compiled, context=args.context, pack=not args.no_pack, work=work)
    print(json.dumps(result, indent=1) if args.json else table(result))
    return 0


if __name__ == "__main__":
    run(main, "python benchmarks/bench_board_logic.py")
