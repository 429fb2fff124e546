"""Integer square root, one result bit per cycle (restoring, bit-serial)."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int

__all__ = ["IsqrtUnit"]


class IsqrtUnit(wiring.Component):
    """``golden.int_ops.isqrt``: ``floor(sqrt(v))`` exactly, by the restoring digit-by-digit method.

    Each cycle brings down the next two bits of ``v`` into the partial
    remainder and tries ``4 * root + 1`` against it: one subtractor of
    ``root_bits + 2`` bits and three registers, no multiplier. A
    ``value_bits``-bit radicand takes ``ceil(value_bits / 2)`` cycles; the
    layer norm's (45 bits for the default model) takes 23.

    Parameters
    ----------
    value_bits : int
        Width of the unsigned radicand, 2 to 62.

    Members
    -------
    i : ``In(stream.Signature(value_bits))``
    o : ``Out(stream.Signature(root_bits))``
    """

    def __init__(self, *, value_bits):
        self._value_bits = check_int("value_bits", value_bits, 2, 62)
        super().__init__({"i": In(stream.Signature(value_bits)), "o": Out(stream.Signature(self.root_bits))})

    @property
    def value_bits(self):
        return self._value_bits

    @property
    def root_bits(self):
        """Width of the root, ``ceil(value_bits / 2)``."""
        return (self._value_bits + 1) // 2

    @property
    def latency(self):
        """Cycles from an accepted radicand to its root being valid (``root_bits``)."""
        return self.root_bits

    def elaborate(self, platform):
        m = Module()
        n = self.root_bits
        radicand = Signal(2 * n)              # shifted up two bits per step
        remainder = Signal(n + 2)
        root = Signal(n)
        steps = Signal(range(n + 1))
        busy = Signal()

        brought = Cat(radicand[-2:], remainder[:n])           # 4 * remainder + next two bits
        trial = Cat(1, 0, root)                               # 4 * root + 1
        fits = brought >= trial
        m.d.comb += [self.i.ready.eq(~busy & ~self.o.valid), self.o.payload.eq(root)]
        with m.If(self.i.valid & self.i.ready):
            m.d.sync += [radicand.eq(self.i.payload), remainder.eq(0), root.eq(0), steps.eq(n), busy.eq(1)]
        with m.If(busy):
            m.d.sync += [radicand.eq(radicand << 2), root.eq(Cat(fits, root)),
                         remainder.eq(Mux(fits, brought - trial, brought)), steps.eq(steps - 1)]
            with m.If(steps == 1):
                m.d.sync += [busy.eq(0), self.o.valid.eq(1)]
        with m.If(self.o.valid & self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        return m
