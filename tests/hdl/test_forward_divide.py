# amaranth: UnusedElaboratable=no
"""The per-row iterative units: isqrt (exhaustive over 10-bit radicands, 16 slow) and reciprocal (exhaustive over 9 bits, 14 slow)."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.int_ops import isqrt, reciprocal
from hdl.forward.isqrt_unit import IsqrtUnit
from hdl.forward.reciprocal_unit import ReciprocalUnit

from forward_cases import stream_through


def test_isqrt_init():
    dut = IsqrtUnit(value_bits=45)
    assert (dut.value_bits, dut.root_bits, dut.latency) == (45, 23, 23)
    with pytest.raises(ValueError, match="value_bits"):
        IsqrtUnit(value_bits=63)


@pytest.mark.parametrize("value_bits", [10, pytest.param(16, marks=pytest.mark.slow)])
def test_isqrt_exhaustive(value_bits):
    v = np.arange(1 << value_bits)
    got = stream_through(IsqrtUnit(value_bits=value_bits), {"i": v}, "o", v.size, gap=0)
    assert got == isqrt(v).tolist()


@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), value_bits=st.sampled_from([45, 62, 33]))
def test_isqrt_wide(seed, value_bits):
    """Random radicands of every length, squares and squares minus one, the largest value."""
    rng = np.random.default_rng(seed)
    top = 1 << value_bits
    lengths = rng.integers(1, value_bits + 1, 30)
    v = [int(rng.integers(0, 1 << int(n), dtype=np.uint64)) for n in lengths]
    r = [int(rng.integers(1, 1 << ((value_bits - 1) // 2))) for _ in range(10)]
    v += [x * x for x in r] + [x * x - 1 for x in r] + [top - 1, 0, 1]
    got = stream_through(IsqrtUnit(value_bits=value_bits), {"i": v}, "o", len(v), seed=seed % 100)
    assert got == isqrt(v).tolist()


def test_reciprocal_init():
    dut = ReciprocalUnit(value_bits=23, bits=16)
    assert (dut.value_bits, dut.bits, dut.shift_bits, dut.max_latency) == (23, 16, 6, 39)
    with pytest.raises(ValueError, match="bits"):
        ReciprocalUnit(value_bits=23, bits=2)


def golden_reciprocal(v, bits):
    recip, shift = reciprocal(v, bits)
    return [{"recip": int(r), "shift": int(s)} for r, s in zip(recip, shift)]


@pytest.mark.parametrize("value_bits", [9, pytest.param(14, marks=pytest.mark.slow)])
def test_reciprocal_exhaustive(value_bits):
    """Every v from 1 below 2**value_bits, 16-bit reciprocals (the layer norm's and softmax's width)."""
    v = np.arange(1, 1 << value_bits)
    got = stream_through(ReciprocalUnit(value_bits=value_bits, bits=16), {"i": v}, "o", v.size, gap=0)
    assert got == golden_reciprocal(v, 16)


@settings(max_examples=4, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), value_bits=st.sampled_from([23, 24, 40]), bits=st.integers(3, 20))
def test_reciprocal_wide(seed, value_bits, bits):
    """Random v of every length, powers of two and their neighbours (R = 2**(bits-1) exactly at a power of two)."""
    rng = np.random.default_rng(seed)
    v = [int(rng.integers(1, 1 << int(n), dtype=np.uint64)) for n in rng.integers(1, value_bits + 1, 25)]
    v += [1 << k for k in range(0, value_bits, 5)] + [(1 << k) + 1 for k in range(1, value_bits, 7)]
    v += [(1 << value_bits) - 1]
    got = stream_through(ReciprocalUnit(value_bits=value_bits, bits=bits), {"i": v}, "o", len(v), seed=seed % 100)
    assert got == golden_reciprocal(v, bits)
