"""What every board top shares: the engine behind a UART host link, clocked by the board's PLL."""

from amaranth import ClockDomain, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from .host_link import HostLink
from .protocol import MAX_PAYLOAD, Identity, layout_digest, value_bytes
from .uart import UART

__all__ = ["HostedEngineTop", "UARTBoardTop", "connect_uart", "max_tokens"]


def max_tokens(layout, rows, act_bits, acc_bits):
    """Tokens per RUN: the array's rows, fewer if a RUN's request or response would exceed a frame."""
    longest = max(max(layer.k * value_bytes(act_bits), layer.n * value_bytes(acc_bits)) for layer in layout.layers)
    return min(rows, 255, MAX_PAYLOAD // longest)


def connect_uart(m, platform, *, on_board, uart, link, pll, led, rx, tx):
    """Wire a board top's UART between its pins and its host link.

    On the board (`on_board`) the ``sync`` domain is the PLL's, the UART is on the
    platform's ``uart`` pins and LED `led` shows the PLL's lock; anywhere else the
    UART is on the top's ports `rx` and `tx` and the clock is the plain ``sync``
    domain (simulation). The link gets the UART's lost bytes as ``line_error``."""
    if on_board:
        m.domains.sync = ClockDomain("sync")          # clocked and reset by the PLL
        pins = platform.request("uart", 0, dir="-")
        m.submodules.rx_pin = rx_pin = io.Buffer("i", pins.rx)
        m.submodules.tx_pin = tx_pin = io.Buffer("o", pins.tx)
        m.submodules.led_pin = led_pin = io.Buffer("o", platform.request(led, 0, dir="-"))
        m.d.comb += [uart.rx.eq(rx_pin.i), tx_pin.o.eq(uart.tx), led_pin.o.eq(pll.locked)]
    else:
        m.d.comb += [uart.rx.eq(rx), tx.eq(uart.tx)]
    m.d.comb += link.line_error.eq(uart.overrun | uart.frame_error)
    wiring.connect(m, uart.o_stream, link.rx)
    wiring.connect(m, link.tx, uart.i_stream)


class UARTBoardTop:
    """What a board top behind a UART link answers (`HostedEngineTop`, `boards.forward_top.ForwardTop`): its
    ``_identity``, and its ``_pll``'s clock and ``_uart``'s rate."""

    @property
    def identity(self):
        return self._identity

    @property
    def divisor(self):
        return self._uart.divisor

    @property
    def frequency(self):
        """The clock the PLL makes on the board, in Hz."""
        return self._pll.frequency

    @property
    def baud(self):
        return self._pll.frequency / self._uart.divisor


class HostedEngineTop(UARTBoardTop, wiring.Component):
    """The engine, its writable code banks, a UART and the host link that serves IDENTIFY, LOAD, LAYER and
    RUN (`boards.protocol`), clocked by a board PLL.

    A board subclasses it: it makes its PLL and the UART divisor, checks its code stores, and says by
    `on_board` which platform is its own and by `LED` which LED shows the PLL's lock. On that platform
    the clock is the PLL and the UART is the board's pins; anywhere else the same top simulates, with
    `rx` and `tx` as its ports and the clock the plain ``sync`` domain.

    Parameters
    ----------
    engine : hdl.engine.Engine
    code_stores : list
        The engine's writable code banks in column order, all of one depth and word width.
    pll : Elaboratable
        The board's PLL: drives ``sync``, has ``frequency`` (Hz) and a ``locked`` output.
    divisor : int
        UART clock cycles per bit.
    timeout_cycles : int
        Cycles without a byte inside a request before it is answered TIMEOUT.

    Members
    -------
    rx : In(1)
        UART input (simulation; on the board it is the pin).
    tx : Out(1)
        UART output.
    """

    #: The platform resource of the LED that lights once the PLL has locked.
    LED = None

    def __init__(self, *, engine, code_stores, pll, divisor, timeout_cycles):
        self._pll = pll
        self._engine = engine
        self._stores = list(code_stores)
        self._uart = UART(divisor=divisor)
        layout = engine.layout
        if len({(store.depth, store.word_width, store.columns_per_word) for store in self._stores}) != 1:
            raise ValueError("The code stores differ in depth or word width; the host link writes them alike")
        tokens = max_tokens(layout, engine.rows, engine.act_bits, engine.acc_bits)
        if tokens < 1:
            raise ValueError("A layer of this layout does not fit one RUN frame")
        self._identity = Identity(
            rows=engine.rows, columns=engine.columns, bits=engine.bits or 0, act_bits=engine.act_bits,
            acc_bits=engine.acc_bits, columns_per_word=self._stores[0].columns_per_word,
            banks=len(self._stores), bank_words=self._stores[0].depth, layers=len(layout.layers),
            max_tokens=tokens, clock_hz=round(self._pll.frequency), divisor=divisor,
            digest=layout_digest(layout))
        self._link = HostLink(
            identity=self._identity, layers=[(layer.k, layer.n) for layer in layout.layers],
            act_bits=engine.act_bits, acc_bits=engine.acc_bits, max_tokens=tokens,
            banks=len(self._stores), bank_words=self._stores[0].depth,
            word_width=self._stores[0].word_width, timeout=timeout_cycles)
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    def on_board(self, platform):
        """Whether `platform` is this board's (then the PLL and the pins are used)."""
        raise NotImplementedError

    @property
    def identity_rom(self):
        """The memory the link answers IDENTIFY from (`boards.identity_rom.IdentityRom`), which a bitstream patch
        rewrites (`hdl.patch_build`)."""
        return self._link.identity_rom

    @property
    def engine(self):
        return self._engine

    @property
    def code_stores(self):
        return list(self._stores)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pll = pll = self._pll
        m.submodules.uart = uart = self._uart
        m.submodules.link = link = self._link
        m.submodules.engine = engine = self._engine

        connect_uart(m, platform, on_board=self.on_board(platform), uart=uart, link=link, pll=pll, led=self.LED,
                     rx=self.rx, tx=self.tx)
        wiring.connect(m, link.activations, engine.activations)
        wiring.connect(m, engine.results, link.results)
        m.d.comb += engine.layer.eq(link.layer)

        write = link.code_write
        for bank, store in enumerate(self._stores):
            m.d.comb += [store.write.addr.eq(write.addr), store.write.data.eq(write.data),
                         store.write.en.eq(write.en & (write.bank == bank))]
        return m
