"""Generation speed of each back-end, and what the iCEBreaker would do.

    python benchmarks/bench_generate.py [--tokens N] [--report build/icebreaker-linear/report.json] [--no-sim]

Runs the same greedy generation of N tokens (the numpy back-ends: best of
--repeat runs) on the float, golden, integer
(the whole forward in integers, `golden.int_forward`) and sim back-ends (one
run, side by side), checks that golden and sim produce the same text, and
prints tokens/s, the integer forward's speed over golden's, and, for sim, the
simulated cycles per decoded token.
Then projects tokens/s on the board from the build report (its Fmax and array
shape) and the UART rate (each decoded token sends one token of activations
through every layer and reads back its accumulators: `boards.protocol`'s
framing), and names the bottleneck.
"""

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from boards.generate import Generator, IntegerGenerator  # noqa: E402
from golden.compile import compile_model  # noqa: E402
from golden.int_forward import IntegerForward  # noqa: E402
from golden.model_loading import calibration_windows  # noqa: E402
from boards.protocol import HEADER, value_bytes  # noqa: E402
from golden.data import load_vocab  # noqa: E402
from golden.model_loading import load_integer_model  # noqa: E402
from golden.paths import BUILD_DIR, HARDWARE_MODEL_DIR  # noqa: E402

PROMPT = "ROMEO:\n"
UART_BITS_PER_BYTE = 10                                    # 8N1


def timed(generator, tokens, repeat=1):
    """The text of a greedy generation and its best time over `repeat` runs (a shared machine only slows runs)."""
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        text = "".join(generator.stream(PROMPT, tokens, temperature=0))
        best = min(best, time.perf_counter() - start)
    return text, best


def uart_bytes_per_token(integer_model):
    """Bytes on the line for one decoded token: a LAYER and a RUN request and response per layer."""
    total = 0
    for layer in integer_model.layers.values():
        total += 2 * HEADER.size + 1                                         # LAYER request + response
        total += HEADER.size + layer.k * value_bytes(integer_model.act_bits)  # RUN request
        total += HEADER.size + layer.n * value_bytes(integer_model.acc_bits())  # RUN response
    return total


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--tokens", metavar="N", type=int, default=32)
    parser.add_argument("--report", metavar="JSON", default=str(BUILD_DIR / "icebreaker-linear" / "report.json"),
                        help="an hdl.build report.json for the projection")
    parser.add_argument("--cycles-per-token", metavar="C", type=float,
                        help="simulated cycles per token for the projection (default: measured with --sim)")
    parser.add_argument("--no-sim", action="store_true", help="skip the Verilator back-end")
    parser.add_argument("--repeat", metavar="N", type=int, default=3,
                        help="time each numpy back-end N times, report the best")
    args = parser.parse_args()

    integer = load_integer_model(HARDWARE_MODEL_DIR)
    vocab = load_vocab(HARDWARE_MODEL_DIR)
    rows = []
    float_text, seconds = timed(Generator(integer.model, vocab, None), args.tokens, args.repeat)
    rows.append(("float (numpy)", seconds, None))
    golden_text, seconds = timed(Generator(integer.model, vocab, integer.linear), args.tokens, args.repeat)
    rows.append(("golden (numpy integer datapath)", seconds, None))
    compiled = compile_model(integer.model, calib_tokens=calibration_windows(integer.model, HARDWARE_MODEL_DIR),
                             weights={name: layer.weights for name, layer in integer.layers.items()})
    _, seconds = timed(IntegerGenerator(IntegerForward(compiled), vocab), args.tokens, args.repeat)
    rows.append(("integer (numpy whole forward)", seconds, None))
    cycles_per_token = args.cycles_per_token
    if not args.no_sim:
        from sim.engine_session import EngineSession
        with EngineSession(integer, rows=1, columns=16) as session:
            sim_text, seconds = timed(Generator(integer.model, vocab, integer.offloaded_linear(session.accumulate)),
                                      args.tokens)
            forwards = len(PROMPT) + args.tokens - 1
            cycles_per_token = session.cycles / forwards
        rows.append(("sim (Verilator, 1x16 engine)", seconds, cycles_per_token))
        print(f"golden and sim text identical: {sim_text == golden_text}")
    print(f"{args.tokens} tokens, greedy, prompt {PROMPT!r}")
    print(f"{'back-end':<34} {'seconds':>8} {'tokens/s':>9} {'cycles/token':>13}")
    for name, seconds, cycles in rows:
        print(f"{name:<34} {seconds:8.2f} {args.tokens / seconds:9.1f} "
              f"{'' if cycles is None else f'{cycles:13.0f}'}")
    print(f"integer whole forward / golden linear datapath: {rows[1][1] / rows[2][1]:.2f}x the tokens/s")

    report_path = Path(args.report)
    if not report_path.is_file() or cycles_per_token is None:
        print(f"no projection: needs {report_path} (python -m hdl.build --board icebreaker --design linear) and "
              "cycles per token")
        return
    report = json.loads(report_path.read_text())
    clock = min(report["fmax_mhz"], report["target_mhz"]) * 1e6
    compute_s = cycles_per_token / clock
    uart_s = uart_bytes_per_token(integer) * UART_BITS_PER_BYTE / report["baud"]
    bottleneck = "UART" if uart_s > compute_s else "compute"
    print(f"iCEBreaker projection ({report['rows']}x{report['cols']} at {clock / 1e6:.1f} MHz, "
          f"{report['baud'] / 1e6:.1f} Mbaud): compute {compute_s * 1e3:.2f} ms/token, "
          f"UART {uart_s * 1e3:.2f} ms/token ({uart_bytes_per_token(integer)} bytes) -> "
          f"{1 / max(compute_s, uart_s):.0f} tokens/s, bottleneck: {bottleneck}")


if __name__ == "__main__":
    main()
