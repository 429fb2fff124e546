"""The requantiser on a serial multiplier: ``saturate(round_shift(acc * mult, shift), out_bits)``, no DSP."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring

from .arith import check_int, check_range, saturate
from .requantizer import requantizer_ports

__all__ = ["SerialRequantizer"]


class SerialRequantizer(wiring.Component):
    """``golden.int_ops.requantize`` with ``acc * mult`` formed one bit of ``mult`` per cycle, no multiplier.

    The ports are `Requantizer`'s. One adder of about ``acc_bits`` bits does
    everything, the rounding and the shift included: each step adds ``acc'``
    (``acc`` moved up by `raised` bits) or not, by the next bit of ``mult``
    (least significant first), and halves, ``y = floor((y + m_k acc') /
    2)``; the last of ``shift + raised`` steps adds 1 instead (the rounding
    half: ``floor((floor(x / 2**(s-1)) + 1) / 2)`` is golden's round half
    up). Exact because floors compose, ``floor((floor(u / 2) + v) / 2) =
    floor((u + 2 v) / 4)``; ``raised = max(0, mult_bits + 1 - low)`` for
    shifts from ``low`` keeps every bit of ``mult`` before the rounding step.
    Then the saturation. No barrel shifter and no rounding adder: a longer
    shift takes more cycles.

    A value takes ``shift + raised + 1`` cycles to its result; the next is
    accepted in the cycle the result is registered, so at most one value
    every `interval` cycles. Use it where values come at most that often (the
    head: one per token's dot product).

    With `held`, the unit keeps no copy of ``acc``: the producer holds
    ``i.valid`` and ``i.payload.acc`` from the cycle it offers a value until
    the value is taken, which is the cycle its result is registered (``mult``
    and ``shift`` are read in the first cycle only); the next value starts a
    cycle later.

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
    held : bool
        ``i.payload.acc`` is held by the producer until taken (see above): no ``acc`` register here.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"acc", "mult", "shift"})))``
    o : ``Out(stream.Signature(signed(out_bits)))``
    """

    def __init__(self, *, acc_bits, mult_bits=16, shift_range=(0, 62), out_bits=8, held=False):
        if not isinstance(held, bool):
            raise TypeError(f"held must be True or False, not {held!r}")
        self._held = held
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
    def held(self):
        """Whether the producer holds ``acc`` until the value is taken (the unit keeps no copy)."""
        return self._held

    @property
    def raised(self):
        """Bits ``acc`` moves up before the steps: ``max(0, mult_bits + 1 - low)`` (0 when the least shift
        exceeds ``mult_bits``)."""
        return max(0, self._mult_bits + 1 - self._shift_range[0])

    @property
    def interval(self):
        """Cycles from an accepted value to its result at the largest shift, and between accepted values at
        full rate: ``high + raised + 1`` (one more with `held`)."""
        return self._shift_range[1] + self.raised + 1 + self._held

    def elaborate(self, platform):
        m = Module()
        raised = self.raised
        acc = self.i.payload.acc if self._held else Signal(signed(self._acc_bits))
        mult = Signal(self._mult_bits)
        y = Signal(signed(self._acc_bits + raised + 2))
        steps = Signal(range(self.interval))            # steps still to make
        busy = Signal()

        advance = ~self.o.valid | self.o.ready
        emit = busy & (steps == 0) & advance
        m.d.comb += self.i.ready.eq(emit if self._held else ~busy | emit)
        with m.If(emit):
            m.d.sync += [self.o.payload.eq(saturate(y, self._out_bits)), self.o.valid.eq(1), busy.eq(0)]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.If(busy & (steps != 0)):
            addend = Mux(mult[0], acc << raised, steps == 1)    # the last step's 1 is the rounding half
            m.d.sync += [y.eq((y + addend) >> 1), mult.eq(mult >> 1), steps.eq(steps - 1)]
        p = self.i.payload
        with m.If(self.i.valid & (~busy if self._held else self.i.ready)):
            m.d.sync += [mult.eq(p.mult), y.eq(0), steps.eq(p.shift + raised), busy.eq(1)]
            if not self._held:
                m.d.sync += acc.eq(p.acc)
        return m
