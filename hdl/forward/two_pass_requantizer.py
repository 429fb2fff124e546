"""The requantiser on one 16 x 16 multiplier used twice: ``saturate(round_shift(acc * mult, shift), out_bits)``."""

from amaranth import Module, Mux, Signal, signed

from .arith import check_int, round_shift_within, saturate
from .serial_requantizer import SerialRequantizer

__all__ = ["TwoPassRequantizer", "SHIFTERS"]

#: How `TwoPassRequantizer` makes the rest of the shift: ``"barrel"`` (a barrel shifter over the shift range,
#: a value every other cycle) or ``"serial"`` (one place a cycle on the result's own register: no barrel
#: shifter, a value every ``max(2, high - low + 1)`` cycles).
SHIFTERS = ("barrel", "serial")

#: Bits of ``acc`` in the first pass's operand: the low part of ``acc``, zero-extended to a signed 16-bit operand.
LOW_BITS = 15


class TwoPassRequantizer(SerialRequantizer):
    """``golden.int_ops.requantize`` with ``acc * mult`` formed in two passes through one 16 x 16 multiplier.

    The ports, parameters and properties are `SerialRequantizer`'s (its
    shift range), only its datapath differs. ``acc = hi * 2**15 + lo`` with ``lo`` its
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

    With ``shifter="serial"`` there is no barrel shifter: the sum ``y`` is
    loaded into a register already moved down by ``low - dropped - 1``
    places (wiring), which then moves down one place a cycle for the
    ``shift - low`` places left, and the result is rounded and saturated from
    it. A value then holds that register for ``shift - low + 1`` cycles, so
    values are taken every `interval` cycles at the largest shift (the two
    passes of the next overlap it). It needs ``low >= 1``.

    Parameters and members are `SerialRequantizer`'s, with ``acc_bits`` 2 to 31
    and ``mult_bits`` 1 to 16 (the multiplier's 16 x 16), and ``shifter``
    (`SHIFTERS`); hold a value on ``i`` until ready: it is high only in the
    value's second cycle.
    """

    def __init__(self, *, acc_bits, mult_bits=16, shift_range=(0, 62), out_bits=8, shifter="barrel"):
        check_int("acc_bits", acc_bits, 2, 31)
        check_int("mult_bits", mult_bits, 1, 16)
        super().__init__(acc_bits=acc_bits, mult_bits=mult_bits, shift_range=shift_range, out_bits=out_bits)
        if shifter not in SHIFTERS:
            raise ValueError(f"shifter must be one of {', '.join(SHIFTERS)}, not {shifter!r}")
        if shifter == "serial" and self._shift_range[0] < 1:
            raise ValueError(f"a serial shifter needs shifts from 1 up, not from {self._shift_range[0]}")
        self._shifter = shifter

    @property
    def shifter(self):
        """``"barrel"`` or ``"serial"`` (`SHIFTERS`)."""
        return self._shifter

    @property
    def dropped(self):
        """Bits of the low product dropped before the two are added: ``min(15, low - 1)`` (0 for ``low == 0``)."""
        return max(0, min(LOW_BITS, self._shift_range[0] - 1))

    @property
    def interval(self):
        """Cycles between accepted values at full rate and the largest shift: 2 (barrel), or
        ``max(2, high - low + 1)`` (serial)."""
        low, high = self._shift_range
        return 2 if self._shifter == "barrel" else max(2, high - low + 1)

    @property
    def latency(self):
        """Cycles from a value being taken to its result being valid, at the largest shift: 3 (barrel), or
        ``3 + high - low`` (serial: ``3 + shift - low`` for a shift)."""
        low, high = self._shift_range
        return 3 if self._shifter == "barrel" else 3 + high - low

    def elaborate(self, platform):
        if self._shifter == "serial":
            return self._elaborate_serial()
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

    def _elaborate_serial(self):
        m = Module()
        low, high = self._shift_range
        dropped = self.dropped
        acc = Signal(signed(max(self._acc_bits, LOW_BITS + 1)))
        m.d.comb += acc.eq(self.i.payload.acc)
        # The shift register z: loaded from y (moved down by `pre` places), then one place a cycle.
        pre = low - dropped - 1                      # >= 0: low >= 1 and dropped <= low - 1
        y_bits = max(2, self._acc_bits + self._mult_bits - dropped)
        z = Signal(signed(max(2, y_bits - pre)))
        steps = Signal(range(high - low + 1))        # places z has still to move
        z_valid = Signal()
        out_free = ~self.o.valid | self.o.ready
        emit = z_valid & (steps == 0) & out_free
        free = ~z_valid | emit                       # z takes the next y this cycle
        pair = Signal()                              # product and kept hold a value's two passes
        advance = ~pair | free
        second = Signal()
        m.d.comb += self.i.ready.eq(advance & second)

        operand = Signal(signed(LOW_BITS + 1))
        m.d.comb += operand.eq(Mux(second, acc >> LOW_BITS, acc[:LOW_BITS]))
        product = Signal(signed(LOW_BITS + 1 + self._mult_bits))
        kept = Signal(LOW_BITS + self._mult_bits - dropped)
        shift1 = Signal.like(self.i.payload.shift)
        y = Signal(signed(y_bits))
        m.d.comb += y.eq((product << (LOW_BITS - dropped)) + kept)
        with m.If(advance):
            m.d.sync += [product.eq(operand * self.i.payload.mult), kept.eq(product[dropped:]),
                         pair.eq(self.i.valid & second), shift1.eq(self.i.payload.shift)]
            with m.If(self.i.valid):
                m.d.sync += second.eq(~second)
        with m.If(emit):
            m.d.sync += [self.o.payload.eq(saturate((z + 1) >> 1, self._out_bits)), self.o.valid.eq(1),
                         z_valid.eq(0)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(pair & free):
            m.d.sync += [z.eq(y >> pre), steps.eq(shift1 - low), z_valid.eq(1)]
        with m.Elif(z_valid & (steps != 0)):
            m.d.sync += [z.eq(z >> 1), steps.eq(steps - 1)]
        return m
