"""The requantiser on a serial multiplier: ``saturate(round_shift(acc * mult, shift), out_bits)``, no DSP."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring

from .arith import check_int, check_range, round_shift_within, saturate
from .requantizer import requantizer_ports

__all__ = ["SerialRequantizer"]


class SerialRequantizer(wiring.Component):
    """``golden.int_ops.requantize`` with ``acc * mult`` formed one bit of ``mult`` per cycle.

    The ports are `Requantizer`'s. The product is built least significant
    bit of ``mult`` first, each step adding ``acc`` (or not) and dropping one
    bit: ``y = floor((y + m_k acc') / 2)``, so after ``mult_bits`` steps
    ``y = floor(acc * mult / 2**dropped)`` exactly (floors compose) in a
    register only ``acc_bits`` wide (``dropped = min(mult_bits, low - 1)``
    for shifts from ``low``; ``acc'`` is ``acc`` moved up by the bits that
    cannot be dropped). The rest of the shift is a barrel shifter over
    `shift_range` only, then the saturation. One adder of about
    ``acc_bits`` bits, no multiplier.

    A value takes ``mult_bits`` cycles; the next is accepted in the cycle the
    result is registered, so a new value every ``mult_bits`` cycles. Use it
    where values come at most that often (the head: one per token's dot
    product).

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator, 2 to 48.
    mult_bits : int
        Width of the unsigned multiplier, 1 to 32.
    shift_range : (int, int)
        The smallest and largest shift the ``shift`` port carries (0 to 62).
    out_bits : int
        Width of the signed, saturated output, 2 to 32.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"acc", "mult", "shift"})))``
    o : ``Out(stream.Signature(signed(out_bits)))``
    """

    def __init__(self, *, acc_bits, mult_bits=16, shift_range=(0, 62), out_bits=8):
        self._acc_bits = check_int("acc_bits", acc_bits, 2, 48)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 32)
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
        """Low product bits dropped while multiplying: ``min(mult_bits, low - 1)`` (0 for ``low == 0``)."""
        return max(0, min(self._mult_bits, self._shift_range[0] - 1))

    @property
    def interval(self):
        """Cycles between accepted values at full rate (``mult_bits``), and from a value to its result."""
        return self._mult_bits

    def elaborate(self, platform):
        m = Module()
        mb, low, high = self._mult_bits, *self._shift_range
        dropped = self.dropped
        raised = mb - dropped                            # acc moves up by the bits that cannot be dropped
        acc = Signal(signed(self._acc_bits))
        mult = Signal(mb)
        shift = Signal.like(self.i.payload.shift)
        y = Signal(signed(self._acc_bits + raised + 1))
        steps = Signal(range(mb))
        busy = Signal()

        def step(y, bit, a):
            return ((y + Mux(bit, a << raised, 0)) >> 1)

        advance = ~self.o.valid | self.o.ready
        emit = busy & (steps == 0) & advance
        result = round_shift_within(y, shift - dropped, low - dropped, high - dropped) if low > dropped else \
            round_shift_within(y, shift, low, high)
        m.d.comb += self.i.ready.eq(~busy | emit)
        with m.If(emit):
            m.d.sync += [self.o.payload.eq(saturate(result, self._out_bits)), self.o.valid.eq(1), busy.eq(0)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(busy & (steps != 0)):
            m.d.sync += [y.eq(step(y, mult[0], acc)), mult.eq(mult >> 1), steps.eq(steps - 1)]
        with m.If(self.i.valid & self.i.ready):
            p = self.i.payload
            m.d.sync += [acc.eq(p.acc), mult.eq(p.mult >> 1), shift.eq(p.shift), steps.eq(mb - 1), busy.eq(1),
                         y.eq(step(0, p.mult[0], p.acc))]
        return m
