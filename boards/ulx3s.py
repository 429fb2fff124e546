"""The ULX3S (ECP5 LFE5U-85F) board top: PLL clock, UART, host link, code banks in block RAM, and the engine."""

from amaranth import ClockDomain, Module
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2
from amaranth.vendor import LatticePlatform

from hdl.code_store import CodeStore

from .ecp5_pll import ECP5PLL
from .host_link import HostLink
from .icebreaker import DEFAULT_BAUD, max_tokens, uart_divisor
from .protocol import Identity, layout_digest
from .uart import UART

__all__ = ["ULX3STop", "BlockRAMCodeBanks", "LFE5U_85F", "code_columns_per_word", "estimate_resources",
           "fit_problems"]

#: What the LFE5U-85F has: LUT4s (nextpnr's TRELLIS_COMB), flip-flops, 18 Kbit block RAMs, 18x18 multipliers.
LFE5U_85F = {"lc": 83640, "ff": 83640, "ebr": 208, "dsp": 156}
#: Widest code word the host link writes.
WORD_BITS = 16
# Shapes (width, depth) of one 18 Kbit DP16KD.
EBR_SHAPES = ((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384))


def code_columns_per_word(layout):
    """Columns whose codes share one 16-bit block RAM word (the host link's word)."""
    return WORD_BITS // layout.code_bits


def _ebr_blocks(width, depth):
    return min(-(-width // w) * -(-depth // d) for w, d in EBR_SHAPES)


def estimate_resources(layout, *, rows, act_bits, acc_bits, pe):
    """What the ULX3S top for `layout` needs: code bytes, EBR blocks, LUT4s, multipliers (estimates).

    A LUT4 of ECP5 does the work of an iCE40 logic cell's LUT4 (and a carry
    chain bit, as half a CCU2C), so the per-PE figure is iCE40's."""
    from .icebreaker import _lc_fixed, _lc_per_pe
    per_word = code_columns_per_word(layout)
    banks = -(-layout.columns // per_word)
    max_slots = max(layer.slots for layer in layout.layers)
    bias_bits = max([2] + [abs(int(b)).bit_length() + 1 for b in layout.bias_images.flat])
    ebr = (banks * _ebr_blocks(per_word * layout.code_bits, layout.code_depth)                   # codes
           + rows * _ebr_blocks(act_bits, 2 << ceil_log2(layout.max_k))                           # activations
           + rows * _ebr_blocks(acc_bits, 1 << ceil_log2(2 * max_slots * layout.columns))        # results
           + _ebr_blocks(min(bias_bits, acc_bits), layout.bias_depth * layout.columns))          # biases
    lc = rows * layout.columns * _lc_per_pe(pe, act_bits, acc_bits, layout.bits) + _lc_fixed(layout.columns)
    return {"code_bytes": layout.code_depth * layout.columns * layout.code_bits // 8, "banks": banks,
            "ebr": ebr, "lc": int(lc)}


def fit_problems(layout, *, rows, act_bits, acc_bits, pe):
    """Why the ULX3S top for `layout` cannot fit the LFE5U-85F, with what to change; empty if it may."""
    need = estimate_resources(layout, rows=rows, act_bits=act_bits, acc_bits=acc_bits, pe=pe)
    problems = []
    if need["ebr"] > LFE5U_85F["ebr"]:
        problems.append(f"codes ({need['code_bytes'] / 1024:.1f} KiB) and activation, result and bias buffers "
                        f"need about {need['ebr']} block RAMs of {LFE5U_85F['ebr']}; use fewer --rows or --cols "
                        f"or a smaller model")
    if need["lc"] > LFE5U_85F["lc"]:
        problems.append(f"{rows * layout.columns} PEs need about {need['lc']} LUT4s of {LFE5U_85F['lc']}; "
                        f"use fewer --rows or --cols")
    return problems


class BlockRAMCodeBanks:
    """The `code_store` factory handed to `hdl.engine.Engine` on the ECP5: one writable
    `hdl.code_store.CodeStore` per column group, initialised with the layout's codes by the
    bitstream (so no LOAD is needed) and writable by the host link all the same. Keeps the
    stores, in column order, for the board top to wire the writes to."""

    def __init__(self, layout):
        self._layout = layout
        self.stores = []

    def __call__(self, first_column, columns_per_word, words, word_width):
        store = CodeStore(layout=self._layout, first_column=first_column, columns_per_word=columns_per_word,
                          writable=True)
        if store.word_width != word_width:
            raise ValueError(f"Code words of {word_width} bits do not match the layout's {store.word_width}")
        self.stores.append(store)
        self.stores.sort(key=lambda s: s.first_column)
        return store


class ULX3STop(wiring.Component):
    """Everything on the ULX3S's LFE5U-85F: the engine behind a UART host link.

    The same top as `boards.icebreaker.ICEBreakerTop` (same host link protocol,
    same engine), with the codes in block RAM (`BlockRAMCodeBanks`: DP16KD
    initialised by the bitstream, writable by LOAD) instead of SPRAM. On the
    ULX3S platform the clock is an EHXPLLL (`frequency`) on the 25 MHz
    oscillator, the UART is the FT231X (FPGA pins M1 in, L4 out), and LED 0
    lights once the PLL has locked. Anywhere else the same top simulates:
    `rx` and `tx` are its ports and the clock is the plain ``sync`` domain.

    Parameters
    ----------
    engine : hdl.engine.Engine
    code_stores : list of CodeStore
        The engine's code banks in column order (``BlockRAMCodeBanks.stores``).
    frequency : float
        The system clock in Hz (the PLL's target on the board).
    baud : float
        UART bit rate; the divisor is ``round(frequency / baud)``, whose rate
        must be within 2% of `baud`.
    divisor : int, optional
        UART clock cycles per bit, overriding `baud` (simulation uses 4).
    timeout : float
        Seconds without a byte inside a request before it is answered TIMEOUT.

    Members
    -------
    rx : In(1)
    tx : Out(1)

    Raises
    ------
    ValueError
        If the baud rate cannot be made from `frequency`, or the code stores
        differ in shape or are missing.
    """

    def __init__(self, *, engine, code_stores, frequency, baud=DEFAULT_BAUD, divisor=None, timeout=0.02):
        if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency <= 0:
            raise ValueError(f"Frequency must be a positive number of Hz, not {frequency!r}")
        if not code_stores:
            raise ValueError("The engine made no code stores: build it with code_store=BlockRAMCodeBanks(layout)")
        self._pll = ECP5PLL(frequency=frequency)
        frequency = self._pll.frequency
        if divisor is None:
            divisor = uart_divisor(frequency, baud)
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
            max_tokens=tokens, clock_hz=round(frequency), divisor=divisor, digest=layout_digest(layout))
        self._link = HostLink(
            identity=self._identity, layers=[(layer.k, layer.n) for layer in layout.layers],
            act_bits=engine.act_bits, acc_bits=engine.acc_bits, max_tokens=tokens,
            banks=len(self._stores), bank_words=self._stores[0].depth,
            word_width=self._stores[0].word_width, timeout=max(16, round(timeout * frequency)))
        super().__init__({"rx": In(1, init=1), "tx": Out(1, init=1)})

    @property
    def engine(self):
        return self._engine

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

    @property
    def code_stores(self):
        return list(self._stores)

    def elaborate(self, platform):
        m = Module()
        m.submodules.pll = pll = self._pll
        m.submodules.uart = uart = self._uart
        m.submodules.link = link = self._link
        m.submodules.engine = engine = self._engine

        if isinstance(platform, LatticePlatform) and platform.family == "ecp5":
            m.domains.sync = ClockDomain("sync")          # clocked and reset by the PLL
            pins = platform.request("uart", 0, dir="-")
            m.submodules.rx_pin = rx_pin = io.Buffer("i", pins.rx)
            m.submodules.tx_pin = tx_pin = io.Buffer("o", pins.tx)
            m.submodules.led_pin = led_pin = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += [uart.rx.eq(rx_pin.i), tx_pin.o.eq(uart.tx), led_pin.o.eq(pll.locked)]
        else:
            m.d.comb += [uart.rx.eq(self.rx), self.tx.eq(uart.tx)]

        m.d.comb += link.line_error.eq(uart.overrun | uart.frame_error)
        wiring.connect(m, uart.o_stream, link.rx)
        wiring.connect(m, link.tx, uart.i_stream)
        wiring.connect(m, link.activations, engine.activations)
        wiring.connect(m, engine.results, link.results)
        m.d.comb += engine.layer.eq(link.layer)

        write = link.code_write
        for bank, store in enumerate(self._stores):
            m.d.comb += [store.write.addr.eq(write.addr), store.write.data.eq(write.data),
                         store.write.en.eq(write.en & (write.bank == bank))]
        return m
