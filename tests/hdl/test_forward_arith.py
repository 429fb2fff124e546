"""The forward's arithmetic helpers (`hdl.forward.arith`) against golden, exhaustively over small widths."""

import itertools

import numpy as np
import pytest
from amaranth import Signal, signed, unsigned
from amaranth.sim import Simulator

from golden.int_ops import round_shift, saturate as golden_saturate
from hdl.forward.arith import at_least, check_range, round_shift_above, round_shift_within, row_address, saturate, shift_right


def evaluate(inputs, outputs, cases):
    """The values of the comb expressions `outputs` for each tuple of `cases` set on the signals `inputs`."""
    results = []
    probes = [Signal(expr.shape(), name=f"probe{i}") for i, expr in enumerate(outputs)]
    from amaranth import Module

    m = Module()
    m.d.comb += [probe.eq(expr) for probe, expr in zip(probes, outputs)]
    sim = Simulator(m)

    async def bench(ctx):
        for case in cases:
            for signal, value in zip(inputs, case):
                ctx.set(signal, value)
            results.append(tuple(ctx.get(probe) for probe in probes))

    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("width, is_signed", [(4, True), (7, True), (4, False), (7, False)])
def test_saturate_exhaustive(width, is_signed):
    """Every value of a 4- and 7-bit signed or unsigned input, saturated to 2 .. width + 1 bits."""
    x = Signal(signed(width) if is_signed else unsigned(width))
    values = range(-(1 << (width - 1)), 1 << (width - 1)) if is_signed else range(1 << width)
    widths = list(range(2, width + 2))
    got = evaluate([x], [saturate(x, bits) for bits in widths], [(v,) for v in values])
    for bits, column in zip(widths, zip(*got)):
        assert list(column) == golden_saturate(np.array(list(values)), bits).tolist()


@pytest.mark.parametrize("low, high", [(0, 0), (0, 5), (1, 1), (1, 4), (3, 3), (2, 7)])
def test_round_shift_within_exhaustive(low, high):
    """Every 8-bit signed value at every shift of the range, against golden's round half up."""
    x, shift = Signal(signed(8)), Signal(range(high + 1))
    cases = list(itertools.product(range(-128, 128), range(low, high + 1)))
    got = evaluate([x, shift], [round_shift_within(x, shift, low, high)], cases)
    assert [g for g, in got] == [int(round_shift(np.int64(v), s)) for v, s in cases]


@pytest.mark.parametrize("is_signed, width, amount_bits", [(True, 3, 2), (True, 5, 3), (False, 4, 3), (True, 9, 2)])
def test_shift_right_exhaustive(is_signed, width, amount_bits):
    """Every 8-bit value at every shift the amount can take: the low `width` bits of Python's ``>>`` (arithmetic
    for a signed input), including outputs wider than what is left of the input."""
    x, amount = Signal(signed(8) if is_signed else unsigned(8)), Signal(amount_bits)
    values = range(-128, 128) if is_signed else range(256)
    cases = list(itertools.product(values, range(1 << amount_bits)))
    got = evaluate([x, amount], [shift_right(x, amount, width)], cases)
    assert [g for g, in got] == [(v >> a) & ((1 << width) - 1) for v, a in cases]


@pytest.mark.parametrize("low, high, width", [(1, 1, None), (1, 4, None), (3, 6, None), (1, 4, 5), (2, 9, 3)])
def test_round_shift_above_exhaustive(low, high, width):
    """Every 8-bit signed value at every offset of the range, against golden's round half up (with `width`:
    its low bits, as a signed value of that width)."""
    x, offset = Signal(signed(8)), Signal(range(high - low + 1))
    cases = list(itertools.product(range(-128, 128), range(high - low + 1)))
    got = evaluate([x, offset], [round_shift_above(x, low, offset, high, width)], cases)
    want = [int(round_shift(np.int64(v), low + o)) for v, o in cases]
    if width is not None:
        want = [(w + (1 << (width - 1))) % (1 << width) - (1 << (width - 1)) for w in want]
    assert [g for g, in got] == want


@pytest.mark.parametrize("width", [1, 3, 8])
def test_at_least_exhaustive(width):
    """Every value of the width against every constant from below 0 to past its top, as ``>=`` does."""
    x = Signal(width)
    constants = range(-2, (1 << width) + 2)
    got = evaluate([x], [at_least(x, c) for c in constants], [(v,) for v in range(1 << width)])
    assert got == [tuple(int(v >= c) for c in constants) for v in range(1 << width)]
    with pytest.raises(TypeError, match="unsigned"):
        at_least(Signal(signed(4)), 3)


def test_row_address():
    row, offset = Signal(range(10)), Signal(range(16))
    cases = [(r, o) for r in range(10) for o in range(16)]
    got = evaluate([row, offset], [row_address(row, 16, offset), row_address(row, 13, offset % 13)], cases)
    assert got == [(r * 16 + o, r * 13 + o % 13) for r, o in cases]


def test_check_range():
    assert check_range("r", (2, 5), 0, 62) == (2, 5)
    with pytest.raises(TypeError, match="r must be a"):
        check_range("r", 3, 0, 62)
    with pytest.raises(ValueError, match="low <= high"):
        check_range("r", (5, 2), 0, 62)
