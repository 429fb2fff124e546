"""The normalised reciprocal of a positive integer, by one-bit normalisation steps and a restoring divide."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int

__all__ = ["ReciprocalUnit"]


class ReciprocalUnit(wiring.Component):
    """``golden.int_ops.reciprocal``: ``R = floor(2**sh / v)`` with ``sh = bit_length(v) + bits - 2``.

    With ``L = bit_length(v)`` and ``W = value_bits``, ``2**sh / v`` equals
    ``2**(W-1) * 2**(bits-1) / (v << (W - L))``: the unit first shifts ``v``
    left one bit per cycle until its top bit is set (counting ``L`` down from
    ``W``; no barrel shifter), then divides ``2**(W-1) * 2**(bits-1)`` by it,
    one quotient bit per cycle for `bits` cycles (a ``W + 1``-bit subtractor).
    ``R`` lies in ``[2**(bits-2), 2**(bits-1)]``. One per row (layer norm,
    softmax), so its ``W - L + bits`` cycles are off the per-element path.
    ``v = 0`` is outside golden's domain; the unit then returns ``R = 0``.
    The result stays on ``o.payload`` after it is taken, until the next
    ``v`` is accepted (a caller may read it there rather than copy it).

    Parameters
    ----------
    value_bits : int
        Width of the unsigned ``v``, 1 to 62.
    bits : int
        Width of ``R`` (unsigned), 3 to 32 (``IntFormats.ln_inv_bits``, ``recip_bits``).

    Members
    -------
    i : ``In(stream.Signature(value_bits))``
    o : ``Out(stream.Signature(StructLayout({"recip": bits, "shift": shift_bits})))``
    """

    def __init__(self, *, value_bits, bits=16):
        self._value_bits = check_int("value_bits", value_bits, 1, 62)
        self._bits = check_int("bits", bits, 3, 32)
        layout = data.StructLayout({"recip": self._bits, "shift": self.shift_bits})
        super().__init__({"i": In(stream.Signature(value_bits)), "o": Out(stream.Signature(layout))})

    @property
    def value_bits(self):
        return self._value_bits

    @property
    def bits(self):
        return self._bits

    @property
    def shift_bits(self):
        """Width of ``sh`` (at most ``value_bits + bits - 2``)."""
        return (self._value_bits + self._bits - 2).bit_length()

    @property
    def max_latency(self):
        """Cycles from an accepted ``v`` to its result at most (``v = 1``): ``value_bits - 1 + bits + 1``."""
        return self._value_bits + self._bits

    def elaborate(self, platform):
        m = Module()
        w, b = self._value_bits, self._bits
        divisor = Signal(w)
        length = Signal(range(w + 1))
        remainder = Signal(w + 1)
        # The quotient's bits enter at the bottom behind a marker 1 loaded at bit 0: the step that moves the
        # marker to bit b is the last (no step counter), and every bit below it has been written (no clear).
        quotient = Signal(b + 1)

        m.d.comb += [self.o.payload.recip.eq(quotient[:b]), self.o.payload.shift.eq(length + (b - 2))]
        subtract = remainder >= divisor
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [divisor.eq(self.i.payload), length.eq(w), remainder.eq(1 << (w - 1)),
                                 quotient.eq(1)]
                    m.next = "NORMALISE"
            with m.State("NORMALISE"):
                with m.If(divisor[-1] | (length == 0)):
                    m.next = "DIVIDE"
                with m.Else():
                    m.d.sync += [divisor.eq(divisor << 1), length.eq(length - 1)]
            with m.State("DIVIDE"):
                m.d.sync += [quotient.eq(Cat(subtract & (length != 0), quotient)),
                             remainder.eq(Mux(subtract, remainder - divisor, remainder) << 1)]
                with m.If(quotient[b - 1]):
                    m.next = "DONE"
            with m.State("DONE"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "IDLE"
        return m
