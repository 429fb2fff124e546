# amaranth: UnusedElaboratable=no
"""The sampler against golden.int_ops.sample: greedy, temperature, top-k with ties, the state carried over tokens."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.int_ops import sample, seed_state
from hdl.forward.sampler import Sampler

from forward_cases import set_payload


def run_sampler(dut, rows, settings, seed):
    """Sample each row of logits with its (inv_temperature, top_k); returns the tokens."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    tokens = []

    async def bench(ctx):
        ctx.set(dut.logit_mult, settings["logit_mult"])
        ctx.set(dut.logit_shift, settings["logit_shift"])
        set_payload(ctx, dut.seed.payload, seed_state(seed))
        ctx.set(dut.seed.valid, 1)
        await ctx.tick()
        ctx.set(dut.seed.valid, 0)
        for row, (inv_temperature, top_k) in zip(rows, settings["per_row"]):
            ctx.set(dut.inv_temperature, inv_temperature)
            ctx.set(dut.top_k, dut.vocab_size if top_k is None else top_k)
            for value in row:
                ctx.set(dut.logits.payload, int(value))
                ctx.set(dut.logits.valid, 1)
                await ctx.tick().until(dut.logits.ready)
            ctx.set(dut.logits.valid, 0)
            ctx.set(dut.token.ready, 1)
            token, = await ctx.tick().sample(dut.token.payload).until(dut.token.valid)
            ctx.set(dut.token.ready, 0)
            tokens.append(token)

    sim.add_testbench(bench)
    sim.run()
    return tokens


def golden_tokens(rows, settings, seed, table, exp_frac_bits=8):
    state, tokens = seed_state(seed), []
    for row, (inv_temperature, top_k) in zip(rows, settings["per_row"]):
        token, state = sample(row, state, inv_temperature=inv_temperature, top_k=top_k,
                              logit_mult=settings["logit_mult"], logit_shift=settings["logit_shift"], table=table,
                              exp_frac_bits=exp_frac_bits)
        tokens.append(token)
    return tokens


def test_default_model(compiled_default):
    """Logit rows of the default model's range; greedy, temperatures 0.5..2, top-k 1, 2, 5, V, ties at the k-th."""
    t, f, V = compiled_default.tensors, compiled_default.formats, compiled_default.config.vocab_size
    rng = np.random.default_rng(11)
    rows = rng.normal(0, 2000, (12, V)).round().astype(np.int64)
    rows[3, [4, 9, 20, 30]] = rows[3].max() + 5                   # a four-way tie at the top, k = 2 takes two
    rows[4, :] = 100                                              # all equal
    rows[5, [0, V - 1]] = -(1 << 15), (1 << 15) - 1               # the logit format's extremes
    per_row = [(0, None), (256, None), (512, None), (128, None), (256, None), (256, 5), (256, 2), (256, 1),
               (0, 3), (1000, V), (256, 3), (65535, None)]
    rows[10, :3] = rows[10].max()                                 # top-3 = a three-way tie
    settings = {"logit_mult": int(t["sampler.logit.mult"]), "logit_shift": int(t["sampler.logit.shift"]),
                "per_row": per_row}
    dut = Sampler(vocab_size=V, logit_bits=f.logit_bits, table=t["exp2.lut"], exp_frac_bits=f.exp_frac_bits,
                  exp_bits=f.exp_bits, mult_bits=f.mult_bits)
    for seed in (0, 7):
        assert run_sampler(dut, rows, settings, seed) == golden_tokens(rows, settings, seed, t["exp2.lut"])


def test_small_vocab_many_draws():
    """A 5-token vocabulary drawn 40 times at temperature 1: the generator steps once per sampled token."""
    from golden.int_ops import exp2_table

    table = exp2_table(4, 8)
    rng = np.random.default_rng(4)
    rows = rng.integers(-20, 20, (40, 5))
    per_row = [(256, None if i % 3 else 2) for i in range(40)]
    settings = {"logit_mult": 23, "logit_shift": 3, "per_row": per_row}
    dut = Sampler(vocab_size=5, logit_bits=6, table=table, exp_frac_bits=4, exp_bits=8, mult_bits=5)
    got = run_sampler(dut, rows, settings, 99)
    assert got == golden_tokens(rows, settings, 99, table, 4)
    assert len(set(got)) > 2


def test_wrong():
    with pytest.raises(ValueError, match="sum past 32 bits"):
        Sampler(vocab_size=1 << 16, table=[1] * 256, exp_bits=24)
    with pytest.raises(ValueError, match="vocab_size"):
        Sampler(vocab_size=1, table=[1] * 256)
