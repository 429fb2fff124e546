# amaranth: UnusedElaboratable=no
"""The sampler against golden.int_ops.sample: greedy, temperature, top-k with ties, the state carried over tokens."""

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
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
                  exp_bits=f.exp_bits, logit_mult=settings["logit_mult"], logit_shift=settings["logit_shift"])
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
    dut = Sampler(vocab_size=5, logit_bits=6, table=table, exp_frac_bits=4, exp_bits=8, logit_mult=23, logit_shift=3)
    got = run_sampler(dut, rows, settings, 99)
    assert got == golden_tokens(rows, settings, 99, table, 4)
    assert len(set(got)) > 2


def test_wrong():
    with pytest.raises(ValueError, match="sum past 32 bits"):
        Sampler(vocab_size=1 << 16, table=[1] * 256, exp_bits=24, logit_mult=1, logit_shift=0)
    with pytest.raises(ValueError, match="vocab_size"):
        Sampler(vocab_size=1, table=[1] * 256, logit_mult=1, logit_shift=0)
    with pytest.raises(ValueError, match="logit_mult"):
        Sampler(vocab_size=5, table=[1] * 256, logit_mult=1 << 16, logit_shift=0)
    with pytest.raises(ValueError, match="256 entries"):
        Sampler(vocab_size=5, table=[1] * 255, logit_mult=1, logit_shift=0)
    with pytest.raises(ValueError, match="does not fit 16"):
        Sampler(vocab_size=5, table=[1 << 16] * 256, logit_mult=1, logit_shift=0)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), vocab=st.integers(2, 12), logit_bits=st.integers(2, 16),
       logit_mult=st.integers(0, (1 << 16) - 1), logit_shift=st.integers(0, 54), exp_frac_bits=st.integers(3, 8),
       exp_bits=st.integers(4, 16))
@example(seed=5, vocab=7, logit_bits=16, logit_mult=(1 << 16) - 1, logit_shift=0, exp_frac_bits=8, exp_bits=16)
@example(seed=6, vocab=9, logit_bits=3, logit_mult=(1 << 16) - 1, logit_shift=54, exp_frac_bits=8, exp_bits=16)
@example(seed=7, vocab=11, logit_bits=6, logit_mult=30000, logit_shift=12, exp_frac_bits=3, exp_bits=2)
def test_random_formats(seed, vocab, logit_bits, logit_mult, logit_shift, exp_frac_bits, exp_bits):
    """Random vocabularies, logit widths, exp2 formats and requantisers (the multiplier's full 16 x 16 range;
    shifts below the serial multiply's 16 steps and far above), extreme logits and temperatures, every top-k
    (with 2-bit weights too, whose memory the top-k search widens to its 3 bits a key): against golden, token
    for token over several draws."""
    from golden.int_ops import exp2_table

    rng = np.random.default_rng(seed)
    table = exp2_table(exp_frac_bits, exp_bits)
    low, high = -(1 << (logit_bits - 1)), (1 << (logit_bits - 1)) - 1
    rows = rng.integers(low, high + 1, (8, vocab))
    rows[0, 0], rows[0, -1] = low, high
    rows[1, :] = rows[1, 0]                                       # all tied
    per_row = [(int(rng.choice([1, 255, 256, 65535, int(rng.integers(1, 1 << 16))])),
                None if k == vocab else int(k)) for k in rng.integers(1, vocab + 1, 8)]
    settings_ = {"logit_mult": logit_mult, "logit_shift": logit_shift, "per_row": per_row}
    dut = Sampler(vocab_size=vocab, logit_bits=logit_bits, table=table, exp_frac_bits=exp_frac_bits,
                  exp_bits=exp_bits, logit_mult=logit_mult, logit_shift=logit_shift)
    want = golden_tokens(rows, settings_, seed % 1000, table, exp_frac_bits)
    assert run_sampler(dut, rows, settings_, seed % 1000) == want
