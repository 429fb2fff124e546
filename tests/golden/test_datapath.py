"""The integer datapath against a plain Python-int reference: terms, sums, wrap, INT8, scales."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.datapath import (MAX_ACT_BITS, MIN_ACT_BITS, activation_scale, check_act_bits, dequantize,
                             int8_acc_bits, int8_accumulate, int8_sum_bits, pot_acc_bits, pot_accumulate,
                             pot_real_unit, pot_sum_bits, quantize_activations, quantize_bias, wrap)
from golden.pot_format import MAX_BITS, MIN_BITS, PotFormat


def reference_term(x, code, bits):
    """t = (-1)**sign * (x << (Emax - e)), 0 for the zero code: written from the definition."""
    emax = 2 ** (bits - 1) - 2
    sign, e = code >> (bits - 1), code & (2 ** (bits - 1) - 1)
    if e == 2 ** (bits - 1) - 1:
        return 0
    return (-1) ** sign * (x << (emax - e))


def reference_wrap(v, width):
    v &= (1 << width) - 1
    return v - (1 << width) if v >> (width - 1) else v


@st.composite
def layers(draw, max_k=12, max_n=5, max_t=3):
    bits = draw(st.integers(MIN_BITS, MAX_BITS))
    act_bits = draw(st.integers(MIN_ACT_BITS, MAX_ACT_BITS))
    k, n, t = draw(st.integers(1, max_k)), draw(st.integers(1, max_n)), draw(st.integers(1, max_t))
    lo, hi = -2 ** (act_bits - 1), 2 ** (act_bits - 1) - 1
    # Extreme activations (the most negative one especially) are drawn as often as random ones.
    value = st.one_of(st.sampled_from([lo, hi, 0, -1]), st.integers(lo, hi))
    code = st.one_of(st.sampled_from([PotFormat(bits).zero_code, 0, 2 ** (bits - 1)]),
                     st.integers(0, 2 ** bits - 1))
    x = np.array(draw(st.lists(value, min_size=t * k, max_size=t * k)), dtype=np.int64).reshape(t, k)
    codes = np.array(draw(st.lists(code, min_size=k * n, max_size=k * n)), dtype=np.uint8).reshape(k, n)
    bias = draw(st.lists(st.integers(-2 ** 40, 2 ** 40), min_size=n, max_size=n))
    return bits, act_bits, x, codes, bias


@settings(max_examples=300, deadline=None)
@given(layers())
def test_accumulate_matches_reference_exact_width(layer):
    bits, act_bits, x, codes, bias = layer
    acc = pot_accumulate(x, codes, np.array(bias, dtype=np.int64), bits, act_bits)
    for t in range(x.shape[0]):
        for n in range(codes.shape[1]):
            expected = bias[n] + sum(reference_term(int(x[t, k]), int(codes[k, n]), bits)
                                     for k in range(codes.shape[0]))
            assert int(acc[t, n]) == expected


def fits(value, width):
    return -(1 << (width - 1)) <= value < (1 << (width - 1))


def extreme_sums(weights, act_bits):
    """Per column the largest and the smallest sum any activations make, by choosing each activation."""
    lo, hi = -2 ** (act_bits - 1), 2 ** (act_bits - 1) - 1
    out = []
    for column in weights.T:
        out.append(sum(max(w * lo, w * hi) for w in column))
        out.append(sum(min(w * lo, w * hi) for w in column))
    return out


@settings(max_examples=300, deadline=None)
@given(layers())
def test_sum_bits_is_the_exact_width_of_the_codes_sums(layer):
    """Every sum the codes make (the extreme ones, and the drawn activations') fits `pot_sum_bits`, and one
    less bit would not hold an extreme one; never wider than `pot_acc_bits`."""
    bits, act_bits, x, codes, _ = layer
    width = pot_sum_bits(codes, bits, act_bits)
    weights = [[reference_term(1, int(c), bits) for c in row] for row in codes]
    extremes = extreme_sums(np.array(weights, dtype=object), act_bits)
    assert all(fits(v, width) for v in extremes)
    assert width == 2 or not all(fits(v, width - 1) for v in extremes)
    sums = pot_accumulate(x, codes, np.zeros(codes.shape[1], dtype=np.int64), bits, act_bits)
    assert all(fits(int(v), width) for v in np.ravel(sums))
    assert width <= pot_acc_bits(codes.shape[0], act_bits, bits)


@settings(max_examples=200, deadline=None)
@given(st.integers(MIN_ACT_BITS, MAX_ACT_BITS), st.integers(1, 12), st.integers(1, 5), st.data())
def test_int8_sum_bits_is_the_exact_width(act_bits, k, n, data):
    weight = st.one_of(st.sampled_from([-128, 127, 0]), st.integers(-128, 127))
    weights = np.array(data.draw(st.lists(weight, min_size=k * n, max_size=k * n)), dtype=np.int64).reshape(k, n)
    width = int8_sum_bits(weights, act_bits)
    extremes = extreme_sums(weights.astype(object), act_bits)
    assert all(fits(v, width) for v in extremes)
    assert width == 2 or not all(fits(v, width - 1) for v in extremes)
    assert width <= int8_acc_bits(k, act_bits)


def test_sum_bits_of_small_codes():
    # Two codes of exponent 6 (magnitude 1) and one of 5 (2), all positive: the extremes are 127 * 4 = 508
    # and -128 * 4 = -512, so 10 bits, against 16 for three codes of the largest term (3 * 128 * 64).
    fmt = PotFormat(4)
    codes = fmt.encode(np.array([[0], [0], [0]]), np.array([[6], [6], [5]]))
    assert pot_sum_bits(codes, 4, 8) == 10 and pot_acc_bits(3, 8, 4) == 16
    assert pot_sum_bits(np.full((4, 2), fmt.zero_code), 4, 8) == 2
    with pytest.raises(ValueError, match="a \\(K, N\\) matrix"):
        pot_sum_bits(np.zeros(3, dtype=np.uint8), 4, 8)


@settings(max_examples=300, deadline=None)
@given(layers(), st.integers(2, 40))
def test_accumulate_wraps_like_twos_complement(layer, acc_bits):
    bits, act_bits, x, codes, bias = layer
    acc = pot_accumulate(x, codes, np.array(bias, dtype=np.int64), bits, act_bits, acc_bits)
    for t in range(x.shape[0]):
        for n in range(codes.shape[1]):
            exact = bias[n] + sum(reference_term(int(x[t, k]), int(codes[k, n]), bits)
                                  for k in range(codes.shape[0]))
            assert int(acc[t, n]) == reference_wrap(exact, acc_bits)


@pytest.mark.parametrize("bits", range(MIN_BITS, MAX_BITS + 1))
@pytest.mark.parametrize("act_bits", [2, 8, 16])
def test_exact_width_holds_the_extremes(bits, act_bits):
    """The largest sums (all activations -2**(A-1), all codes at exponent 0, either sign) fit exactly."""
    k = 37
    fmt = PotFormat(bits)
    x = np.full((1, k), -2 ** (act_bits - 1))
    width = pot_acc_bits(k, act_bits, bits)
    for sign in (0, 1):
        codes = np.full((k, 1), fmt.encode(sign, 0), dtype=np.uint8)
        acc = pot_accumulate(x, codes, [0], bits, act_bits)
        expected = k * (-1) ** (sign + 1) * 2 ** (act_bits - 1 + fmt.emax)
        assert int(acc[0, 0]) == expected
        assert -2 ** (width - 1) <= expected < 2 ** (width - 1)
    assert width == (k * 2 ** (act_bits - 1 + fmt.emax)).bit_length() + 1


def test_zero_code_contributes_nothing():
    fmt = PotFormat(4)
    acc = pot_accumulate([[-128, 127, 5]], np.full((3, 2), fmt.zero_code, np.uint8), [3, -4], 4, 8)
    assert acc.tolist() == [[3, -4]]


def test_activation_out_of_range():
    with pytest.raises(ValueError, match="Activation -129 does not fit in 8 signed bits"):
        pot_accumulate([[-129]], [[0]], [0], 4, 8)


@pytest.mark.parametrize("act_bits", [1, 17, 0])
def test_act_bits_wrong(act_bits):
    with pytest.raises(ValueError, match=f"from 2 to 16, not {act_bits}"):
        check_act_bits(act_bits)


@settings(max_examples=200, deadline=None)
@given(st.integers(2, 16), st.data())
def test_int8_matches_reference(act_bits, data):
    k, n = data.draw(st.integers(1, 10)), data.draw(st.integers(1, 4))
    lo, hi = -2 ** (act_bits - 1), 2 ** (act_bits - 1) - 1
    x = np.array(data.draw(st.lists(st.one_of(st.just(lo), st.integers(lo, hi)), min_size=k, max_size=k)))
    w = np.array(data.draw(st.lists(st.one_of(st.just(-128), st.integers(-128, 127)), min_size=k * n,
                                    max_size=k * n)), dtype=np.int8).reshape(k, n)
    acc_bits = data.draw(st.integers(2, 40))
    acc = int8_accumulate(x[None], w, np.zeros(n, np.int64), act_bits, acc_bits)
    exact = [sum(int(x[i]) * int(w[i, j]) for i in range(k)) for j in range(n)]
    assert acc[0].tolist() == [reference_wrap(v, acc_bits) for v in exact]
    assert int8_acc_bits(k, act_bits) == (k * 2 ** (act_bits - 1) * 128).bit_length() + 1


def test_wrap_at_boundaries():
    assert wrap([127, 128, -128, -129, 255, 256], 8).tolist() == [127, -128, -128, 127, -1, 0]


def test_activation_quantization_rounds_half_even_and_saturates():
    scale = activation_scale(127.0, 8)
    assert scale == 1.0
    q = quantize_activations(np.array([0.5, 1.5, -2.5, 126.6, 300.0, -300.0], np.float32), scale, 8)
    assert q.tolist() == [0, 2, -2, 127, 127, -127]
    assert activation_scale(0.0, 8) == 1.0


def test_dequantize_recovers_real_products():
    """acc * s_n * 2**-Emax * act_scale is the real dot product of the dequantized operands."""
    fmt = PotFormat(4)
    codes = fmt.encode([0, 1], [0, 3])[:, None]            # +1, -1/8 (times the scale)
    scales, act_scale = np.array([0.5], np.float32), 0.25
    unit = pot_real_unit(scales, act_scale, 4)
    acc = pot_accumulate([[4, 8]], codes, quantize_bias([0.75], unit), 4, 8)
    expected = (4 * 0.25) * (1 * 0.5) + (8 * 0.25) * (-0.125 * 0.5) + 0.75
    assert dequantize(acc, unit)[0, 0] == pytest.approx(expected, abs=1e-7)
