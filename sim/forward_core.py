"""`hdl.forward.forward_core.ForwardCore` in Verilator (through cocotb): tokens and cycles per token.

    python -m sim.forward_core [--checkpoint DIR] [--context 64] [--rows 4 --columns 3]
        [--head-lanes 4] [--attention-lanes 4] [--attention-units 1] [--inv-temperature N --top-k K --seed S]
        [--constants rom|flash [--stream-rate 0.5] [--seek-latency 45]] [--mhz 36] [--json]

`simulate_core` emits the core for a compiled model, builds it once per
design (``build/sim/forward_core/<hash of the Verilog>/``, reused while the
hash matches; concurrent builds of one design wait for each other) and runs
`sim.forward_core_tb` on a list of generation requests. A core with
``constants="flash"`` runs as a `sim.constant_source.FlashCore`: its constant
image streamed at a rate in bytes per cycle (0.25: quad SPI at half the clock;
0.5: at the full clock) with a seek latency, so the flash's cost is measured. Each request's
result has the tokens, the cycle each token was offered (from the start
being taken) and so the cycles per token at each position: the
figures the README and the build report give are measured here.
"""

import json
import os
import sys
import time

from golden.atomic import atomic_write
from golden.cli import ArgumentParser, HelpFormatter, positive_int, run
from golden.paths import BUILD_DIR

from hdl.forward.forward_core import CONSTANT_SOURCES

from .runner import SimError, build_design

__all__ = ["FORWARD_SIM_DIR", "Request", "simulate_core", "token_cycles", "measure", "main"]

#: The flash model's defaults: the iCEBreaker's reader (`hdl.spi_flash_reader.SPIFlashReader`: quad SPI with SCK at
#: the clock, its ``bytes_per_cycle`` and ``first_byte_cycles``).
READER_RATE, READER_LATENCY = 0.5, 45

FORWARD_SIM_DIR = BUILD_DIR / "sim" / "forward_core"


def Request(prompt, count, *, inv_temperature=0, top_k, seed=0):   # noqa: N802 (a record constructor)
    """One generation for `simulate_core`: a JSON-ready dict (``top_k`` = V samples among all tokens)."""
    return {"prompt": [int(t) for t in prompt], "count": int(count), "inv_temperature": int(inv_temperature),
            "top_k": int(top_k), "seed": int(seed)}


def token_cycles(result, prompt_length):
    """``{position: cycles}`` of a result: the cycles from one token offered to the next, by the position run.

    Token ``i > 0`` is sampled from the logits of position ``prompt_length - 1 + i``,
    whose forward starts when token ``i - 1`` is taken (one cycle after it is offered).
    """
    cycles = result["cycles"]
    return {prompt_length - 1 + i: cycles[i] - cycles[i - 1] for i in range(1, len(cycles))}


def simulate_core(core, requests, *, root=FORWARD_SIM_DIR, log=None):
    """Run `requests` (see `Request`) through `core` (a `ForwardCore`) in Verilator; one result dict each.

    Raises `sim.runner.SimError` when the core cannot be built or the run fails.
    `log`: a callable given one line of progress.
    """
    runner, directory = build_design(core, root, what="the forward core", say=log)
    run_dir = directory / "runs" / str(os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    job = run_dir / "job.json"
    offsets = {name: field.offset for name, field in core.start.payload.shape()}
    atomic_write(job, json.dumps({"period_ns": 10, "offsets": offsets, "requests": list(requests)}))
    results = run_dir / "results.json"
    results.unlink(missing_ok=True)
    if log:
        log(f"simulating {len(requests)} generation(s) ...")
    try:
        runner.test(test_module="sim.forward_core_tb", hdl_toplevel="top", build_dir=directory / "sim_build",
                    test_dir=run_dir, results_xml=str(run_dir / "results.xml"), hdl_toplevel_lang="verilog",
                    extra_env={"POTGEN_FORWARD_JOB": str(job)}, log_file=run_dir / "sim.log",
                    timescale=("1ns", "1ps"))
    except (SystemExit, Exception) as error:     # noqa: BLE001 - reported with the log
        raise SimError(f"the forward core's simulation failed ({error}); log: {run_dir / 'sim.log'}") from None
    done = json.loads(results.read_text()) if results.is_file() else []
    if len(done) != len(requests):
        raise SimError(f"the forward core's simulation finished {len(done)} of {len(requests)} requests; "
                       f"log: {run_dir / 'sim.log'}")
    return done


def measure(compiled, *, context, prompt=(0,), inv_temperature=0, top_k=None, seed=0, log=None,
            stream_rate=READER_RATE, seek_latency=READER_LATENCY, **shape):
    """One generation filling `context` on a `ForwardCore` of `compiled` (``shape``: its array and lanes, and
    ``constants``; with ``"flash"`` its image streams at `stream_rate` bytes a cycle, each seek `seek_latency`
    cycles before its first byte).

    Returns a dict: the core's shape, ``tokens`` and whether they equal
    golden's (``IntegerForward.generate``), and ``cycles_per_token``
    ``{"position_1": .., "full_context": ..}`` (the last position a
    generation of this context runs, ``context - 2``); with a one-token
    prompt, position 1 is the second forward. Raises ValueError for a prompt
    that leaves no two tokens to make.
    """
    from golden.int_forward import IntegerForward
    from hdl.forward.forward_core import ForwardCore

    V = compiled.config.vocab_size
    count = context - len(prompt)
    if count < 2 or len(prompt) > 2:
        raise ValueError(f"the prompt must have 1 or 2 tokens and leave at least 2 of the context {context}, "
                         f"not {len(prompt)}")
    core = ForwardCore(compiled=compiled, context=context, **shape)
    design = core
    if core.constant_source == "flash":
        from .constant_source import FlashCore
        design = FlashCore(core, rate=stream_rate, latency=seek_latency)
    top_k = V if top_k is None else top_k
    request = Request(prompt, count, inv_temperature=inv_temperature, top_k=top_k, seed=seed)
    began = time.perf_counter()
    result, = simulate_core(design, [request], log=log)
    want = list(IntegerForward(compiled).generate(list(prompt), count, inv_temperature=inv_temperature,
                                                  top_k=None if top_k == V else top_k, seed=seed))
    cycles = token_cycles(result, len(prompt))
    return {"context": context, "rows": core.rows, "columns": core.columns, "head_lanes": core.head_lanes,
            "attention_lanes": core.attention_lanes, "attention_units": core.attention_units,
            "constants": core.constant_source,
            **({"stream_rate": float(design.source.rate), "seek_latency": seek_latency,
                "constant_bytes_per_token": core.constant_bytes_per_token} if design is not core else {}),
            "inv_temperature": inv_temperature, "top_k": top_k,
            "tokens": result["tokens"], "golden": result["tokens"] == want,
            "cycles_per_token": {"position_1": cycles[1], "full_context": cycles[context - 2]},
            "mean_cycles_per_token": (result["cycles"][-1] - result["cycles"][0]) / (count - 1),
            "wall_s": time.perf_counter() - began}


def _rate(text):
    """argparse type of --stream-rate: `constant_source.stream_rate`, its error as argparse's."""
    import argparse

    from .constant_source import stream_rate
    try:
        return stream_rate(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main(argv=None):
    p = ArgumentParser(
        prog="python -m sim.forward_core", formatter_class=HelpFormatter,
        description="Build the whole-forward core for a compiled checkpoint in Verilator, generate one sequence "
                    "filling the context, check its tokens against golden's integer forward, and print the cycles "
                    "per token at position 1 and at the full context (and tokens/s at a clock).",
        epilog="examples:\n"
               "  python -m sim.forward_core --context 64 --rows 4 --columns 3 --attention-lanes 4 --mhz 36\n"
               "  python -m sim.forward_core --context 64 --attention-lanes 2 --constants flash --stream-rate 0.25")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--bits", metavar="b", type=positive_int, default=4, help="PoT code width of the linear layers")
    p.add_argument("--context", type=positive_int, default=64, help="KV cache positions built")
    p.add_argument("--rows", type=positive_int, default=4, help="rows of the PoT array (K chunks)")
    p.add_argument("--columns", type=positive_int, default=3, help="columns of the PoT array (output channels)")
    p.add_argument("--head-lanes", type=positive_int, default=4, help="multipliers of the head")
    p.add_argument("--attention-lanes", type=positive_int, default=4, help="channels per cycle of the attention")
    p.add_argument("--attention-units", type=positive_int, default=1,
                   help="attention units side by side, each on n_head / units heads")
    p.add_argument("--constants", choices=CONSTANT_SOURCES, default="rom",
                   help="the core's constants in block RAM (rom) or streamed from a flash model (flash)")
    p.add_argument("--stream-rate", metavar="R", type=_rate,
                   help="with --constants flash: bytes per cycle the flash model streams (default 0.5: the board's "
                        "reader, quad SPI at the full clock; 0.25 at half the clock; a fraction such as 1/3 too)")
    p.add_argument("--seek-latency", metavar="N", type=positive_int,
                   help="with --constants flash: cycles from a seek to its first byte (default 45: the board's "
                        "reader's quad read command, address and dummy cycles at the full clock)")
    p.add_argument("--prompt", default="0", help="prompt token ids, comma-separated (1 or 2)")
    p.add_argument("--inv-temperature", type=int, default=0, help="round(256 / T); 0 is greedy")
    p.add_argument("--top-k", type=positive_int, default=None, help="sample among the k largest (default: all)")
    p.add_argument("--seed", type=int, default=0, help="the sampler's seed")
    p.add_argument("--mhz", type=float, default=36.0, help="clock for the tokens/s column")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    if args.constants != "flash" and (args.stream_rate is not None or args.seek_latency is not None):
        p.error("--stream-rate and --seek-latency go with --constants flash")
    try:
        prompt = [int(v) for v in args.prompt.split(",")]
    except ValueError:
        p.error(f"argument --prompt: {args.prompt!r} is not comma-separated token ids")
    from golden.compile import compile_checkpoint

    compiled = compile_checkpoint(args.checkpoint, bits=args.bits)
    V = compiled.config.vocab_size
    if any(not 0 <= t < V for t in prompt):
        p.error(f"argument --prompt: ids must be from 0 to {V - 1}")
    if args.context > compiled.config.n_positions:
        p.error(f"argument --context: at most the model's {compiled.config.n_positions} positions")
    figures = measure(compiled, context=args.context, prompt=prompt, inv_temperature=args.inv_temperature,
                      top_k=args.top_k, seed=args.seed, rows=args.rows, columns=args.columns,
                      head_lanes=args.head_lanes, attention_lanes=args.attention_lanes,
                      attention_units=args.attention_units, constants=args.constants,
                      **{name: value for name, value in (("stream_rate", args.stream_rate),
                                                         ("seek_latency", args.seek_latency)) if value is not None},
                      log=lambda line: print(line, file=sys.stderr))
    figures["mhz"] = args.mhz
    figures["tokens_per_s"] = args.mhz * 1e6 / figures["cycles_per_token"]["full_context"]
    if args.json:
        print(json.dumps(figures, indent=1))
    else:
        c = figures["cycles_per_token"]
        constants = "rom" if args.constants == "rom" else f"flash {figures['stream_rate']:g} B/c"
        print(f"{'array':>6}{'head':>6}{'attn':>6}{'units':>6}{'constants':>16}{'context':>9}{'cycles @1':>11}"
              f"{'@full':>9}{'mean':>9}{'tok/s @' + format(args.mhz, 'g') + ' MHz':>18}{'golden':>8}")
        print(f"{figures['rows']:>3}x{figures['columns']:<2}{figures['head_lanes']:>6}{figures['attention_lanes']:>6}"
              f"{figures['attention_units']:>6}{constants:>16}"
              f"{args.context:>9}{c['position_1']:>11}{c['full_context']:>9}{figures['mean_cycles_per_token']:>9.0f}"
              f"{figures['tokens_per_s']:>18.0f}{'equal' if figures['golden'] else 'DIFFER':>8}")
    return 0 if figures["golden"] else 1


if __name__ == "__main__":
    run(main, "python -m sim.forward_core")
