"""The ULX3S (ECP5 LFE5U-85F) board top: PLL clock, UART, host link, code banks in block RAM, and the engine."""

from amaranth.utils import ceil_log2
from amaranth.vendor import LatticePlatform

from hdl.code_store import CodeStore

from .ecp5_pll import ECP5PLL
from .hosted_top import HostedEngineTop
from .icebreaker import DEFAULT_BAUD, uart_divisor

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


class ULX3STop(HostedEngineTop):
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

    LED = "led"

    def __init__(self, *, engine, code_stores, frequency, baud=DEFAULT_BAUD, divisor=None, timeout=0.02):
        if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency <= 0:
            raise ValueError(f"Frequency must be a positive number of Hz, not {frequency!r}")
        if not code_stores:
            raise ValueError("The engine made no code stores: build it with code_store=BlockRAMCodeBanks(layout)")
        pll = ECP5PLL(frequency=frequency)
        frequency = pll.frequency
        if divisor is None:
            divisor = uart_divisor(frequency, baud)
        super().__init__(engine=engine, code_stores=code_stores, pll=pll, divisor=divisor,
                         timeout_cycles=max(16, round(timeout * frequency)))

    def on_board(self, platform):
        return isinstance(platform, LatticePlatform) and platform.family == "ecp5"
