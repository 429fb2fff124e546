# amaranth: UnusedElaboratable=no

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.int_ops import requantize
from hdl.forward.requantizer import Requantizer

from forward_cases import stream_through


def run(dut, acc, mult, shift, seed=0):
    items = [{"acc": a, "mult": m, "shift": s} for a, m, s in zip(acc, mult, shift)]
    return stream_through(dut, {"i": items}, "o", len(items), seed=seed)


def golden(acc, mult, shift, out_bits):
    return [int(requantize(a, m, s, out_bits)) for a, m, s in zip(acc, mult, shift)]


def test_init():
    dut = Requantizer(acc_bits=24, mult_bits=16, shift_bits=6, out_bits=8)
    assert (dut.acc_bits, dut.mult_bits, dut.shift_bits, dut.out_bits, dut.product_bits, dut.latency) == \
        (24, 16, 6, 8, 40, 2)


@pytest.mark.parametrize("name, value", [("acc_bits", 1), ("mult_bits", 0), ("shift_bits", 7), ("out_bits", True),
                                         ("out_bits", "8")])
def test_wrong(name, value):
    kwargs = {"acc_bits": 24, "mult_bits": 16, "shift_bits": 6, "out_bits": 8, name: value}
    with pytest.raises((TypeError, ValueError), match=name):
        Requantizer(**kwargs)


def test_corners():
    """Extreme accumulators and multipliers, every shift 0..62, halves exactly (ties round up), saturation."""
    acc_bits, mult_bits, out_bits = 24, 16, 8
    lo, hi, mmax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1, (1 << mult_bits) - 1
    acc, mult, shift = [], [], []
    for s in range(63):                        # golden.int_ops.round_shift takes shifts 0..62
        for a, m in [(lo, mmax), (hi, mmax), (lo, 1), (hi, 1), (0, mmax), (-1, 1), (1, 1), (-3, 1), (3, 1)]:
            acc.append(a), mult.append(m), shift.append(s)
    for s in range(1, 16):                     # x * m exactly k + 1/2 output steps, both signs (fits 24 bits)
        for k in (-130, -129, -128, -2, -1, 0, 1, 126, 127):
            acc.append(((2 * k + 1) << (s - 1))), mult.append(1), shift.append(s)
    got = run(Requantizer(acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=6, out_bits=out_bits), acc, mult, shift)
    assert got == golden(acc, mult, shift, out_bits)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), acc_bits=st.integers(2, 30), mult_bits=st.integers(1, 18),
       out_bits=st.integers(2, 20))
def test_random(seed, acc_bits, mult_bits, out_bits):
    rng = np.random.default_rng(seed)
    n = 40
    acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), n)
    mult = rng.integers(0, 1 << mult_bits, n)
    shift = rng.integers(0, acc_bits + mult_bits + 2, n).clip(0, 62)
    dut = Requantizer(acc_bits=acc_bits, mult_bits=mult_bits, shift_bits=6, out_bits=out_bits)
    assert run(dut, acc, mult, shift, seed=seed % 1000) == golden(acc, mult, shift, out_bits)
