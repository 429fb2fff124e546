"""The PoT code: encode/decode, values and packing, against plain Python arithmetic."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from golden.pot_format import MAX_BITS, MIN_BITS, PotFormat, check_bits, pack_codes, unpack_codes

ALL_BITS = range(MIN_BITS, MAX_BITS + 1)
bits_st = st.integers(MIN_BITS, MAX_BITS)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_format_constants(bits):
    fmt = PotFormat(bits)
    assert fmt.emax == 2 ** (bits - 1) - 2
    assert fmt.zero_code == 2 ** (bits - 1) - 1
    assert fmt.sign_bit == 2 ** (bits - 1)
    assert len(fmt.levels) == fmt.emax + 1


@pytest.mark.parametrize("bits", [2, 9, 0, -4])
def test_bits_wrong(bits):
    with pytest.raises(ValueError, match=f"not {bits}"):
        PotFormat(bits)


@pytest.mark.parametrize("bits", [4.0, "4", True, None])
def test_bits_wrong_type(bits):
    with pytest.raises(TypeError, match="Weight bits must be an integer"):
        check_bits(bits)


@pytest.mark.parametrize("bits", ALL_BITS)
def test_every_code_decodes_to_its_definition(bits):
    """Each of the 2**b codes means (-1)**sign * 2**-e, the all-ones exponent meaning zero."""
    fmt = PotFormat(bits)
    codes = np.arange(2 ** bits)
    values = fmt.to_float(codes)
    ints = fmt.to_int(codes)
    for code in range(2 ** bits):
        sign, e = code >> (bits - 1), code & (2 ** (bits - 1) - 1)
        expected = 0 if e == 2 ** (bits - 1) - 1 else (-1) ** sign * 2.0 ** -e
        assert values[code] == expected
        assert int(ints[code]) == (0 if expected == 0 else (-1) ** sign * 2 ** (fmt.emax - e))


@given(bits_st, st.data())
def test_encode_decode_round_trip(bits, data):
    fmt = PotFormat(bits)
    n = data.draw(st.integers(1, 50))
    sign = np.array(data.draw(st.lists(st.integers(0, 1), min_size=n, max_size=n)))
    exponent = np.array(data.draw(st.lists(st.integers(0, fmt.emax), min_size=n, max_size=n)))
    zero = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    codes = fmt.encode(sign, exponent, zero)
    got_sign, got_exponent, got_zero = fmt.decode(codes)
    assert (got_zero == zero).all()
    assert (got_sign[~zero] == sign[~zero]).all() and (got_exponent[~zero] == exponent[~zero]).all()
    assert (codes[zero] == fmt.zero_code).all()


@pytest.mark.parametrize("bits", ALL_BITS)
def test_negative_zero_is_zero(bits):
    fmt = PotFormat(bits)
    assert fmt.to_int([fmt.sign_bit | fmt.zero_code])[0] == 0


def test_encode_exponent_out_of_range():
    with pytest.raises(ValueError, match="from 0 to 6 .* not 7"):
        PotFormat(4).encode([0], [7])


def test_code_too_wide():
    with pytest.raises(ValueError, match="Code 16 does not fit in 4 bits"):
        PotFormat(4).decode([16])


@given(bits_st, st.integers(8, 64), st.data())
def test_pack_matches_plain_bit_arithmetic(bits, word_bits, data):
    word_bits = max(word_bits, bits)
    codes = data.draw(st.lists(st.integers(0, 2 ** bits - 1), min_size=0, max_size=40))
    words = pack_codes(codes, bits, word_bits)
    per_word = word_bits // bits
    expected = []
    for start in range(0, len(codes), per_word):
        expected.append(sum(c << (i * bits) for i, c in enumerate(codes[start:start + per_word])))
    assert [int(w) for w in words] == expected
    assert all(int(w) < 2 ** word_bits for w in words)
    assert list(unpack_codes(words, bits, word_bits, len(codes))) == codes


def test_pack_word_too_narrow():
    with pytest.raises(ValueError, match="Word width must be an integer from 5 to 64 bits, not 4"):
        pack_codes([1], 5, 4)


def test_unpack_too_few_words():
    with pytest.raises(ValueError, match="fewer than 9 codes"):
        unpack_codes([0, 0], 4, 16, 9)
