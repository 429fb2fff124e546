"""xorshift32 one bit a cycle: the sampler's generator, a 32-bit rotating register and a few taps."""

from amaranth import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import at_least

__all__ = ["SerialXorshift32", "STEP_CYCLES"]

#: Cycles of one xorshift32 step: one pass of 32 bits per shift (13 left, 17 right, 5 left).
STEP_CYCLES = 96


def _taps(state, t, shift, left):
    """The bit XORed into bit ``t`` of ``state ^= state << shift`` (`left`) or ``>> shift``, in pass `t` of a
    register rotating right, whose low bits are already the pass's results.

    The register's ``R[j]`` is the old bit ``t + j`` for ``j < 32 - t`` and the new bit ``t + j - 32`` above.
    A right shift reads old bits above ``t`` (untouched): ``R[shift]``. A left shift needs the old bit
    ``t - shift``, which is gone; but ``old[i] = new[i] ^ old[i - shift]`` and so on down, so it is the XOR
    of the new bits ``t - shift``, ``t - 2 shift``, ... (each at ``R[32 - k shift]``). The bounds on ``t`` are
    gates (`arith.at_least`), not carry chains."""
    if not left:
        return state[shift] & ~at_least(t, 32 - shift)
    tap = 0
    for k in range(1, 32 // shift + 1):
        tap = tap ^ (state[32 - k * shift] & at_least(t, k * shift))
    return tap


class SerialXorshift32(wiring.Component):
    """``golden.int_ops.xorshift32``, one step in `STEP_CYCLES` cycles, its values' bits least significant first.

    A payload on ``seed`` (the state ``golden.int_ops.seed_state(seed)``,
    nonzero) loads the generator, which then steps the state (96 cycles: a
    pass of the 32 bits for each of the three shifts, the register rotating
    right one place a cycle) and offers the new state on ``o``, one bit a
    cycle, least significant first: the bits ``o`` carries are golden's states
    after one, two, ... steps, 32 bits each. After a value's 32nd bit is
    taken the next step starts, so a consumer that takes 32 bits now and then
    (the sampler, once a token) never waits but after a seed. Its logic is
    the 32-bit register's load multiplexer, a 7-bit counter and the taps:
    no XOR network of the whole state, no bit selection.

    Members
    -------
    seed : ``In(stream.Signature(32))``
    o : ``Out(stream.Signature(1))``
    """

    def __init__(self):
        super().__init__({"seed": In(stream.Signature(32)), "o": Out(stream.Signature(1))})

    def elaborate(self, platform):
        m = Module()
        state = Signal(32, reset_less=True)
        count = Signal(7)                               # 0..95: stepping (pass, bit); 96..127: offering bit count-96
        loaded = Signal()
        t, phase = count[:5], count[5:]
        stepping = loaded & (phase != 3)
        new = state[0] ^ (
            ((phase == 0) & _taps(state, t, 13, True)) | ((phase == 1) & _taps(state, t, 17, False))
            | ((phase == 2) & _taps(state, t, 5, True)))
        m.d.comb += [self.seed.ready.eq(1), self.o.valid.eq(loaded & (phase == 3)), self.o.payload.eq(state[0])]
        with m.If(self.seed.valid):
            m.d.sync += [state.eq(self.seed.payload), count.eq(0), loaded.eq(1)]
        with m.Elif(stepping):
            m.d.sync += [state.eq(state.rotate_right(1)), state[31].eq(new), count.eq(count + 1)]
        with m.Elif(self.o.valid & self.o.ready):
            m.d.sync += [state.eq(state.rotate_right(1)), count.eq(count + 1)]
        return m
