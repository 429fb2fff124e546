"""A stand-in for the board's SPI flash reader in core-level simulation: `ForwardCore.constant_image` as a stream.

`ConstantImageSource` obeys the reader's side of the flash constant stream
(FORWARD_INTERFACE.md section 5): after a seek is taken the next byte it
offers is the image's byte at that address, then the following ones; no byte
read before the seek is offered after it. It takes a seek at any time, waits
`latency` cycles before the first byte (a QSPI read command, address and dummy
cycles), then offers at most `rate` bytes a cycle (0.25: quad SPI at half the
system clock; 0.5 at the full clock), and on a seeded share `stall` of cycles
offers nothing new (a reader's refills, or a flash that is slow to answer).
Past the image's end it reads ``0xFF``, erased flash.

`FlashCore` is a `ForwardCore` with ``constants="flash"`` and its source
inside, with the core's other ports: what `sim.forward_core` builds in
Verilator and the core tests simulate.
"""

from fractions import Fraction

from amaranth import Module, Mux, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ConstantImageSource", "FlashCore", "stream_rate"]


def stream_rate(value):
    """`value` (bytes per cycle, a number or a string such as ``"0.25"`` or ``"1/3"``) as a Fraction in (0, 1]
    of denominator at most 64; ValueError otherwise."""
    try:
        rate = Fraction(value).limit_denominator(64)
    except (TypeError, ValueError, ZeroDivisionError):
        raise ValueError(f"a stream rate is bytes per cycle, e.g. 0.25, not {value!r}") from None
    if not 0 < rate <= 1:
        raise ValueError(f"a stream rate is from 1/64 to 1 byte per cycle, not {value}")
    return rate


class ConstantImageSource(wiring.Component):
    """An image in a memory, read from the last seek's address on at `rate` bytes a cycle, with stalls.

    Parameters
    ----------
    image : bytes
        What the flash holds from address 0 (`ForwardCore.constant_image`).
    rate : number or str
        Bytes a cycle at most (`stream_rate`); the source holds one byte, so a consumer that stops stops it.
    latency : int
        Cycles from a seek taken to the first byte it may offer.
    stall : float
        Share (0 to 1, in 1/256 steps) of cycles that offer nothing, from a 16-bit LFSR seeded with `seed`.
    seed : int
        The LFSR's seed (any int; 0 is taken as 1).

    Members
    -------
    seek : ``In(stream.Signature(24))``
        Always ready.
    data : ``Out(stream.Signature(8))``
    """

    def __init__(self, *, image, rate=1, latency=0, stall=0.0, seed=1):
        self._image = bytes(image)
        if not self._image:
            raise ValueError("the image is empty")
        self._rate = stream_rate(rate)
        if not isinstance(latency, int) or latency < 0:
            raise ValueError(f"latency must be a whole number of cycles, not {latency!r}")
        if not 0 <= stall < 1:
            raise ValueError(f"stall must be a share from 0 to below 1, not {stall!r}")
        self._latency, self._stall, self._seed = latency, round(stall * 256), (seed & 0xFFFF) or 1
        super().__init__({"seek": In(stream.Signature(24)), "data": Out(stream.Signature(8))})

    @property
    def rate(self):
        return self._rate

    @property
    def latency(self):
        return self._latency

    def elaborate(self, platform):
        m = Module()
        m.submodules.image = image = memory.Memory(shape=8, depth=len(self._image), init=list(self._image))
        read = image.read_port(domain="comb")
        address = Signal(24)
        m.d.comb += read.addr.eq(address)
        # The rate: `credit` gains the numerator each cycle up to the denominator; a byte costs the denominator.
        num, den = self._rate.numerator, self._rate.denominator
        credit = Signal(range(2 * den + 1))
        wait = Signal(range(self._latency + 1))
        lfsr = Signal(16, init=self._seed)
        m.d.sync += lfsr.eq(Mux(lfsr[0], (lfsr >> 1) ^ 0xB400, lfsr >> 1))
        stalled = lfsr[:8] < self._stall
        m.d.comb += self.seek.ready.eq(1)
        free = ~self.data.valid | self.data.ready
        with m.If(self.seek.valid):
            m.d.sync += [address.eq(self.seek.payload), self.data.valid.eq(0), wait.eq(self._latency),
                         credit.eq(0)]
        with m.Elif(wait != 0):
            m.d.sync += wait.eq(wait - 1)
        with m.Else():
            gained = Mux(credit >= den, credit, credit + num)
            m.d.sync += credit.eq(gained)
            with m.If(self.data.ready):
                m.d.sync += self.data.valid.eq(0)
            with m.If(free & (gained >= den) & ~stalled):
                m.d.sync += [self.data.valid.eq(1), address.eq(address + 1), credit.eq(gained - den),
                             self.data.payload.eq(Mux(address < len(self._image), read.data, 0xFF))]
        return m


class FlashCore(wiring.Component):
    """A `ForwardCore` (``constants="flash"``) reading its `constant_image` from a `ConstantImageSource`.

    Its ports are the core's but ``constants_seek`` and ``constants`` (see
    `ForwardCore`); `core` and `source` are the parts.

    Parameters
    ----------
    core : hdl.forward.forward_core.ForwardCore
        With ``constants="flash"``.
    rate, latency, stall, seed
        The source's (`ConstantImageSource`).
    """

    def __init__(self, core, *, rate=1, latency=0, stall=0.0, seed=1):
        if core.constant_source != "flash":
            raise ValueError("FlashCore holds a core with constants='flash'")
        self._core = core
        self._source = ConstantImageSource(image=core.constant_image(), rate=rate, latency=latency, stall=stall,
                                           seed=seed)
        members = {name: member for name, member in core.signature.members.items()
                   if name not in ("constants_seek", "constants")}
        super().__init__(wiring.Signature(members))

    @property
    def core(self):
        return self._core

    @property
    def source(self):
        return self._source

    @property
    def vocab_size(self):
        return self._core.vocab_size

    def elaborate(self, platform):
        m = Module()
        m.submodules.core = core = self._core
        m.submodules.source = source = self._source
        wiring.connect(m, core.constants_seek, source.seek)
        wiring.connect(m, source.data, core.constants)
        for name, member in self.signature.members.items():
            outer, inner = getattr(self, name), getattr(core, name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(outer), inner)
            elif member.flow == Out:
                m.d.comb += outer.eq(inner)
            else:
                m.d.comb += inner.eq(outer)
        return m
