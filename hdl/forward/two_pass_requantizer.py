"""The requantiser on one 16 x 16 multiplier used twice: ``saturate(round_shift(acc * mult, shift), out_bits)``."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring

from .arith import check_int, check_range, round_shift_within, saturate
from .requantizer import requantizer_ports

__all__ = ["TwoPassRequantizer"]

#: Bits of ``acc`` in the first pass's operand: the low part of ``acc``, zero-extended to a signed 16-bit operand.
LOW_BITS = 15


class TwoPassRequantizer(wiring.Component):
    """``golden.int_ops.requantize`` with ``acc * mult`` formed in two passes through one 16 x 16 multiplier.

    The ports are `Requantizer`'s. ``acc = hi * 2**15 + lo`` with ``lo`` its
    low 15 bits (non-negative) and ``hi = acc >> 15`` (signed): the first
    pass multiplies ``lo``, the second ``hi``, each a signed 16-bit operand
    times the unsigned ``mult`` (one SB_MAC16 on the iCE40, where the
    `Requantizer` of a 21-bit ``acc`` takes two). The low product's bottom
    ``dropped`` bits are dropped (floors compose, so this is exact), the two
    products are added into ``y = floor(acc * mult / 2**dropped)``, and the
    rest of the shift is a barrel shifter over `shift_range` only, then the
    saturation.

    A value is read in two consecutive cycles and taken (ready) in the second,
    so the unit accepts a value every two cycles; its result is valid three
    cycles after it is taken. Every stage stalls while the output is valid and
    not taken. Use it where values come at most every other cycle (the linear
    engine's readout: one channel per column of a tile of at least ``2 C``
    beats).

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator, 2 to 31.
    mult_bits : int
        Width of the unsigned multiplier, 1 to 16.
    shift_range : (int, int)
        The smallest and largest shift the ``shift`` port carries (0 to 62).
    out_bits : int
        Width of the signed, saturated output, 2 to 32.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"acc", "mult", "shift"})))``
        Hold a value for two cycles: ready is high only in the second.
    o : ``Out(stream.Signature(signed(out_bits)))``
    """

    def __init__(self, *, acc_bits, mult_bits=16, shift_range=(0, 62), out_bits=8):
        self._acc_bits = check_int("acc_bits", acc_bits, 2, 31)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 16)
        self._shift_range = check_range("shift_range", shift_range, 0, 62)
        self._out_bits = check_int("out_bits", out_bits, 2, 32)
        super().__init__(requantizer_ports(acc_bits, mult_bits, max(1, self._shift_range[1].bit_length()), out_bits))

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def mult_bits(self):
        return self._mult_bits

    @property
    def shift_range(self):
        return self._shift_range

    @property
    def out_bits(self):
        return self._out_bits

    @property
    def dropped(self):
        """Bits of the low product dropped before the two are added: ``min(15, low - 1)`` (0 for ``low == 0``)."""
        return max(0, min(LOW_BITS, self._shift_range[0] - 1))

    @property
    def interval(self):
        """Cycles between accepted values at full rate (2)."""
        return 2

    @property
    def latency(self):
        """Cycles from a value being taken to its result being valid (3)."""
        return 3

    def elaborate(self, platform):
        m = Module()
        low, high = self._shift_range
        dropped = self.dropped
        acc = Signal(signed(max(self._acc_bits, LOW_BITS + 1)))      # sign-extended: lo is its low 15 bits
        m.d.comb += acc.eq(self.i.payload.acc)
        advance = ~self.o.valid | self.o.ready
        second = Signal()                            # the value's second pass (its high part) is at the input
        m.d.comb += self.i.ready.eq(advance & second)

        operand = Signal(signed(LOW_BITS + 1))
        m.d.comb += operand.eq(Mux(second, acc >> LOW_BITS, acc[:LOW_BITS]))
        product = Signal(signed(LOW_BITS + 1 + self._mult_bits))
        kept = Signal(LOW_BITS + self._mult_bits - dropped)     # floor(lo * mult / 2**dropped), lo * mult >= 0
        pair, shift1 = Signal(), Signal.like(self.i.payload.shift)
        y = Signal(signed(max(2, self._acc_bits + self._mult_bits - dropped)))      # |acc mult| < 2**(A-1+M)
        y_valid, shift2 = Signal(), Signal.like(self.i.payload.shift)
        rest = round_shift_within(y, shift2 - dropped, low - dropped, high - dropped) if low > dropped else \
            round_shift_within(y, shift2, low, high)
        with m.If(advance):
            m.d.sync += [product.eq(operand * self.i.payload.mult), kept.eq(product[dropped:]),
                         pair.eq(self.i.valid & second), shift1.eq(self.i.payload.shift),
                         y.eq((product << (LOW_BITS - dropped)) + kept), y_valid.eq(pair), shift2.eq(shift1),
                         self.o.payload.eq(saturate(rest, self._out_bits)), self.o.valid.eq(y_valid)]
            with m.If(self.i.valid):
                m.d.sync += second.eq(~second)
        return m
