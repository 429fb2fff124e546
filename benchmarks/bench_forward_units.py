"""Simulated cycles of each whole-forward unit on the default model, and the token they add up to.

    python benchmarks/bench_forward_units.py [--checkpoint DIR] [--rows 4 --cols 3] [--freq 36] [--json]

Every unit (`hdl.forward`) runs its operation for one decode token in
Amaranth's simulator, with inputs offered every cycle and outputs taken every
cycle, on the compiled artefact's real constants and golden's own activations;
the cycles from the first input to the last output are printed. Then the
program of one token (`golden.compile.program_of`) is summed from those
figures with no overlap between units (the sequencer's chaining can only
lower it) at position 0 and at the last position of the iCEBreaker's KV
budget, and turned into tokens/s at ``--freq`` (a clock given, not an Fmax
achieved). The head is not on the PoT array for ``tables="int"`` and is
listed apart.
"""

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.cli import ArgumentParser, HelpFormatter, positive_int, run  # noqa: E402
from golden.compile import compile_checkpoint  # noqa: E402
from golden.int_forward import IntegerForward  # noqa: E402
from hdl.forward.decode_plan import spram_context  # noqa: E402
from hdl.forward.simulation import run_streams  # noqa: E402
from hdl.forward.units import (attention_for, decode_linear_for, embedding_for, gelu_for, layer_norm_for,  # noqa: E402
                               sampler_for)


def measure(compiled, rows, columns, positions):
    """``{label: cycles}`` of each unit's operation for one token of `compiled`."""
    c, f, t = compiled.config, compiled.formats, compiled.tensors
    forward = IntegerForward(compiled)
    x = forward._embed(np.array([[11]]), 0)[0, 0]
    figures = {}
    _, figures["embed"] = run_streams(embedding_for(compiled), {"i": [{"token": 11, "position": 0}]}, "o", c.n_embd)

    ln = layer_norm_for(compiled)
    affine = [{"gamma": g, "beta": b} for g, b in zip(t["h.0.ln_1.gamma"], t["h.0.ln_1.beta"])]

    def ln_setup(ctx):
        ctx.set(ln.eps, int(t["h.0.ln_1.eps"]))
        ctx.set(ln.gamma_shift, int(t["h.0.ln_1.shift"]))

    _, figures["layer_norm"] = run_streams(ln, {"x": x, "affine": affine}, "o", c.n_embd, setup=ln_setup)
    a = forward._layer_norm("h.0.ln_1", x[None])[0]
    for name in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
        op = f"h.0.{name}"
        codes = t[op + ".codes"]
        dut = decode_linear_for(compiled, op, rows=rows, columns=columns)
        inputs = np.resize(a, codes.shape[0])
        _, figures[name] = run_streams(dut, {"a": inputs}, "o", codes.shape[1])
    values = np.arange(-(1 << (f.act_bits - 1)), 1 << (f.act_bits - 1))
    _, figures["gelu"] = run_streams(gelu_for(compiled), {"i": np.resize(values, 4 * c.n_embd)}, "o",
                                     4 * c.n_embd)
    rng = np.random.default_rng(0)
    for position in positions:
        dut = attention_for(compiled, positions=position + 1)
        k, v, q = rng.integers(-128, 128, (3, c.n_embd))

        def att_setup(ctx, dut=dut, position=position):
            ctx.set(dut.position, position)
            for port, tensor in (("score_mult", "score.mult"), ("score_shift", "score.shift"),
                                 ("out_mult", "out.mult"), ("out_shift", "out.shift")):
                ctx.set(getattr(dut, port), int(t["h.0.attn." + tensor]))

        kv = [{"k": kk, "v": vv} for kk, vv in zip(k, v)]
        _, figures[f"attention@{position}"] = run_streams(dut, {"kv": kv, "q": q}, "o", c.n_embd, setup=att_setup)
    sampler = sampler_for(compiled)
    logits = rng.normal(0, 2000, c.vocab_size).round().astype(np.int64)
    for label, inv_temperature, top_k in (("sample greedy", 0, c.vocab_size), ("sample T=1", 256, c.vocab_size),
                                          ("sample T=1 top-k 10", 256, 10)):
        def sample_setup(ctx, inv_temperature=inv_temperature, top_k=top_k):
            ctx.set(sampler.inv_temperature, inv_temperature)
            ctx.set(sampler.top_k, top_k)

        _, figures[label] = run_streams(sampler, {"seed": [1], "logits": logits}, "token", 1, setup=sample_setup)
    return figures


def per_token(figures, n_layer, position, sample="sample T=1"):
    layer = (2 * figures["layer_norm"] + figures["attn.c_attn"] + figures[f"attention@{position}"]
             + figures["attn.c_proj"] + figures["mlp.c_fc"] + figures["gelu"] + figures["mlp.c_proj"])
    return figures["embed"] + n_layer * layer + figures["layer_norm"] + figures[sample]


def main(argv=None):
    p = ArgumentParser(prog="python benchmarks/bench_forward_units.py", formatter_class=HelpFormatter,
                       description="Simulated cycles of each whole-forward unit for one decode token of the default "
                                   "model, and the token they add up to.",
                       epilog="example: python benchmarks/bench_forward_units.py --rows 4 --cols 3 --freq 36")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--rows", type=positive_int, default=4, help="split-K array rows")
    p.add_argument("--cols", type=positive_int, default=3, help="split-K array columns")
    p.add_argument("--freq", type=float, default=36.0, help="clock in MHz for tokens/s")
    p.add_argument("--json", action="store_true", help="print JSON")
    args = p.parse_args(argv)
    if not args.freq > 0:
        raise ValueError(f"--freq must be above 0 MHz, not {args.freq}")
    compiled = compile_checkpoint(args.checkpoint)
    _, context = spram_context(compiled)
    last = min(context, compiled.config.n_positions) - 1
    print("simulating ...", file=sys.stderr)
    figures = measure(compiled, args.rows, args.cols, (0, last))
    n_layer = compiled.config.n_layer
    totals = {position: per_token(figures, n_layer, position) for position in (0, last)}
    head = compiled.config.n_embd * compiled.config.vocab_size
    result = {"array": f"{args.rows}x{args.cols}", "freq_mhz": args.freq, "cycles": figures,
              "cycles_per_token": totals,
              "tokens_per_s": {p: args.freq * 1e6 / cycles for p, cycles in totals.items()},
              "head_macs_not_counted": head}
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"{'operation (one token)':<26}{'cycles':>9}")
    for label, cycles in figures.items():
        print(f"{label:<26}{cycles:>9}")
    for position, cycles in totals.items():
        print(f"token at position {position:>3}: {cycles} cycles, {args.freq * 1e6 / cycles:,.0f} tokens/s at "
              f"{args.freq:g} MHz (units one after another; head of {head} int8 MACs not counted)")
    return 0


if __name__ == "__main__":
    run(main, "python benchmarks/bench_forward_units.py")
