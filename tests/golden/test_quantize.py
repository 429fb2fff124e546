"""Quantizers: nearest-level rounding, scale search, the paper's method, idempotence, bad input."""

import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st
from hypothesis.extra.numpy import arrays

from golden.pot_format import MAX_BITS, MIN_BITS, PotFormat
from golden.quantize import METHODS, quantize, quantize_int8, round_to_pot

ALL_BITS = range(MIN_BITS, MAX_BITS + 1)

weights_st = arrays(np.float32, st.tuples(st.integers(1, 12), st.integers(1, 6)),
                    elements=st.floats(-4, 4, width=32, allow_subnormal=False))


def brute_force_nearest(ratio, bits):
    """The nearest of {0} U {2**-e} to each ratio, ties away from zero (the documented rule)."""
    fmt = PotFormat(bits)
    levels = np.concatenate([fmt.levels, [0.0]])
    out = []
    for r in np.atleast_1d(ratio):
        distance = np.abs(levels - r)
        best = np.flatnonzero(distance == distance.min())
        out.append(levels[best.min()])                    # levels are largest first: ties go up
    return np.array(out)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_round_to_pot_is_nearest_level(bits):
    fmt = PotFormat(bits)
    rng = np.random.default_rng(bits)
    edges = np.concatenate([fmt.levels * 0.75, fmt.levels, fmt.levels * 1.5, [2 ** -(fmt.emax + 1)]])
    ratio = np.concatenate([rng.uniform(0, 1.5, 2000), np.exp2(rng.uniform(-fmt.emax - 3, 1, 2000)),
                            edges, np.nextafter(edges, 0), np.nextafter(edges, 9), [0.0, 1.0, 7.0]])
    exponent, is_zero = round_to_pot(ratio, bits)
    got = np.where(is_zero, 0.0, np.ldexp(1.0, -exponent))
    np.testing.assert_array_equal(got, brute_force_nearest(ratio, bits))


@settings(max_examples=150, deadline=None)
@given(weights_st, st.integers(MIN_BITS, MAX_BITS), st.sampled_from(sorted(METHODS)), st.booleans())
def test_quantize_is_idempotent(weight, bits, method, pot_scale):
    pot_scale = pot_scale and method != "paper"
    first = quantize(weight, bits, method, pot_scale)
    second = quantize(first.dequantize(), bits, method, pot_scale)
    np.testing.assert_array_equal(second.codes, first.codes)
    np.testing.assert_array_equal(second.scales, first.scales)


@settings(max_examples=100, deadline=None)
@given(weights_st, st.integers(MIN_BITS, MAX_BITS))
@example(np.array([[9.1476418e-02], [1.1754944e-38]], dtype=np.float32), 8)   # a subnormal dequantized value
def test_codes_are_nearest_levels_of_a_searched_scale(weight, bits):
    """Each channel is the nearest-level rounding of its weights at the searched scale, which the
    canonical form may have divided by a power of two (largest magnitude moved to exponent 0)."""
    q = quantize(weight, bits, "pot-channel")
    fmt = PotFormat(bits)
    values = q.dequantize()
    for n in range(weight.shape[1]):
        magnitude = np.abs(weight[:, n]).astype(np.float64)
        candidates = [q.scales[n] * 2.0 ** j for j in range(fmt.emax + 1)]
        # dequantize() is float32: a level times the scale is exact in float64 and rounded once into
        # float32, which matters where the product is subnormal (a weight near 1e-38).
        assert any(((brute_force_nearest(magnitude / s, bits) * s).astype(np.float32)
                    == np.abs(values[:, n])).all() for s in candidates), n
        assert (np.sign(values[:, n])[values[:, n] != 0] == np.sign(weight[values[:, n] != 0, n])).all()


@pytest.mark.parametrize("bits", ALL_BITS)
def test_scale_search_beats_max_scale(bits):
    rng = np.random.default_rng(0)
    weight = (rng.standard_normal((128, 16)) * np.exp(rng.standard_normal(16))).astype(np.float32)
    searched = quantize(weight, bits, "pot-channel")
    max_scale = np.abs(weight).max(axis=0)
    exponent, is_zero = round_to_pot(np.abs(weight) / max_scale, bits)
    naive = np.sign(weight) * np.where(is_zero, 0, np.ldexp(1.0, -exponent)) * max_scale
    err = lambda w: ((w - weight) ** 2).sum(axis=0)
    assert (err(searched.dequantize()) <= err(naive) * (1 + 1e-6)).all()
    assert err(searched.dequantize()).sum() < err(naive).sum()


@pytest.mark.parametrize("bits", ALL_BITS)
def test_pot_scale_gives_power_of_two_scales(bits):
    weight = np.random.default_rng(1).standard_normal((64, 8)).astype(np.float32)
    scales = quantize(weight, bits, "pot-channel", pot_scale=True).scales
    np.testing.assert_array_equal(np.exp2(np.round(np.log2(scales))), scales)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_paper_method_matches_its_formula(bits):
    """sign(q) * 2**round(log2|q|) * s with s = max|W| / 2**P, the |q| = 1 level sent to zero."""
    rng = np.random.default_rng(bits)
    weight = (rng.standard_normal((96, 12)) * 0.02).astype(np.float32)
    top = 2 ** (bits - 1) - 1
    step = np.abs(weight).max().astype(np.float64) / 2 ** top
    q = np.rint(weight / step)
    with np.errstate(divide="ignore"):
        paper = np.sign(q) * np.exp2(np.rint(np.log2(np.abs(q)))) * step
    paper[np.abs(q) <= 1] = 0.0                             # the one level the b-bit format lacks
    got = quantize(weight, bits, "paper")
    np.testing.assert_allclose(got.dequantize(), paper.astype(np.float32), rtol=0, atol=0)
    assert np.unique(got.scales).size == 1


def test_nearest_per_channel_beats_paper_on_real_like_weights():
    rng = np.random.default_rng(2)
    weight = (rng.standard_normal((256, 64)) * np.exp(0.5 * rng.standard_normal(64))).astype(np.float32)
    err = {m: float(((quantize(weight, 4, m).dequantize() - weight) ** 2).sum()) for m in METHODS}
    assert err["pot-channel"] < err["pot-tensor"] < err["paper"]


def test_zero_channel():
    weight = np.zeros((4, 3), np.float32)
    weight[:, 1] = [0.5, -0.25, 0, 1]
    q = quantize(weight, 4)
    fmt = PotFormat(4)
    assert (q.codes[:, [0, 2]] == fmt.zero_code).all() and q.scales[0] == 1.0
    np.testing.assert_array_equal(q.dequantize(), weight)


@pytest.mark.parametrize("bad, message", [
    (np.array([[1.0, np.nan]], np.float32), "1 NaN/Inf values"),
    (np.array([[np.inf]], np.float32), "1 NaN/Inf values"),
    (np.zeros((3,), np.float32), "2-D"),
    (np.zeros((0, 3), np.float32), "2-D"),
])
def test_bad_weight(bad, message):
    with pytest.raises(ValueError, match=message):
        quantize(bad, 4, name="h.0.mlp.c_fc")


def test_bad_weight_names_the_layer():
    with pytest.raises(ValueError, match="h.3.attn.c_proj has 1 NaN"):
        quantize(np.array([[np.nan]], np.float32), 4, name="h.3.attn.c_proj")


def test_unknown_method():
    with pytest.raises(ValueError, match="Unknown quantization method 'log2'; choose from paper, pot-tensor"):
        quantize(np.ones((2, 2), np.float32), 4, "log2")


@pytest.mark.parametrize("bits", [2, 9])
def test_bits_out_of_range(bits):
    with pytest.raises(ValueError, match=f"from 3 to 8, not {bits}"):
        quantize(np.ones((2, 2), np.float32), bits)


def test_int8_reference():
    weight = np.array([[1.0, -0.5], [-2.0, 0.25], [0.0, 0.0]], np.float32)
    q = quantize_int8(weight)
    assert q.weights.dtype == np.int8
    assert q.weights[:, 0].tolist() == [64, -127, 0] and q.weights[:, 1].tolist() == [-127, 64, 0]
    np.testing.assert_allclose(q.dequantize(), weight, atol=2.0 / 127)


@settings(max_examples=300, deadline=None)
@given(bits=st.integers(3, 8),
       ratios=st.lists(st.floats(min_value=0, max_value=1e300, allow_nan=False, allow_infinity=False), min_size=1,
                       max_size=40))
def test_scale_search_magnitudes_are_round_to_pot(bits, ratios):
    """The scale search's bit-level rounding gives round_to_pot's magnitudes for every ratio, midpoints included."""
    from golden.quantize import _nearest_magnitudes
    fmt = PotFormat(bits)
    edges = [np.ldexp(1.0, -(fmt.emax + 1))] + [np.ldexp(1.5, -e) for e in range(fmt.emax + 2)]
    r = np.array(ratios + edges + [np.nextafter(x, 0) for x in edges], dtype=np.float64)
    exponent, is_zero = round_to_pot(r, bits)
    assert np.array_equal(_nearest_magnitudes(r.copy(), fmt), np.where(is_zero, 0.0, np.ldexp(1.0, -exponent)))
