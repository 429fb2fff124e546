"""The engine alone on a chip, for the sweep: pseudo-random activations in, results folded to one pin."""

from amaranth import ClockDomain, Module, Mux, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from .engine import Engine

__all__ = ["EngineHarness"]

# x^32 + x^22 + x^2 + x + 1 (maximal length), as a Galois LFSR shifting right.
_TAPS = (1 << 31) | (1 << 21) | (1 << 1) | 1


class EngineHarness(wiring.Component):
    """An `hdl.engine.Engine` with nothing around it but a stimulus and a checksum, so that synthesis
    keeps every PE and the flow measures the engine's own cells and Fmax.

    Activations are a 32-bit LFSR's low bits, offered every cycle, in batches
    of ``engine.rows`` tokens of layer 0 (``last`` on each batch's final value);
    results are always taken and every bit of every result is XOR-folded into
    a parity register that drives `out`. No result can be dropped by
    synthesis without changing `out`, so nothing of the array is pruned. The
    host link and UART of the board tops are absent; the code stores are
    whatever the engine was built with (a board's SPRAM banks, whose writes are
    tied off, or ROMs).

    On a platform, `out` is the ``tx`` pin and the LFSR is seeded from the
    ``rx`` pin of the board's ``uart`` resource, and `clock` (a component such
    as `boards.ice40_pll.ICE40PLL`, with a ``locked`` member, that drives the
    ``sync`` domain on that platform) makes the clock. Off a platform the
    ports are `seed` and `out` and the domain is the plain default one.

    Parameters
    ----------
    engine : Engine
    code_stores : list
        The engine's code stores, whose ``write`` ports (if any) are tied off.
    clock : wiring.Component or None
        The clock maker, elaborated as a submodule (None: the default domain).

    Members
    -------
    seed : In(1)
    out : Out(1)
    """

    def __init__(self, *, engine, code_stores=(), clock=None):
        if not isinstance(engine, Engine):
            raise TypeError(f"Engine must be an hdl.engine.Engine, not {engine!r}")
        self._engine = engine
        self._stores = list(code_stores)
        self._clock = clock
        super().__init__({"seed": In(1), "out": Out(1)})

    @property
    def engine(self):
        return self._engine

    @property
    def frequency(self):
        """The clock maker's frequency in Hz (None without one)."""
        return getattr(self._clock, "frequency", None)

    def elaborate(self, platform):
        m = Module()
        m.submodules.engine = engine = self._engine
        seed, out = Signal(), Signal()
        if self._clock is not None:
            m.submodules.clock = self._clock
        if platform is not None:
            if self._clock is not None:
                m.domains.sync = ClockDomain("sync")
            pins = platform.request("uart", 0, dir="-")
            m.submodules.rx_pin = rx_pin = io.Buffer("i", pins.rx)
            m.submodules.tx_pin = tx_pin = io.Buffer("o", pins.tx)
            m.d.comb += [seed.eq(rx_pin.i), tx_pin.o.eq(out)]
        else:
            m.d.comb += [seed.eq(self.seed), self.out.eq(out)]

        for store in self._stores:
            if "write" in store.signature.members:
                m.d.comb += store.write.en.eq(0)

        layer = engine.layout.layers[0]
        lfsr = Signal(32, init=1)
        m.d.comb += engine.layer.eq(0)
        acts = engine.activations
        count = Signal(range(engine.rows * layer.k))
        m.d.comb += [acts.valid.eq(1), acts.p.data.eq(lfsr[:engine.act_bits]),
                     acts.p.last.eq(count == engine.rows * layer.k - 1)]
        with m.If(acts.ready):
            m.d.sync += [lfsr.eq((lfsr >> 1) ^ Mux(lfsr[0], _TAPS, 0) ^ seed),
                         count.eq((count + 1) if engine.rows * layer.k > 1 else 0)]
            with m.If(acts.p.last):
                m.d.sync += count.eq(0)

        results = engine.results
        m.d.comb += results.ready.eq(1)
        parity = Signal()
        with m.If(results.valid):
            m.d.sync += parity.eq(parity ^ results.p.data.xor() ^ results.p.last)
        m.d.comb += out.eq(parity)
        return m
