# amaranth: UnusedElaboratable=no

import functools

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.int_ops import requantize
from hdl.forward.requantizer import Requantizer
from hdl.forward.serial_requantizer import SerialRequantizer
from hdl.forward.two_pass_requantizer import SHIFTERS, TwoPassRequantizer

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


def corner_cases(acc_bits, mult_bits, shifts):
    """The extremes of `test_corners` at every shift of `shifts`, and exact halves where they fit."""
    lo, hi, mmax = -(1 << (acc_bits - 1)), (1 << (acc_bits - 1)) - 1, (1 << mult_bits) - 1
    acc, mult, shift = [], [], []
    for s in shifts:
        for a, m in [(lo, mmax), (hi, mmax), (lo, 1), (hi, 1), (0, mmax), (-1, 1), (1, 1), (-3, 1), (3, 1),
                     (lo, 0), (hi, mmax >> 1)]:
            acc.append(a), mult.append(m), shift.append(s)
        for k in (-130, -129, -128, -2, -1, 0, 1, 126, 127):
            if s and abs((2 * k + 1) << (s - 1)) < 1 << (acc_bits - 1):
                acc.append(((2 * k + 1) << (s - 1))), mult.append(1), shift.append(s)
    return acc, mult, shift


@pytest.mark.parametrize("held", [False, True])
@pytest.mark.parametrize("shift_range", [(0, 62), (1, 1), (17, 20), (16, 18), (30, 62), (5, 9)])
def test_serial_corners(shift_range, held):
    """The serial requantiser at the extremes, for shift ranges below, at and above mult_bits; with its own copy
    of acc and reading it from the held input (the stream testbench holds a payload until it is taken)."""
    acc, mult, shift = corner_cases(24, 16, range(shift_range[0], shift_range[1] + 1))
    dut = SerialRequantizer(acc_bits=24, mult_bits=16, shift_range=shift_range, out_bits=8, held=held)
    assert run(dut, acc, mult, shift) == golden(acc, mult, shift, 8)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), acc_bits=st.integers(2, 30), mult_bits=st.integers(1, 18),
       out_bits=st.integers(2, 20), low=st.integers(0, 40), span=st.integers(0, 6))
def test_serial_random(seed, acc_bits, mult_bits, out_bits, low, span):
    check_random(SerialRequantizer, seed, acc_bits, mult_bits, out_bits, low, span)
    check_random(functools.partial(SerialRequantizer, held=True), seed, acc_bits, mult_bits, out_bits, low, span)


def check_random(kind, seed, acc_bits, mult_bits, out_bits, low, span):
    """30 random values through a requantiser of a shift range (`kind`) against golden."""
    rng = np.random.default_rng(seed)
    n = 30
    high = min(62, low + span)
    acc = rng.integers(-(1 << (acc_bits - 1)), 1 << (acc_bits - 1), n)
    mult = rng.integers(0, 1 << mult_bits, n)
    shift = rng.integers(low, high + 1, n)
    dut = kind(acc_bits=acc_bits, mult_bits=mult_bits, shift_range=(low, high), out_bits=out_bits)
    assert run(dut, acc, mult, shift, seed=seed % 1000) == golden(acc, mult, shift, out_bits)


def outputs_back_to_back(dut, acc, mult, shift, cycles):
    """``[(cycle, output)]`` of `dut` offered one value all the time, its output always taken."""
    from amaranth.sim import Simulator

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    seen = []

    async def bench(ctx):
        ctx.set(dut.i.valid, 1)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.i.payload.acc, acc)
        ctx.set(dut.i.payload.mult, mult)
        ctx.set(dut.i.payload.shift, shift)
        for cycle in range(cycles):
            if ctx.get(dut.o.valid):
                seen.append((cycle, ctx.get(dut.o.payload)))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    return seen


@pytest.mark.parametrize("held, interval", [(False, 20), (True, 21)])
def test_serial_rate(held, interval):
    """Back to back with the output always taken, one value every `interval` cycles at the largest shift (held:
    the next value starts the cycle after the last is taken)."""
    dut = SerialRequantizer(acc_bits=20, mult_bits=16, shift_range=(16, 18), out_bits=8, held=held)
    assert (dut.raised, dut.interval, dut.held) == (1, interval, held)
    seen = [cycle for cycle, _ in outputs_back_to_back(dut, 12345, 40000, 18, interval * 5 + 2)]
    assert seen[1:5] == [seen[0] + interval * k for k in range(1, 5)]


def test_serial_wrong():
    with pytest.raises(ValueError, match="shift_range must have low <= high"):
        SerialRequantizer(acc_bits=8, shift_range=(4, 3))
    with pytest.raises(ValueError, match="shift_range must be from 0 to 62"):
        SerialRequantizer(acc_bits=8, shift_range=(0, 63))
    with pytest.raises(TypeError, match="held must be True or False, not 1"):
        SerialRequantizer(acc_bits=8, held=1)


@pytest.mark.parametrize("acc_bits, shift_range", [(24, (0, 62)), (21, (16, 26)), (21, (1, 1)), (30, (17, 20)),
                                                    (15, (5, 9)), (16, (30, 62))])
@pytest.mark.parametrize("shifter", SHIFTERS)
def test_two_pass_corners(acc_bits, shift_range, shifter):
    """The two-pass requantiser at the extremes, for accumulators below, at and above its 15-bit low part,
    with either shifter (the serial one from shift 1 up, and over 1..12 instead of all 63 shifts: a value takes
    a cycle a place)."""
    if shifter == "serial" and shift_range[0] == 0:
        shift_range = (1, 12)
    acc, mult, shift = corner_cases(acc_bits, 16, range(shift_range[0], shift_range[1] + 1))
    dut = TwoPassRequantizer(acc_bits=acc_bits, mult_bits=16, shift_range=shift_range, out_bits=16,
                             shifter=shifter)
    assert run(dut, acc, mult, shift) == golden(acc, mult, shift, 16)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), acc_bits=st.integers(2, 31), mult_bits=st.integers(1, 16),
       out_bits=st.integers(2, 20), low=st.integers(0, 40), span=st.integers(0, 12))
def test_two_pass_random(seed, acc_bits, mult_bits, out_bits, low, span):
    check_random(TwoPassRequantizer, seed, acc_bits, mult_bits, out_bits, low, span)


@settings(max_examples=8, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), acc_bits=st.integers(2, 31), mult_bits=st.integers(1, 16),
       out_bits=st.integers(2, 20), low=st.integers(1, 40), span=st.integers(0, 12))
def test_two_pass_serial_random(seed, acc_bits, mult_bits, out_bits, low, span):
    check_random(functools.partial(TwoPassRequantizer, shifter="serial"), seed, acc_bits, mult_bits, out_bits,
                 low, span)


def test_two_pass_rate():
    """Back to back with the output always taken, one value every other cycle."""
    dut = TwoPassRequantizer(acc_bits=21, mult_bits=16, shift_range=(16, 26), out_bits=16)
    assert (dut.dropped, dut.interval, dut.latency) == (15, 2, 3)
    seen = outputs_back_to_back(dut, -12345, 40000, 17, 20)
    assert [c for c, _ in seen[:5]] == [seen[0][0] + 2 * k for k in range(5)]
    assert {v for _, v in seen} == {int(requantize(-12345, 40000, 17, 16))}


def test_two_pass_serial_rate():
    """Back to back with the output always taken: a value every ``shift - low + 1`` cycles (11 at the largest
    shift of 16..26, 2 at the smallest), its result ``3 + shift - low`` cycles after it is taken."""
    dut = TwoPassRequantizer(acc_bits=21, mult_bits=16, shift_range=(16, 26), out_bits=16, shifter="serial")
    assert (dut.dropped, dut.interval, dut.latency) == (15, 11, 13)
    for shift, interval in ((26, 11), (17, 2), (16, 2), (20, 5)):
        seen = outputs_back_to_back(dut, -12345, 40000, shift, 80)
        assert [c for c, _ in seen[:5]] == [seen[0][0] + interval * k for k in range(5)], shift
        assert {v for _, v in seen} == {int(requantize(-12345, 40000, shift, 16))}


def test_two_pass_wrong():
    with pytest.raises(ValueError, match="mult_bits"):
        TwoPassRequantizer(acc_bits=20, mult_bits=17)
    with pytest.raises(ValueError, match="acc_bits"):
        TwoPassRequantizer(acc_bits=32)
    with pytest.raises(ValueError, match="shifter must be one of barrel, serial"):
        TwoPassRequantizer(acc_bits=20, shifter="log")
    with pytest.raises(ValueError, match="a serial shifter needs shifts from 1 up, not from 0"):
        TwoPassRequantizer(acc_bits=20, shift_range=(0, 4), shifter="serial")
