"""The iCEBreaker board top: PLL clock, UART, host link, code banks in SPRAM, and the engine."""

from amaranth.vendor import SiliconBluePlatform

from hdl.code_store import CodeStore

from .hosted_top import HostedEngineTop, max_tokens
from .ice40_pll import ICE40PLL, pll_settings
from .spram_code_store import SPRAMCodeStore

__all__ = ["ICEBreakerTop", "compose_icebreaker", "DEFAULT_BAUD", "DEFAULT_ROWS", "DEFAULT_COLUMNS",
           "DEFAULT_FREQ_MHZ", "UP5K", "CODE_MEMORIES", "max_tokens", "uart_divisor", "code_columns_per_word",
           "code_memories", "code_fit_problem", "estimate_resources", "fit_problems"]

#: The FT2232H's fastest standard rate: 12 MHz / 4.
DEFAULT_BAUD = 3_000_000
#: Largest baud error the link tolerates (an 8N1 receiver fails near 4-5%).
MAX_BAUD_ERROR = 0.02
#: The default iCEBreaker build (`hdl.build`), which `boards.run --sim` simulates: a 2 x 16 array.
DEFAULT_ROWS = 2
DEFAULT_COLUMNS = 16
#: The iCEBreaker's clock: 3 Mbaud x 12, with some 15% to spare below the Fmax nextpnr reaches for the
#: default 2 x 16 build (41.6 MHz at this target; 42.6 MHz at 30 MHz).
DEFAULT_FREQ_MHZ = 36.0


#: What the iCE40UP5K has: logic cells, 4 Kbit block RAMs, 256 Kbit SPRAMs, 16x16 DSPs.
UP5K = {"lc": 5280, "ebr": 30, "spram": 4, "dsp": 8}
SPRAM_WORDS, SPRAM_BITS = 16384, 16
#: Where the code banks can be: SPRAM (loaded by the host) or block RAM (initialised by the bitstream).
CODE_MEMORIES = ("spram", "ebr")
# Block RAM shapes (width, depth) of one 4 Kbit EBR.
EBR_SHAPES = ((16, 256), (8, 512), (4, 1024), (2, 2048))


def _lc_per_pe(pe, act_bits, acc_bits, bits):
    """Logic cells of one PE and its share of the row readout (fitted to builds of this generator:
    95 for 4-bit PoT codes, 8-bit activations and 23-bit accumulators)."""
    readout = 0.7 * acc_bits
    if pe == "int8":
        return act_bits + 8 + 1 + 1.5 * 8 * act_bits + 2 * acc_bits + readout
    term = act_bits + (1 << (bits - 1)) - 2
    return act_bits + bits + 1 + (term + 1) + acc_bits + 2 * term + readout


def _lc_fixed(columns):
    """Logic cells besides the PEs: UART and host link (~700), engine control, code skew registers."""
    return 900 + 36 * columns


def code_columns_per_word(layout):
    """Columns whose codes share one 16-bit SPRAM word."""
    return SPRAM_BITS // layout.code_bits


def _ebr_blocks(width, depth):
    return min(-(-width // w) * -(-depth // d) for w, d in EBR_SHAPES)


def estimate_resources(layout, *, rows, act_bits, acc_bits, pe, codes="spram"):
    """What the board top for `layout` needs: code bytes, SPRAM blocks, EBR blocks, logic cells (estimates).
    `codes` says where the code banks are: "spram" (loaded by the host) or "ebr" (block RAM, in the bitstream)."""
    from amaranth.utils import ceil_log2
    if codes not in CODE_MEMORIES:
        raise ValueError(f"Codes must be in one of {', '.join(CODE_MEMORIES)}, not {codes!r}")
    code = code_memories(layout.code_depth, columns=layout.columns, code_bits=layout.code_bits, codes=codes)
    banks, sprams, code_ebr = code["banks"], code["spram"], code["code_ebr"]
    max_slots = max(layer.slots for layer in layout.layers)
    bias_bits = max([2] + [abs(int(b)).bit_length() + 1 for b in layout.bias_images.flat])
    ebr = (rows * _ebr_blocks(act_bits, 2 << ceil_log2(layout.max_k))                         # activations
           + rows * _ebr_blocks(acc_bits, 1 << ceil_log2(2 * max_slots * layout.columns))     # results
           + _ebr_blocks(min(bias_bits, acc_bits), layout.bias_depth * layout.columns))       # biases
    lc = rows * layout.columns * _lc_per_pe(pe, act_bits, acc_bits, layout.bits) + _lc_fixed(layout.columns)
    return {"code_bytes": code["code_bytes"], "banks": banks,
            "spram": sprams, "ebr": ebr + code_ebr, "code_ebr": code_ebr, "lc": int(lc)}


def code_memories(code_depth, *, columns, code_bits, codes="spram"):
    """Code bytes, code banks, SPRAMs and block RAMs of `columns` code ROMs of `code_depth` entries."""
    per_word = SPRAM_BITS // code_bits
    banks = -(-columns // per_word)
    return {"code_bytes": code_depth * columns * code_bits // 8, "banks": banks,
            "spram": banks * -(-code_depth // SPRAM_WORDS) if codes == "spram" else 0,
            "code_ebr": banks * _ebr_blocks(per_word * code_bits, code_depth) if codes == "ebr" else 0}


def code_fit_problem(code_depth, *, columns, code_bits, pe="pot", codes="spram"):
    """Why `columns` code ROMs of `code_depth` entries cannot fit the iCE40UP5K's memory, with what to change;
    None if they may. Needs only the shapes (`code_depth` of (K, N) layers is the sum of ``ceil(N / columns)
    * K``), so a build refuses a model too large before quantizing it."""
    need = code_memories(code_depth, columns=columns, code_bits=code_bits, codes=codes)
    smaller = ("--pe pot" if pe == "int8" else "fewer --bits") + " or a smaller model"
    if need["spram"] > UP5K["spram"]:
        capacity = UP5K["spram"] * SPRAM_WORDS * SPRAM_BITS // 8 // 1024
        return (f"{need['code_bytes'] / 1024:.1f} KiB of codes ({code_depth} words per column group, "
                f"{need['banks']} groups) need {need['spram']} SPRAMs of {UP5K['spram']} ({capacity} KiB); "
                f"use {smaller}")
    if need["code_ebr"] > UP5K["ebr"]:
        return (f"{need['code_bytes'] / 1024:.1f} KiB of codes need {need['code_ebr']} block RAMs of {UP5K['ebr']} "
                f"({UP5K['ebr'] * 4096 // 8 // 1024} KiB); use --codes spram, {smaller}")
    return None


def fit_problems(layout, *, rows, act_bits, acc_bits, pe, codes="spram"):
    """Why the board top for `layout` cannot fit the iCE40UP5K, with what to change; empty if it may."""
    need = estimate_resources(layout, rows=rows, act_bits=act_bits, acc_bits=acc_bits, pe=pe, codes=codes)
    problems = []
    if codes == "spram":        # block RAM codes are weighed with the buffers below
        problems += filter(None, [code_fit_problem(layout.code_depth, columns=layout.columns,
                                                   code_bits=layout.code_bits, pe=pe)])
    if need["code_ebr"] and need["ebr"] > UP5K["ebr"]:
        problems.append(f"{need['code_bytes'] / 1024:.1f} KiB of codes need {need['code_ebr']} block RAMs, and the "
                        f"buffers {need['ebr'] - need['code_ebr']} more, of {UP5K['ebr']}; use --codes spram, "
                        f"fewer --bits or a smaller model")
    elif need["ebr"] > UP5K["ebr"]:
        problems.append(f"activation, result and bias buffers need about {need['ebr']} block RAMs of "
                        f"{UP5K['ebr']}; use fewer --rows or --cols")
    if need["lc"] > UP5K["lc"]:
        pes = rows * layout.columns
        problems.append(f"{pes} PEs need about {need['lc']} logic cells of {UP5K['lc']}; "
                        f"use fewer --rows or --cols")
    return problems


def uart_divisor(frequency, baud=DEFAULT_BAUD):
    """Clock cycles per UART bit for `baud` at `frequency`; ValueError if the rate is more than 2% off."""
    divisor = max(4, round(frequency / baud))
    error = abs(frequency / divisor - baud) / baud
    if error > MAX_BAUD_ERROR:
        raise ValueError(f"{frequency / 1e6:g} MHz cannot make {baud / 1e6:g} Mbaud (closest "
                         f"{frequency / divisor / 1e6:.4g} Mbaud, {100 * error:.1f}% off); use a clock that is a "
                         f"multiple of {baud / 1e6:g} MHz")
    return divisor


class ICEBreakerTop(HostedEngineTop):
    """Everything on the iCE40UP5K: the engine behind a UART host link.

    The engine's code banks are `boards.spram_code_store.SPRAMCodeStore` (the
    ones the engine made through a `SPRAMCodeBanks` factory), or, for a model
    small enough, writable `hdl.code_store.CodeStore` block RAMs initialised by
    the bitstream (`boards.ulx3s.BlockRAMCodeBanks`); the host link writes them
    (LOAD), selects the engine's layer (LAYER) and streams activations in and
    accumulators out (RUN); see `boards.protocol`.

    On the iCEBreaker platform the clock is the PLL (`frequency`) on the 12 MHz
    pin, the UART is the FT2232H's second channel (pins 6 and 9), and the green
    LED lights once the PLL has locked. Anywhere else the same top simulates:
    `rx` and `tx` are its ports and the clock is the plain ``sync`` domain.

    Parameters
    ----------
    engine : hdl.engine.Engine
    code_stores : list of SPRAMCodeStore or writable CodeStore
        The engine's code banks in column order.
    frequency : float
        The system clock in Hz (the PLL's target on the board).
    baud : float
        UART bit rate; the divisor is ``round(frequency / baud)``, whose rate
        must be within 2% of `baud`.
    divisor : int, optional
        UART clock cycles per bit, overriding `baud` (simulation uses 4).
    timeout : float
        Seconds without a byte inside a request before it is answered TIMEOUT
        (default 0.1: far longer than any gap in a host's write).

    Members
    -------
    rx : In(1)
        UART input (simulation; on the board it is the pin).
    tx : Out(1)
        UART output.

    Raises
    ------
    ValueError
        If the baud rate cannot be made from `frequency`, or the code stores
        are not the engine's writable code stores.
    """

    LED = "led_g"

    def __init__(self, *, engine, code_stores, frequency, baud=DEFAULT_BAUD, divisor=None, timeout=0.1):
        if not isinstance(frequency, (int, float)) or frequency <= 0:
            raise ValueError(f"Frequency must be a positive number of Hz, not {frequency!r}")
        if not code_stores or list(code_stores) != engine.code_stores \
                or not all(isinstance(store, SPRAMCodeStore) or (isinstance(store, CodeStore) and store.writable)
                           for store in code_stores):
            raise ValueError("The code stores must be the engine's SPRAM code stores (or writable block RAM "
                             "ones): build the engine with code_store=SPRAMCodeBanks() (or BlockRAMCodeBanks(layout)) "
                             "and pass its .stores")
        if divisor is None:
            divisor = uart_divisor(pll_settings(12e6, frequency).output_hz, baud)
        super().__init__(engine=engine, code_stores=code_stores, pll=ICE40PLL(frequency=frequency), divisor=divisor,
                         timeout_cycles=max(16, round(timeout * frequency)))

    def on_board(self, platform):
        return isinstance(platform, SiliconBluePlatform)


def compose_icebreaker(integer_model, *, rows, columns, frequency, divisor=None, timeout=0.1, codes="spram"):
    """The iCEBreaker top for `integer_model`: its layout for `columns` columns on an engine of `rows` rows,
    codes in SPRAM (``codes="spram"``) or block RAM (``"ebr"``), behind the host link. Returns the `ICEBreakerTop`.

    `hdl.build` builds this top and `boards.run --sim` simulates it, so both run the same hardware."""
    from hdl.engine import Engine

    from .spram_code_store import SPRAMCodeBanks
    from .ulx3s import BlockRAMCodeBanks

    layout = integer_model.layout(columns)
    banks = SPRAMCodeBanks() if codes == "spram" else BlockRAMCodeBanks(layout)
    engine = Engine(layout=layout, rows=rows, act_bits=integer_model.act_bits, pe=integer_model.pe,
                    columns_per_word=code_columns_per_word(layout), code_store=banks)
    return ICEBreakerTop(engine=engine, code_stores=banks.stores, frequency=frequency, divisor=divisor,
                         timeout=timeout)
