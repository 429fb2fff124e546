"""The integer primitives of the whole forward against plain Python references (Python ints, loops)."""

import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden import int_ops

INT62 = st.integers(-(1 << 40), 1 << 40)


def ref_round_shift(x, s):
    return x if s == 0 else (x + (1 << (s - 1))) // (1 << s)       # Python // floors


def ref_saturate(x, bits):
    return max(-(1 << (bits - 1)), min((1 << (bits - 1)) - 1, x))


@given(st.lists(INT62, min_size=1, max_size=20), st.integers(0, 20))
def test_round_shift(xs, shift):
    assert int_ops.round_shift(np.array(xs), shift).tolist() == [ref_round_shift(x, shift) for x in xs]


def test_round_shift_half_goes_up():
    assert int_ops.round_shift(np.array([-3, -2, -1, 1, 2, 3, 5]), 1).tolist() == [-1, -1, 0, 1, 1, 2, 3]


@given(st.lists(st.tuples(INT62, st.integers(0, (1 << 16) - 1), st.integers(0, 20)), min_size=1, max_size=20),
       st.integers(2, 24))
def test_requantize_per_channel(cases, bits):
    acc, mult, shift = (np.array(column) for column in zip(*cases))
    got = int_ops.requantize(acc[None, :], mult, shift, bits)[0].tolist()
    assert got == [ref_saturate(ref_round_shift(a * m, s), bits) for a, m, s in cases]


@given(st.lists(st.integers(0, (1 << 63) - 1), min_size=1, max_size=20))
def test_bit_length(values):
    assert int_ops.bit_length(np.array(values, np.int64)).tolist() == [v.bit_length() for v in values]


@given(st.lists(st.integers(0, (1 << 62) - 1), min_size=1, max_size=20))
def test_isqrt(values):
    assert int_ops.isqrt(np.array(values, np.int64)).tolist() == [math.isqrt(v) for v in values]


def test_isqrt_edges():
    roots = np.array([0, 1, 2, 3, 46340, 46341, 2**31 - 1, 2**31 - 2, 3037000499], np.int64)
    values = np.concatenate([roots * roots, roots * roots - 1, roots * roots + 1, [(1 << 62) - 1]])
    values = values[(values >= 0) & (values < 1 << 62)]
    assert int_ops.isqrt(values).tolist() == [math.isqrt(int(v)) for v in values]
    with pytest.raises(ValueError, match="-1"):
        int_ops.isqrt(np.array([-1]))


@given(st.lists(st.integers(1, (1 << 46) - 1), min_size=1, max_size=20), st.integers(4, 16))
def test_reciprocal(values, bits):
    inv, sh = int_ops.reciprocal(np.array(values, np.int64), bits)
    for v, r, s in zip(values, inv.tolist(), sh.tolist()):
        assert s == v.bit_length() + bits - 2 and r == (1 << s) // v
        assert (1 << (bits - 2)) <= r <= (1 << (bits - 1))


def ref_layer_norm(row, gamma, beta, gamma_shift, eps, frac_bits, inv_bits, out_bits):
    d = len(row)
    s1, s2 = sum(row), sum(x * x for x in row)
    r = math.isqrt(d * s2 - s1 * s1 + eps)
    sh = r.bit_length() + inv_bits - 2
    inv = (1 << sh) // r
    out = []
    for x, g, b in zip(row, gamma, beta):
        n = ref_round_shift((d * x - s1) * inv, sh - frac_bits)
        out.append(ref_saturate(ref_round_shift(n * g + b, gamma_shift), out_bits))
    return out


@settings(max_examples=60)
@given(st.data(), st.integers(1, 24), st.integers(4, 16), st.integers(1, 12), st.integers(1, 1 << 20))
def test_layer_norm(data, d, res_bits, frac_bits, eps):
    inv_bits = 16
    rows = data.draw(st.lists(st.lists(st.integers(-(1 << (res_bits - 1)), (1 << (res_bits - 1)) - 1),
                                       min_size=d, max_size=d), min_size=1, max_size=3))
    gamma = data.draw(st.lists(st.integers(-(1 << 15), (1 << 15) - 1), min_size=d, max_size=d))
    beta = data.draw(st.lists(st.integers(-(1 << 30), 1 << 30), min_size=d, max_size=d))
    shift = data.draw(st.integers(0, 30))
    got = int_ops.layer_norm(np.array(rows), np.array(gamma), np.array(beta), gamma_shift=shift, eps=eps,
                             frac_bits=frac_bits, inv_bits=inv_bits, out_bits=8)
    assert got.tolist() == [ref_layer_norm(r, gamma, beta, shift, eps, frac_bits, inv_bits, 8) for r in rows]


def test_layer_norm_normalises():
    """A float layer norm and the integer one agree to the output step on a real-looking row."""
    rng = np.random.default_rng(0)
    x = rng.normal(3, 40, (5, 64)).round().astype(np.int64)
    f, out_step = 10, 4 / 127                                   # outputs in [-4, 4] on 8 bits
    gamma = np.full(64, round(1 / out_step * 2.0 ** (20 - f)))       # g = 1, gamma_shift 20
    y = int_ops.layer_norm(x, gamma, np.zeros(64, np.int64), gamma_shift=20, eps=1, frac_bits=f, inv_bits=16,
                           out_bits=8)
    expected = (x - x.mean(-1, keepdims=True)) / x.std(-1, keepdims=True) / out_step
    assert np.abs(y - np.clip(expected, -128, 127)).max() <= 1


@given(st.integers(1, 10), st.integers(4, 20), st.lists(st.integers(0, 1 << 30), min_size=1, max_size=20))
def test_exp2(frac_bits, exp_bits, zs):
    table = int_ops.exp2_table(frac_bits, exp_bits)
    assert table[0] == 1 << (exp_bits - 1) and table.max() < 1 << exp_bits and np.all(np.diff(table) <= 0)
    got = int_ops.exp2(np.array(zs), table, frac_bits).tolist()
    mask = (1 << frac_bits) - 1
    assert got == [int(table[z & mask]) >> min(z >> frac_bits, 62) for z in zs]
    for z, e in zip(zs, got):                                   # the table is base-2 exp to its rounding
        assert abs(e - 2.0 ** (exp_bits - 1 - z / (1 << frac_bits))) <= 1


def ref_attention(q, k, v, start, score_mult, score_shift, table, frac_bits, recip_bits, avg_frac_bits,
                  out_mult, out_shift, out_bits):
    out = []
    for i, qi in enumerate(q):
        keys = range(start + i + 1)
        scores = [sum(a * b for a, b in zip(qi, k[j])) for j in keys]
        top = max(scores)
        e = []
        for s in scores:
            z = ref_round_shift((top - s) * score_mult, score_shift)
            e.append(int(table[z & ((1 << frac_bits) - 1)]) >> min(z >> frac_bits, 62))
        total = sum(e)
        sh = total.bit_length() + recip_bits - 2
        inv = (1 << sh) // total
        row = []
        for c in range(len(qi)):
            acc = sum(e[j] * v[j][c] for j in keys)
            mean = ref_round_shift(acc * inv, sh - avg_frac_bits)
            row.append(ref_saturate(ref_round_shift(mean * out_mult, out_shift), out_bits))
        out.append(row)
    return out


@settings(max_examples=40)
@given(st.data(), st.integers(1, 6), st.integers(1, 4), st.integers(0, 5))
def test_attention(data, hd, t, start):
    s = start + t
    vec = st.lists(st.integers(-128, 127), min_size=hd, max_size=hd)
    q = data.draw(st.lists(vec, min_size=t, max_size=t))
    k = data.draw(st.lists(vec, min_size=s, max_size=s))
    v = data.draw(st.lists(vec, min_size=s, max_size=s))
    score_mult, score_shift = data.draw(st.integers(1, 1 << 16)), data.draw(st.integers(0, 30))
    out_mult, out_shift = data.draw(st.integers(1 << 15, (1 << 16) - 1)), data.draw(st.integers(8, 30))
    table = int_ops.exp2_table(8, 16)
    got = int_ops.attention(np.array(q)[None], np.array(k)[None], np.array(v)[None], start=start,
                            score_mult=score_mult, score_shift=score_shift, table=table, exp_frac_bits=8,
                            recip_bits=16, avg_frac_bits=8, out_mult=out_mult, out_shift=out_shift, out_bits=8)
    assert got[0].tolist() == ref_attention(q, k, v, start, score_mult, score_shift, table, 8, 16, 8,
                                            out_mult, out_shift, 8)


def test_attention_is_a_softmax_weighted_mean():
    """Scores that a float softmax would weigh give the float weighted mean, to a step."""
    rng = np.random.default_rng(1)
    q, k, v = (rng.integers(-128, 128, (1, 2, 9, 8)) for _ in range(3))
    scale = 0.001                                               # real score = scale * integer score
    mult, shift = round(scale * np.log2(np.e) * 256 * 2 ** 30), 30
    y = int_ops.attention(q, k, v, start=0, score_mult=mult, score_shift=shift, table=int_ops.exp2_table(8, 16),
                          exp_frac_bits=8, recip_bits=16, avg_frac_bits=8, out_mult=1 << 15, out_shift=23, out_bits=8)
    scores = (q @ np.swapaxes(k, -1, -2)) * scale + np.triu(np.full((9, 9), -np.inf), 1)
    p = np.exp(scores - scores.max(-1, keepdims=True))
    expected = (p / p.sum(-1, keepdims=True)) @ v
    assert np.abs(y - expected).max() <= 1.5


def test_gelu_lookup():
    table = np.arange(256) - 1000
    assert int_ops.gelu_lookup(np.array([-128, 0, 127]), table, 8).tolist() == [-1000, -872, -745]


def test_xorshift32_is_marsaglias():
    state = 2463534242                                          # Marsaglia's example seed (2003)
    assert int_ops.xorshift32(state) == 723471715
    seen = set()
    state = int_ops.seed_state(0)
    for _ in range(1000):
        state = int_ops.xorshift32(state)
        assert 0 < state < 1 << 32
        seen.add(state)
    assert len(seen) == 1000


@pytest.mark.parametrize("seed", [-1, 2**32 - 1, 1.5, True])
def test_seed_wrong(seed):
    with pytest.raises(ValueError, match="Seed must be an integer from 0 to 4294967294"):
        int_ops.seed_state(seed)


def ref_sample(logits, state, inv_temperature, top_k, logit_mult, logit_shift, table, frac_bits):
    if inv_temperature == 0:
        return logits.index(max(logits)), state
    top = max(logits)
    weights = []
    for l in logits:
        z = ref_round_shift((top - l) * logit_mult * inv_temperature, logit_shift + 8)
        weights.append(int(table[z & ((1 << frac_bits) - 1)]) >> min(z >> frac_bits, 62))
    if top_k is not None:
        keep = sorted(range(len(logits)), key=lambda i: (-logits[i], i))[:top_k]
        weights = [w if i in keep else 0 for i, w in enumerate(weights)]
    state = int_ops.xorshift32(state)
    r = (state * sum(weights)) >> 32
    running = 0
    for index, w in enumerate(weights):
        running += w
        if running > r:
            return index, state


@settings(max_examples=80)
@given(st.lists(st.integers(-3000, 3000), min_size=1, max_size=30), st.integers(1, 2**32 - 1),
       st.integers(0, 1000), st.one_of(st.none(), st.integers(1, 30)), st.integers(1 << 15, (1 << 16) - 1),
       st.integers(10, 30))
def test_sample(logits, state, inv_temperature, top_k, mult, shift):
    table = int_ops.exp2_table(8, 16)
    got = int_ops.sample(np.array(logits), state, inv_temperature=inv_temperature, top_k=top_k, logit_mult=mult,
                         logit_shift=shift, table=table, exp_frac_bits=8)
    assert got == ref_sample(logits, state, inv_temperature, top_k, mult, shift, table, 8)


def test_sample_top_1_and_greedy_are_argmax():
    table = int_ops.exp2_table(8, 16)
    logits = np.array([5, 9, 9, -2])
    for inv_t, k in ((0, None), (256, 1), (65535, 1)):
        token, _ = int_ops.sample(logits, 12345, inv_temperature=inv_t, top_k=k, logit_mult=1 << 15,
                                  logit_shift=20, table=table, exp_frac_bits=8)
        assert token == 1
