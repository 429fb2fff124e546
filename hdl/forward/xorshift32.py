"""The sampler's random number generator: Marsaglia's xorshift32 (shifts 13, 17, 5)."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["Xorshift32"]


def xorshift32_next(state):
    """The Amaranth expression of one xorshift32 step of a 32-bit value (pure wiring and XORs)."""
    state = state ^ (state << 13)[:32]
    state = state ^ (state >> 17)
    return state ^ (state << 5)[:32]


class Xorshift32(wiring.Component):
    """``golden.int_ops.xorshift32``: a state loaded from a seed, stepped once per value taken.

    A payload on ``seed`` (the state ``golden.int_ops.seed_state(seed)``,
    nonzero) loads the generator; from then on ``o`` is valid and carries the
    next state, which becomes the state when it is taken: the values taken are
    golden's states after one, two, ... steps. The step is 32 bits of XOR
    wiring (no adder), one per cycle.

    Members
    -------
    seed : ``In(stream.Signature(32))``
    o : ``Out(stream.Signature(32))``
    """

    def __init__(self):
        super().__init__({"seed": In(stream.Signature(32)), "o": Out(stream.Signature(32))})

    @property
    def latency(self):
        """Cycles from a seed load to the first value (1)."""
        return 1

    def elaborate(self, platform):
        m = Module()
        state = Signal(32)
        loaded = Signal()
        m.d.comb += [self.seed.ready.eq(1), self.o.valid.eq(loaded), self.o.payload.eq(xorshift32_next(state))]
        with m.If(self.seed.valid):
            m.d.sync += [state.eq(self.seed.payload), loaded.eq(1)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += state.eq(self.o.payload)
        return m
