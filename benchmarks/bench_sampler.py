"""Simulated cycles of the sampler from the first logit to the token, per sampling mode, on the default model.

    python benchmarks/bench_sampler.py [--checkpoint DIR] [--seed S] [--json]

The compiled artefact's `hdl.forward.sampler.Sampler` (`hdl.forward.units.sampler_for`)
takes one row of logits (normal, sigma 2,000, the head's range; the same row
for every mode), one a cycle, in Amaranth's simulator and answers a token; the
cycles from the first logit to the token taken (`hdl.forward.simulation.run_streams`)
are printed for greedy, sampling among all tokens and top-k 10 and 1, each
token checked against `golden.int_ops.sample`, and those after the logits
(less greedy's, a pass over the logits for the largest after the last): what a token
costs the core beyond greedy decoding, which the builds' cycles count.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.cli import ArgumentParser, HelpFormatter, run  # noqa: E402
from golden.compile import compile_checkpoint  # noqa: E402
from golden.int_ops import sample, seed_state  # noqa: E402
from hdl.forward.simulation import run_streams  # noqa: E402
from hdl.forward.units import sampler_for  # noqa: E402

#: (label, inv_temperature, top_k or None for all).
MODES = (("greedy", 0, None), ("T = 1", 256, None), ("T = 1, top-k 10", 256, 10), ("T = 1, top-k 1", 256, 1))


def latency(compiled, logits, inv_temperature, top_k, seed):
    """(cycles from the first logit to the token taken, the token) of one sampling by `compiled`'s sampler:
    `hdl.forward.simulation.run_streams`, logits offered and the token taken every cycle."""
    dut = sampler_for(compiled)

    def setup(ctx):
        ctx.set(dut.inv_temperature, inv_temperature)
        ctx.set(dut.top_k, dut.vocab_size if top_k is None else top_k)

    (token,), cycles = run_streams(dut, {"seed": [seed_state(seed)], "logits": logits}, "token", 1, setup=setup)
    return cycles, token


def main(argv=None):
    p = ArgumentParser(prog="python benchmarks/bench_sampler.py", formatter_class=HelpFormatter,
                       description="Simulated cycles of the sampler from the first logit to the token, per mode.",
                       epilog="example: python benchmarks/bench_sampler.py --json")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--seed", metavar="S", type=int, default=1, help="the generator's seed (0 .. 2**32 - 2)")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    seed_state(args.seed)                       # a bad seed fails here, in one line
    compiled = compile_checkpoint(args.checkpoint)
    t = compiled.tensors
    logits = np.random.default_rng(3).normal(0, 2000, compiled.config.vocab_size).round().astype(np.int64)
    rows = []
    for label, inv_temperature, top_k in MODES:
        print(f"simulating {label} ...", file=sys.stderr)
        cycles, token = latency(compiled, logits, inv_temperature, top_k, args.seed)
        want, _ = sample(logits, seed_state(args.seed), inv_temperature=inv_temperature, top_k=top_k,
                         logit_mult=int(t["sampler.logit.mult"]), logit_shift=int(t["sampler.logit.shift"]),
                         table=t["exp2.lut"], exp_frac_bits=compiled.formats.exp_frac_bits)
        if token != want:
            raise AssertionError(f"{label}: the sampler gave token {token}, golden {want}")
        rows.append({"mode": label, "inv_temperature": inv_temperature, "top_k": top_k, "cycles": cycles,
                     "beyond_greedy": cycles - rows[0]["cycles"] if rows else 0, "token": token})
    if args.json:
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'mode':<20}{'cycles':>8}{'beyond greedy':>15}{'token':>7}")
    for row in rows:
        print(f"{row['mode']:<20}{row['cycles']:>8}{row['beyond_greedy']:>15}{row['token']:>7}")
    return 0


if __name__ == "__main__":
    run(main, "python benchmarks/bench_sampler.py")
