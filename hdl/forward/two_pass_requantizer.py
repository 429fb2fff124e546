"""The requantiser on one 16 x 16 multiplier used twice: ``saturate(round_shift(acc * mult, shift), out_bits)``."""

from amaranth import Cat, Const, Module, Mux, Signal, signed

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
    so the unit accepts a value every two cycles; its result is valid four
    cycles after it is taken. The multiplier's operands and its product are
    plain registers (the SB_MAC16's own on the iCE40: a clocked multiply). Every stage stalls while the output is valid and
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
        """Cycles from a value being taken to its result being valid, at the largest shift: 4 (barrel), or
        ``4 + high - low`` (serial: ``4 + shift - low`` for a shift)."""
        low, high = self._shift_range
        return 4 if self._shifter == "barrel" else 4 + high - low

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

        product, kept, pair, shift1 = self._passes(m, acc, second, advance)
        y = Signal(signed(max(2, self._acc_bits + self._mult_bits - dropped)))      # |acc mult| < 2**(A-1+M)
        y_valid, shift2 = Signal(), Signal.like(self.i.payload.shift)
        rest = round_shift_within(y, shift2 - dropped, low - dropped, high - dropped) if low > dropped else \
            round_shift_within(y, shift2, low, high)
        with m.If(advance):
            m.d.sync += [y.eq((product << (LOW_BITS - dropped)) + kept), y_valid.eq(pair), shift2.eq(shift1),
                         self.o.payload.eq(saturate(rest, self._out_bits)), self.o.valid.eq(y_valid)]
        return m

    def _passes(self, m, acc, second, advance):
        """The two passes through the multiplier, all under `advance`: the pass's operand and ``mult`` into
        plain registers, their product into a plain register (no reset, nothing between: Yosys's
        ``ice40_dsp`` makes all three the SB_MAC16's own A / B input and 16 x 16 output registers, so the
        multiply is a clocked path nextpnr times), and the low pass's product, its bottom `dropped` bits
        dropped, into ``kept``. Returns ``(product, kept, pair, shift)``: ``pair`` is high when ``product``
        holds a value's high pass and ``kept`` its low pass, ``shift`` that value's shift."""
        dropped = self.dropped
        # Both operands signed 16 bits (a signed x unsigned product would make ``mult`` a 17-bit operand, which
        # Yosys splits, leaving the registers outside the DSP): ``mult`` as its 16-bit pattern, ``mult - 2**16``
        # when its top bit is set, and then ``operand << 16`` added back by the DSP's own adder (``fix``, its C
        # input). The sum is the exact ``operand * mult``, |.| < 2**31, in the product's 32 bits.
        operand = Signal(signed(LOW_BITS + 1), reset_less=True)
        mult = Signal(signed(16), reset_less=True)
        fix = Signal(16, reset_less=True)
        chosen = Mux(second, acc >> LOW_BITS, acc[:LOW_BITS])
        top = self.i.payload.mult[15] if self._mult_bits == 16 else 0
        # All 32 bits kept: Yosys absorbs the DSP's output register only whole, and the bits past `y` go unread.
        product = Signal(signed(LOW_BITS + 1 + 16), reset_less=True, attrs={"keep": 1})
        raw = Signal(32)                                        # operand * mult (signed), as 32 bits
        m.d.comb += raw.eq(operand * mult)
        kept = Signal(LOW_BITS + self._mult_bits - dropped)     # floor(lo * mult / 2**dropped), lo * mult >= 0
        taken, pair = Signal(), Signal()                        # the operands / the product hold a high pass
        shift0, shift1 = Signal.like(self.i.payload.shift), Signal.like(self.i.payload.shift)
        with m.If(advance):
            m.d.sync += [operand.eq(chosen), mult.eq(self.i.payload.mult), fix.eq(Mux(top, chosen, 0)),
                         product.eq(raw + Cat(Const(0, 16), fix)), kept.eq(product[dropped:]),
                         taken.eq(self.i.valid & second), pair.eq(taken),
                         shift0.eq(self.i.payload.shift), shift1.eq(shift0)]
            with m.If(self.i.valid):
                m.d.sync += second.eq(~second)
        return product, kept, pair, shift1

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
        advance = Signal()
        second = Signal()
        m.d.comb += self.i.ready.eq(advance & second)

        product, kept, pair, shift1 = self._passes(m, acc, second, advance)
        m.d.comb += advance.eq(~pair | free)
        y = Signal(signed(y_bits))
        m.d.comb += y.eq((product << (LOW_BITS - dropped)) + kept)
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
