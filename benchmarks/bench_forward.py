"""The whole forward on the board against today's linear-only design and the host's numpy, in one run.

    python benchmarks/bench_forward.py [--report build/icebreaker/report.json ...]
                                       [--linear-report build/icebreaker-linear/report.json] [--tokens N] [--no-sim]

Prints, side by side:

- each forward build's tokens/s: the cycles per token its report holds
  (measured in Verilator by ``python -m hdl.build --design forward``, at
  position 1 and at the full context) at the clock the build achieved
  (its target, or its Fmax if lower);
- today's linear-only design, projected as `bench_generate.py` does: every
  decoded token sends its activations through every layer over the UART
  and reads back the accumulators (bytes x 10 bits / baud), beside the
  engine's compute (cycles per token from simulating the 1 x 16 engine in
  Verilator, at the linear build's clock); the slower of the two bounds it;
- the host's numpy integer forward (`golden.int_forward`, greedy, best of
  --repeat runs) on this machine;

and the ratios of the board's tokens/s to the other two.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_generate import PROMPT, UART_BITS_PER_BYTE, timed, uart_bytes_per_token  # noqa: E402
from boards.generate import Generator, IntegerGenerator  # noqa: E402
from golden.data import load_vocab  # noqa: E402
from golden.paths import BUILD_DIR, HARDWARE_MODEL_DIR  # noqa: E402


def board_rows(paths):
    """``[(label, tokens/s at position 1, tokens/s at the full context, report)]`` of each forward report."""
    rows = []
    for path in paths:
        report = json.loads(Path(path).read_text())
        if report.get("design") != "forward":
            raise SystemExit(f"{path}: not a --design forward build (design {report.get('design')!r})")
        cycles = report["cycles_per_token"]
        if not cycles or not cycles.get("full_context"):
            raise SystemExit(f"{path}: the build has no simulated cycles (it was built with --no-verify)")
        clock = min(report["fmax_mhz"] or report["target_mhz"], report["target_mhz"]) * 1e6
        model = Path(report["model"]).name
        label = f"{report['board']} forward ({model}, context {report['context']}, {clock / 1e6:.1f} MHz)"
        rows.append((label, clock / cycles["position_1"], clock / cycles["full_context"], report))
    return rows


def linear_projection(integer, report_path, tokens, simulate):
    """Today's linear-only design: (tokens/s, text). Compute from a Verilator run of the engine (unless
    `simulate` is False), UART from the protocol's bytes per token; clock and baud from the linear build's
    report (its defaults when there is none)."""
    from boards.icebreaker import DEFAULT_BAUD, DEFAULT_FREQ_MHZ

    if report_path.is_file():
        report = json.loads(report_path.read_text())
        clock, baud, source = min(report["fmax_mhz"], report["target_mhz"]) * 1e6, report["baud"], str(report_path)
    else:
        clock, baud, source = DEFAULT_FREQ_MHZ * 1e6, DEFAULT_BAUD, "the default build's clock and baud (no report)"
    uart_bytes = uart_bytes_per_token(integer)
    uart_s = uart_bytes * UART_BITS_PER_BYTE / baud
    compute_s = 0.0
    if simulate:
        from sim.engine_session import EngineSession
        vocab = load_vocab(HARDWARE_MODEL_DIR)
        with EngineSession(integer, rows=1, columns=16) as session:
            timed(Generator(integer.model, vocab, integer.offloaded_linear(session.accumulate)), tokens)
            compute_s = session.cycles / (len(PROMPT) + tokens - 1) / clock
    per_token = max(uart_s, compute_s)
    text = (f"linear-only iCEBreaker ({source}): compute "
            + (f"{compute_s * 1e3:.2f} ms/token (Verilator)" if simulate else "not simulated (--no-sim)")
            + f", UART {uart_s * 1e3:.2f} ms/token ({uart_bytes} bytes at {baud / 1e6:g} Mbaud)")
    return 1 / per_token, text


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     epilog="example: python benchmarks/bench_forward.py --report "
                                            "build/icebreaker/report.json build/ulx3s-forward/report.json")
    parser.add_argument("--report", metavar="JSON", nargs="+",
                        default=[str(BUILD_DIR / "icebreaker" / "report.json")],
                        help="report.json of whole-forward builds (python -m hdl.build --board icebreaker; "
                             "--board ulx3s --design forward)")
    parser.add_argument("--linear-report", metavar="JSON",
                        default=str(BUILD_DIR / "icebreaker-linear" / "report.json"),
                        help="report.json of the linear iCEBreaker build "
                             "(python -m hdl.build --board icebreaker --design linear)")
    parser.add_argument("--tokens", metavar="N", type=int, default=64, help="tokens the host generates")
    parser.add_argument("--repeat", metavar="N", type=int, default=3, help="host runs; the best is reported")
    parser.add_argument("--no-sim", action="store_true", help="skip simulating the linear engine's compute")
    args = parser.parse_args(argv)

    from golden.compile import compile_model
    from golden.int_forward import IntegerForward
    from golden.model_loading import calibration_windows, load_integer_model

    missing = [path for path in args.report if not Path(path).is_file()]
    if missing:
        raise SystemExit(f"no forward build report at {missing[0]}: python -m hdl.build --board icebreaker "
                         f"(or --board ulx3s --design forward) --out {Path(missing[0]).parent}")
    boards = board_rows(args.report)
    integer = load_integer_model(HARDWARE_MODEL_DIR)
    compiled = compile_model(integer.model, calib_tokens=calibration_windows(integer.model, HARDWARE_MODEL_DIR),
                             weights={name: layer.weights for name, layer in integer.layers.items()})
    _, seconds = timed(IntegerGenerator(IntegerForward(compiled), load_vocab(HARDWARE_MODEL_DIR)), args.tokens,
                       args.repeat)
    host = args.tokens / seconds
    linear, linear_text = linear_projection(integer, Path(args.linear_report), args.tokens, not args.no_sim)

    print(f"{'back-end':<72}{'tokens/s':>11}{'at position 1':>15}")
    for label, first, full, _ in boards:
        print(f"{label:<72}{full:>11,.0f}{first:>15,.0f}")
    print(f"{'linear-only iCEBreaker projection (' + HARDWARE_MODEL_DIR.name + ')':<72}{linear:>11,.0f}")
    print(f"{f'host numpy integer forward ({HARDWARE_MODEL_DIR.name}, {args.tokens} tokens, greedy)':<72}"
          f"{host:>11,.0f}")
    print(linear_text)
    for label, first, full, report in boards:
        print(f"{report['board']} forward at the full context: {full / linear:,.1f}x the linear-only projection, "
              f"{full / host:.2f}x the host's numpy (at position 1: {first / linear:,.1f}x, {first / host:.2f}x)")
    return 0


if __name__ == "__main__":
    t0 = time.perf_counter()
    main()
    print(f"({time.perf_counter() - t0:.0f} s)", file=sys.stderr)
