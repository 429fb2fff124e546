# amaranth: UnusedElaboratable=no
"""The attention unit against golden.int_ops.attention, one decode position at a time on its own KV cache."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.int_forward import IntegerForward
from golden.int_ops import attention, exp2_table
from hdl.forward.attention_unit import AttentionUnit
from hdl.forward.units import attention_for


def run_steps(dut, steps, constants):
    """`steps`: [(layer, position, k (d,), v (d,), q (d,))]; returns the (d,) outputs of each step."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    outputs = []

    async def bench(ctx):
        for name, value in constants.items():
            ctx.set(getattr(dut, name), value)
        for layer, position, k, v, q in steps:
            ctx.set(dut.layer, layer)
            ctx.set(dut.position, position)
            for kk, vv in zip(k, v):
                ctx.set(dut.kv.payload.k, int(kk))
                ctx.set(dut.kv.payload.v, int(vv))
                ctx.set(dut.kv.valid, 1)
                await ctx.tick().until(dut.kv.ready)
            ctx.set(dut.kv.valid, 0)
            for value in q:
                ctx.set(dut.q.payload, int(value))
                ctx.set(dut.q.valid, 1)
                await ctx.tick().until(dut.q.ready)
            ctx.set(dut.q.valid, 0)
            ctx.set(dut.o.ready, 1)
            got = []
            while len(got) < len(q):
                await ctx.delay(1e-8)
                if ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload))
                await ctx.tick()
            ctx.set(dut.o.ready, 0)
            outputs.append(got)

    sim.add_testbench(bench)
    sim.run()
    return np.array(outputs)


def golden_steps(steps, *, n_layer, positions, d, n_head, constants, table, act_bits=8):
    hd = d // n_head
    cache_k = np.zeros((n_layer, positions, d), np.int64)
    cache_v = np.zeros_like(cache_k)
    want = []
    for layer, position, k, v, q in steps:
        cache_k[layer, position], cache_v[layer, position] = k, v
        heads = lambda a: a.reshape(-1, n_head, hd).transpose(1, 0, 2)       # noqa: E731  (H, S, hd)
        y = attention(heads(np.asarray(q)[None]), heads(cache_k[layer, :position + 1]),
                      heads(cache_v[layer, :position + 1]), start=position,
                      score_mult=constants["score_mult"], score_shift=constants["score_shift"], table=table,
                      exp_frac_bits=8, recip_bits=16, avg_frac_bits=8, out_mult=constants["out_mult"],
                      out_shift=constants["out_shift"], out_bits=act_bits)
        want.append(y.transpose(1, 0, 2).reshape(-1))
    return np.array(want)


def random_steps(rng, n_layer, positions, d, order):
    steps = []
    for layer, position in order:
        k, v, q = rng.integers(-128, 128, (3, d))
        steps.append((layer, position, k, v, q))
    return steps


# Compact: the score requantiser's range given, so that gaps of 2**15 - 1 and more are known to give e = 0.
COMPACT = {"score_mults": (61727, 61727), "score_shifts": (18, 18), "out_shifts": (22, 23), "compact": True}


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("lanes", [1, 2, 4])
def test_small_cache(lanes, compact):
    """Two layers, six positions, every position in turn, and an all-extreme step (largest scores, -128 values);
    one, two and four channels per cycle; the wide and the compact scaling multiplier."""
    d, n_head, n_layer, positions = 8, 2, 2, 6
    table = exp2_table(8, 16)
    constants = {"score_mult": 61727, "score_shift": 18, "out_mult": 39231, "out_shift": 23}
    dut = AttentionUnit(d=d, n_head=n_head, n_layer=n_layer, positions=positions, table=table, lanes=lanes,
                        **(COMPACT if compact else {"compact": False}))
    assert (dut.head_dim, dut.score_bits, dut.sum_bits, dut.mean_bits, dut.compact) == (4, 18, 19, 16, compact)
    rng = np.random.default_rng(8)
    order = [(layer, p) for p in range(positions) for layer in range(n_layer)]
    steps = random_steps(rng, n_layer, positions, d, order)
    layer, position, k, v, q = steps[-1]
    steps[-1] = (layer, position, np.full(d, -128), np.full(d, -128), np.full(d, -128))
    want = golden_steps(steps, n_layer=n_layer, positions=positions, d=d, n_head=n_head, constants=constants,
                        table=table)
    np.testing.assert_array_equal(run_steps(dut, steps, constants), want)


@pytest.mark.parametrize("last", [40, pytest.param(127, marks=pytest.mark.slow)])
def test_default_model(compiled_default, last):
    """The default model's shape and layer-2 constants: positions 0, 1 and `last` (127: the whole context)."""
    c, f, t = compiled_default.config, compiled_default.formats, compiled_default.tensors
    constants = {"score_mult": int(t["h.2.attn.score.mult"]), "score_shift": int(t["h.2.attn.score.shift"]),
                 "out_mult": int(t["h.2.attn.out.mult"]), "out_shift": int(t["h.2.attn.out.shift"])}
    dut = AttentionUnit(d=c.n_embd, n_head=c.n_head, n_layer=c.n_layer, positions=c.n_positions,
                        act_bits=f.act_bits, table=t["exp2.lut"], exp_frac_bits=f.exp_frac_bits,
                        exp_bits=f.exp_bits, recip_bits=f.recip_bits, avg_frac_bits=f.avg_frac_bits,
                        mult_bits=f.mult_bits)
    assert dut.cache_bits == 2 * 4 * 128 * 64 * 8
    rng = np.random.default_rng(9)
    steps = random_steps(rng, c.n_layer, c.n_positions, c.n_embd, [(2, 0), (2, 1), (2, last)])
    want = golden_steps(steps, n_layer=c.n_layer, positions=c.n_positions, d=c.n_embd, n_head=c.n_head,
                        constants=constants, table=t["exp2.lut"])
    np.testing.assert_array_equal(run_steps(dut, steps, constants), want)


@pytest.mark.parametrize("score_shift", [17, 19])
def test_eight_lanes_narrow_shifter(score_shift):
    """Eight lanes (two adder-tree registers) and a score shifter covering 17..19 only, at both ends of its range;
    three layers, five positions in a mixed order, a head dimension of 8 (one group: no second VALUES pass)."""
    d, n_head, n_layer, positions = 16, 2, 3, 5
    table = exp2_table(8, 16)
    constants = {"score_mult": 40961, "score_shift": score_shift, "out_mult": 52001, "out_shift": 22}
    dut = AttentionUnit(d=d, n_head=n_head, n_layer=n_layer, positions=positions, table=table, lanes=8,
                        score_shifts=(17, 19))
    assert dut.score_shifts == (17, 19) and dut.mean_shift_range == (22, 24)
    rng = np.random.default_rng(11)
    order = [(2, 0), (0, 0), (2, 1), (0, 1), (1, 0), (2, 2), (2, 3), (0, 2), (2, 4)]
    steps = random_steps(rng, n_layer, positions, d, order)
    want = golden_steps(steps, n_layer=n_layer, positions=positions, d=d, n_head=n_head, constants=constants,
                        table=table)
    np.testing.assert_array_equal(run_steps(dut, steps, constants), want)


@pytest.mark.parametrize("compact", [False, True])
@pytest.mark.parametrize("lanes", [1, 4])
def test_head_cycles(lanes, compact):
    """One head: the cycles from the last query value taken to the last output are `head_cycles` at most, and
    short of it by no more than the reciprocal's normalisation and the serial shifts (compact) can save."""
    d, positions, position = 8, 9, 7
    table = exp2_table(8, 16)
    dut = AttentionUnit(d=d, n_head=1, n_layer=1, positions=positions, table=table, lanes=lanes,
                        **(COMPACT if compact else {}))
    assert dut.compact == compact
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    cycles = []

    async def bench(ctx):
        for name, value in {"score_mult": 61727, "score_shift": 18, "out_mult": 39231, "out_shift": 23}.items():
            ctx.set(getattr(dut, name), value)
        ctx.set(dut.position, position)
        ctx.set(dut.o.ready, 1)
        for k in range(d):
            ctx.set(dut.kv.payload.k, k - 3)
            ctx.set(dut.kv.payload.v, 5 - k)
            ctx.set(dut.kv.valid, 1)
            await ctx.tick().until(dut.kv.ready)
        ctx.set(dut.kv.valid, 0)
        for k in range(d):
            ctx.set(dut.q.payload, 2 * k - 7)
            ctx.set(dut.q.valid, 1)
            await ctx.tick().until(dut.q.ready)
        ctx.set(dut.q.valid, 0)
        count, outputs = 0, 0
        while outputs < d:
            await ctx.delay(1e-8)
            outputs += ctx.get(dut.o.valid)
            count += 1
            await ctx.tick()
        cycles.append(count)

    sim.add_testbench(bench)
    sim.run()
    # From the q handshake: the unit's cycles, then one of the output register.
    spent = cycles[0] - 1
    low, high = dut.mean_shift_range                        # compact: its span and out_shifts' (22..23) serial
    assert (low, high) == (22, 25) and dut.shift_steps == (high - low + 1 if compact else 0)
    assert dut.head_cycles(position) - dut.sum_bits - d * dut.shift_steps <= spent <= dut.head_cycles(position)


def test_wrong():
    with pytest.raises(ValueError, match="multiple of n_head"):
        AttentionUnit(d=10, n_head=4, n_layer=1, positions=4, table=exp2_table(8, 16))
    with pytest.raises(ValueError, match="power of two dividing the head dimension 6, not 3"):
        AttentionUnit(d=12, n_head=2, n_layer=1, positions=4, table=exp2_table(8, 16), lanes=3)
    for shifts in [(5, 4), (-1, 3), (0, 64), (3,), 7]:
        with pytest.raises(ValueError, match=r"score_shifts must be \(low, high\) with 0 <= low <= high <= 63"):
            AttentionUnit(d=8, n_head=2, n_layer=1, positions=4, table=exp2_table(8, 16), score_shifts=shifts)
    with pytest.raises(ValueError, match="score_mults must have low <= high"):
        AttentionUnit(d=8, n_head=2, n_layer=1, positions=4, table=exp2_table(8, 16), score_mults=(5, 3))
    with pytest.raises(TypeError, match="compact must be True, False or None, not 'yes'"):
        AttentionUnit(d=8, n_head=2, n_layer=1, positions=4, table=exp2_table(8, 16), compact="yes")
    # Any score mult (from 0): a clamped gap could still give e > 0, so compact is refused, and not chosen.
    with pytest.raises(ValueError, match="compact=True needs every score gap of 32767 or more to give exp2 0"):
        AttentionUnit(d=8, n_head=2, n_layer=1, positions=4, table=exp2_table(8, 16), compact=True)
    assert not AttentionUnit(d=8, n_head=2, n_layer=1, positions=4, table=exp2_table(8, 16)).compact
    # The least mult at which gaps of 2**15 - 1 give e = 0 for score shift 18 (z >> 8 >= 16: z >= 4096).
    least = next(m for m in range(1, 1 << 16) if (32767 * m + (1 << 17)) >> 18 >= 4096)
    for mult, compact in [(least - 1, False), (least, True)]:
        dut = AttentionUnit(d=8, n_head=2, n_layer=1, positions=4, table=exp2_table(8, 16), score_shifts=(18, 18),
                            score_mults=(mult, 65535))
        assert dut.compact == compact


def test_default_model_real_activations(compiled_default):
    """Layer 0 of the default model on a real prompt: golden's own q, k, v (ln_1 -> c_attn), eight positions."""
    c, t = compiled_default.config, compiled_default.tensors
    forward = IntegerForward(compiled_default)
    ids = np.array([[18, 47, 56, 57, 58, 1, 15, 47]])                 # "First Ci" in the character vocabulary
    qkv = forward._linear_op("h.0.attn.c_attn", forward._layer_norm("h.0.ln_1", forward._embed(ids, 0)), "act")
    want = forward._attention("h.0.attn", 0, qkv, forward.new_cache(), 0)[0]
    d = c.n_embd
    steps = [(0, p, qkv[0, p, d:2 * d], qkv[0, p, 2 * d:], qkv[0, p, :d]) for p in range(ids.shape[1])]
    constants = {"score_mult": int(t["h.0.attn.score.mult"]), "score_shift": int(t["h.0.attn.score.shift"]),
                 "out_mult": int(t["h.0.attn.out.mult"]), "out_shift": int(t["h.0.attn.out.shift"])}
    got = run_steps(attention_for(compiled_default, positions=16, lanes=4), steps, constants)
    np.testing.assert_array_equal(got, want)
    assert len(np.unique(want)) > 20
