"""Where every memory of the whole-forward design goes on a board, and the context that fits.

    python -m hdl.forward.budget --board icebreaker|ulx3s [--checkpoint DIR] [--context N]
                                 [--int-format NAME=VALUE ...] [--json]

The forward design (`hdl.forward.forward_core.ForwardCore`) holds on the chip
everything one token needs; its memories are the core's own
(``ForwardCore.memories``, sized from the compiled artefact), grouped here as

codes
    the linear layers' PoT codes, ``sum K N bits``, read once per token in
    order (the split-K array's code stream, `hdl.forward.decode_plan`);
KV cache
    keys and values, ``2 n_layer context d act_bits`` bits (one memory per attention unit);
constants (read in order every token)
    the embedding tables (``wte``; ``wpe`` for the built context only; a
    token reads one row of each) and their requantisers, the head's table
    and requantisers, the linear layers' biases, requantiser mantissas and
    shifts, the layer norms' gains and offsets;
tables (read at random)
    the GELU tables, the exp2 tables of the attention unit and of the sampler;
working buffers
    the residual, activations, the array's banks, the layer norm's row, the
    attention unit's query, scores and weights, the sampler's logits and
    weights (and any memory the core adds that the budget does not know).

Boards
    iCE40UP5K (iCEBreaker): 4 SPRAM of 16384 x 16 bits, 30 EBR of 4 Kbit
    (16 x 256, 8 x 512, 4 x 1024 or 2 x 2048), the 16 MiB quad-SPI flash.
    LFE5U-85F (ULX3S): 208 DP16KD of 18 Kbit (36 x 512 .. 1 x 16384).

Placement (`place`), as the core builds it
    UP5K: the codes and the KV cache are `hdl.single_port_memory.SinglePortMemory`
    s, whole SPRAMs each (16 bits x 16,384; a wider word takes SPRAMs side by
    side): the codes one SPRAM per array column (``columns`` banks of
    ``rows * bits``-bit words, no padding of N; SPRAM has no initial contents,
    so the board reads them from its SPI flash at reset, `hdl.code_boot`), the KV cache
    ``ceil(lanes * act_bits / 16)`` side by side. Everything else is an
    initialised or working `Memory` in EBR: a memory takes whole blocks of its
    best shape (16 x 256 .. 2 x 2048), nothing is packed across memories, so
    each small buffer costs a whole 4 Kbit block. With `flash` the constants
    EBR cannot hold are streamed from the SPI flash instead (a design not
    built: its figures price the way out). ECP5: everything in DP16KD.

The flash mode as built (``ForwardCore(constants="flash")``, the iCEBreaker's)
    has no layer-norm, linear-constant or wpe memories at all: the core reads
    them as one byte stream (``constant_image``, in the SPI flash past the
    bitstream) through `hdl.spi_flash_reader.SPIFlashReader`. The budget lists
    that image as one "stream" memory placed in the flash, and `flash_figures`
    prices it: the bytes and seeks a token reads, the reader's cycles for them
    (its bytes per cycle and its latency per seek) and the tokens/s that caps.

`fit` searches the largest context that fits (at most the model's
``n_positions``) and names what limits it; `refusal` is the one line a build
gives for a checkpoint that does not fit. On the UP5K, `options` prices the
ways out with figures: streaming the constants from the SPI flash (bytes
and flash time per token), narrower formats (``--int-format``), a shorter
context. Bits and blocks are exact for the layout above; the built core's
own figures come from nextpnr (`hdl.build --design forward`).
"""

import gc
import json
import math
import warnings
from dataclasses import asdict, dataclass

import numpy as np
from amaranth.hdl import UnusedElaboratable

from golden.cli import ArgumentParser, HelpFormatter, UserError, positive_int, run

__all__ = ["BOARDS", "Board", "MemoryNeed", "forward_memories", "place", "fit", "refusal", "flash_stream",
           "flash_figures", "options", "main"]


@dataclass(frozen=True)
class Board:
    """A chip's memories: block RAM shapes and count, SPRAMs, and the SPI flash the bitstream comes from.

    ``flash_bits_per_cycle``: what a quad-SPI reader with SCK at the system clock gets, 4 bits per cycle.
    """

    name: str
    device: str
    block_name: str
    blocks: int
    block_shapes: tuple
    sprams: int = 0
    spram_words: int = 16384
    spram_width: int = 16
    flash_bytes: int = 0
    flash_bits_per_cycle: int = 4
    lc: int = 0
    dsp: int = 0

    @property
    def block_bits(self):
        return self.block_shapes[0][0] * self.block_shapes[0][1]

    def blocks_of(self, width, depth):
        """Block RAMs a ``width x depth`` memory takes in its best shape."""
        return min(-(-width // w) * -(-depth // d) for w, d in self.block_shapes)


BOARDS = {
    "icebreaker": Board(name="icebreaker", device="iCE40UP5K", block_name="EBR", blocks=30,
                        block_shapes=((16, 256), (8, 512), (4, 1024), (2, 2048)), sprams=4,
                        flash_bytes=16 << 20, lc=5280, dsp=8),
    "ulx3s": Board(name="ulx3s", device="LFE5U-85F", block_name="DP16KD", blocks=208,
                   block_shapes=((36, 512), (18, 1024), (9, 2048), (4, 4096), (2, 8192), (1, 16384)),
                   flash_bytes=32 << 20, lc=83640, dsp=156),
}


@dataclass(frozen=True)
class MemoryNeed:
    """One memory of the forward design.

    kind: "codes", "kv", "constant" (read once per token, in order), "table" (random access), "buffer",
    "stream" (the constant image a ``constants="flash"`` core reads from the SPI flash: never on the chip).
    ``token_bits``: bits read from it per token (what streaming it from flash costs). ``banks``: memories
    of ``width / banks`` bits side by side (the code banks, one per array column). ``single_port``: the core
    builds it as `hdl.single_port_memory.SinglePortMemory` (s): SPRAM on the UP5K (the KV cache; the codes
    when the core loads them, ``codes="loaded"``; initialised codes are block RAM).
    """

    name: str
    kind: str
    width: int
    depth: int
    token_bits: int
    banks: int = 1
    single_port: bool = False

    @property
    def sprams(self):
        """SPRAM blocks it takes as single-port memories (each bank its own)."""
        from ..single_port_memory import spram_blocks
        return self.banks * spram_blocks(self.width // self.banks, self.depth)

    @property
    def bits(self):
        return self.width * self.depth


def _signed_width(values):
    values = np.asarray(values, dtype=np.int64)
    low, high = int(values.min()), int(values.max())
    return max(1, max((-low - 1).bit_length() if low < 0 else 0, high.bit_length()) + 1)


def _unsigned_width(values):
    return max(1, int(np.asarray(values, dtype=np.int64).max()).bit_length())


def _ops(compiled, kind):
    return [op for op in compiled.program if op["op"] == kind]


#: How the budget treats each of `ForwardCore.memories` (by name, or by the name's prefix before a digit).
_KINDS = {"linear_codes": "codes", "kv_cache": "kv",
          **dict.fromkeys(("ln_gamma", "ln_beta", "linear_bias", "linear_mult", "linear_shift", "wte", "wte_mult",
                           "wte_shift", "wpe", "wpe_mult", "wpe_shift", "head_table", "head_mult", "head_shift"),
                          "constant"),
          **dict.fromkeys(("attention_exp2", "sampler_exp2", "gelu"), "table")}
#: Constants of which a token reads one row (the embedding's): the rest are read whole every token.
_ROW_READ = ("wte", "wte_mult", "wte_shift", "wpe", "wpe_mult", "wpe_shift")


def forward_memories(compiled, *, context, rows=4, columns=3, **core_options):
    """Every memory of the forward core for `compiled` at `context` positions, as `MemoryNeed`s.

    The memories are the core's own (`hdl.forward.forward_core.ForwardCore.memories`: names, widths and
    depths as elaborated, for the core of `rows` x `columns` and `core_options`, e.g. lanes); a name the
    budget does not know is a working buffer (block RAM).
    """
    from .forward_core import ForwardCore

    c = compiled.config
    if not 1 <= context <= c.n_positions:
        raise ValueError(f"context must be from 1 to the model's {c.n_positions} positions, not {context}")
    with warnings.catch_warnings():               # the core is made for its memory list, never elaborated
        warnings.simplefilter("ignore", UnusedElaboratable)
        core = ForwardCore(compiled=compiled, context=context, rows=rows, columns=columns, **core_options)
        memories = core.memories
        stream = None
        if core_options.get("constants", "rom") == "flash":
            stream = MemoryNeed("constant_image", "stream", 8, len(core.constant_image()),
                                8 * core.constant_bytes_per_token)
        del core
        gc.collect()
    d, needs = c.n_embd, []
    for name, width, depth in memories:
        base = next((name[:len(name) - cut] for cut in (0, 1, 2) if name[:len(name) - cut] in _KINDS), name)
        kind = _KINDS.get(base, "buffer")             # "kv_cache3": the 4th attention unit's slice of the cache
        if kind == "codes":
            token_bits = sum(compiled.tensors[op["name"] + ".codes"].size for op in compiled.program
                             if op["op"] == "linear") * compiled.bits
        elif kind == "kv":
            token_bits = width * depth
        elif kind == "constant":
            token_bits = width * (d if base in ("wte", "wpe") else 1) if base in _ROW_READ else width * depth
        else:
            token_bits = 0
        single_port = kind == "kv" or (kind == "codes" and core_options.get("codes", "rom") == "loaded")
        needs.append(MemoryNeed(name, kind, width, depth, token_bits, columns if kind == "codes" else 1, single_port))
    if stream is not None:
        needs.append(stream)
    return needs


def place(needs, board, *, flash=False):
    """Where each of `needs` goes on `board` (see the module: as the core builds it).

    UP5K: codes and KV cache in whole SPRAMs; the rest in EBR, or with `flash` the constants that save the
    most flash bytes per token per block in EBR and the others streamed from the SPI flash.

    Returns ``{"placement": [{"name", "kind", "width", "depth", "bits", "where", "blocks", "sprams"}],
    "blocks", "blocks_by_kind", "sprams", "code_sprams", "kv_sprams", "flash_bytes_per_token", "fits",
    "over"}``; "over" names each resource exceeded, with need and capacity.
    """
    rows, blocks, code_sprams, kv_sprams, flash_bits = {}, 0, 0, 0, 0

    def put(need, where, blocks=0, sprams=0):
        rows[need.name] = {"name": need.name, "kind": need.kind, "width": need.width, "depth": need.depth,
                           "bits": need.bits, "where": where, "blocks": blocks, "sprams": sprams}

    for need in needs:
        if need.kind == "stream":
            put(need, "flash")
            flash_bits += need.token_bits
        elif board.sprams and need.single_port:
            put(need, "SPRAM", sprams=need.sprams)
            if need.kind == "codes":
                code_sprams += need.sprams
            else:
                kv_sprams += need.sprams
        elif need.kind != "constant" or not flash:
            put(need, board.block_name, blocks=need.banks * board.blocks_of(need.width // need.banks, need.depth))
            blocks += rows[need.name]["blocks"]

    def saving(need):
        return -need.token_bits / board.blocks_of(need.width, need.depth)

    for need in sorted((n for n in needs if n.kind == "constant" and flash), key=saving):
        cost = board.blocks_of(need.width, need.depth)
        if blocks + cost <= board.blocks:
            put(need, board.block_name, blocks=cost)
            blocks += cost
        else:
            put(need, "flash")
            flash_bits += need.token_bits
    sprams = code_sprams + kv_sprams
    by_kind = {}
    for row in rows.values():
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + row["blocks"]
    over = []
    if blocks > board.blocks:
        over.append(f"{blocks} {board.block_name} of {board.blocks} ("
                    + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v) + ")")
    if board.sprams and sprams > board.sprams:
        over.append(f"{sprams} SPRAM of {board.sprams} ({code_sprams} for the codes, {kv_sprams} for the KV cache)")
    return {"placement": [rows[n.name] for n in needs], "blocks": blocks, "blocks_by_kind": by_kind,
            "sprams": sprams, "code_sprams": code_sprams, "kv_sprams": kv_sprams,
            "flash_bytes_per_token": flash_bits // 8, "fits": not over, "over": over}


def _largest(compiled, board, *, rows, columns, flash=False, **core):
    """The largest context (0: none) whose memories fit `board` (fitting shrinks with the context: bisect)."""
    def fits(context):
        return place(forward_memories(compiled, context=context, rows=rows, columns=columns, **core), board,
                     flash=flash)["fits"]
    low, high = 0, compiled.config.n_positions
    while low < high:
        middle = (low + high + 1) // 2
        if fits(middle):
            low = middle
        else:
            high = middle - 1
    return low


def _limit(compiled, board, context, rows, columns, **core):
    """What stops `context + 1` positions: the model's own context, or the memory that overflows."""
    if context >= compiled.config.n_positions:
        return f"the model's context ({compiled.config.n_positions} positions)"
    after = place(forward_memories(compiled, context=context + 1, rows=rows, columns=columns, **core), board)
    if board.sprams and after["sprams"] > board.sprams:
        return (f"SPRAM: {after['code_sprams']} of {board.sprams} hold the codes, the KV cache at {context + 1} "
                f"positions needs {after['kv_sprams']}")
    return f"{board.block_name}: {after['blocks']} needed of {board.blocks} at {context + 1} positions"


def _largest_spram(compiled, board, **core):
    """The largest context whose codes and KV cache fit the SPRAMs (EBR aside): 0 if none."""
    if not board.sprams:
        return compiled.config.n_positions
    low, high = 0, compiled.config.n_positions
    while low < high:
        middle = (low + high + 1) // 2
        if place(forward_memories(compiled, context=middle, **core), board)["sprams"] <= board.sprams:
            low = middle
        else:
            high = middle - 1
    return low


def fit(compiled, board, *, rows=4, columns=3, **core):
    """``{"context": the largest that fits (0: none), "limit": what limits it, "budget": place(...) there,
    "spram_context": the largest whose codes and KV cache fit the SPRAMs, whatever EBR needs}``."""
    best = _largest(compiled, board, rows=rows, columns=columns, **core)
    budget = place(forward_memories(compiled, context=max(best, 1), rows=rows, columns=columns, **core), board)
    limit = _limit(compiled, board, best, rows, columns, **core) if best else "; ".join(budget["over"]) + " at 1 position"
    return {"context": best, "limit": limit, "budget": budget,
            "spram_context": _largest_spram(compiled, board, rows=rows, columns=columns, **core)}


def refusal(compiled, board, context, *, rows=4, columns=3, **core):
    """The one line a build gives if `compiled` at `context` positions does not fit `board`; None if it fits."""
    budget = place(forward_memories(compiled, context=context, rows=rows, columns=columns, **core), board)
    if budget["fits"]:
        return None
    best = fit(compiled, board, rows=rows, columns=columns, **core)
    after = (f"the largest context that fits is {best['context']} (limited by {best['limit']})" if best["context"]
             else "no context fits")
    return (f"the forward design won't fit the {board.device} at context {context}: needs "
            + ", ".join(budget["over"]) + f"; {after}; see python -m hdl.forward.budget --board {board.name}")


def flash_stream(compiled, board, *, context, clock_hz, **core):
    """The constants block RAM cannot hold at `context` streamed from the SPI flash every token (a design not
    built: the figures price it).

    Returns ``{"context", "bytes_per_token", "cycles_per_token", "tokens_per_s_bound", "fits", "largest_context"}``:
    the flash cycles at ``board.flash_bits_per_cycle`` and the tokens/s they allow if nothing else took time;
    ``largest_context`` is the largest whose KV cache, tables and buffers fit with the constants streamed.
    """
    budget = place(forward_memories(compiled, context=context, **core), board, flash=True)
    bits = budget["flash_bytes_per_token"] * 8
    cycles = -(-bits // board.flash_bits_per_cycle)
    return {"context": context, "bytes_per_token": bits // 8, "cycles_per_token": cycles,
            "tokens_per_s_bound": clock_hz / cycles if cycles else None, "fits": budget["fits"],
            "blocks": budget["blocks"], "largest_context": _largest(compiled, board, flash=True, **core)}


def flash_figures(compiled, *, context, clock_hz, **core):
    """What streaming the constants costs a ``constants="flash"`` core of `compiled` at `context` positions, read
    by `hdl.spi_flash_reader.SPIFlashReader` at `clock_hz`: ``{"constant_bytes", "codes_bytes", "image_bytes",
    "boot_cycles", "boot_s", "bytes_per_token", "seeks_per_token", "bytes_per_cycle", "seek_cycles",
    "cycles_per_token", "tokens_per_s_bound"}``.

    With ``codes="loaded"`` the image holds the codes too (`hdl.code_boot.flash_image`: past the constants,
    from a 256-byte boundary, a check then the banks), read once at reset: ``boot_cycles`` is that read at the
    reader's rate plus one seek (``codes_bytes`` and ``boot_cycles`` are 0 without). ``cycles_per_token`` is the
    reader's time for a token's bytes at its rate plus its latency per seek: the fewest cycles a token can take
    however the core overlaps its work with the stream (a floor, not a measurement: `sim.forward_cycles`
    measures the board top with the flash model at its real rate).
    """
    from ..code_boot import CHECK_BYTES, codes_base
    from ..spi_flash_reader import SPIFlashReader
    from .forward_core import ForwardCore

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnusedElaboratable)
        core = ForwardCore(compiled=compiled, context=context, **{**core, "constants": "flash"})
        reader = SPIFlashReader(clock_hz=clock_hz)
        linear = core.linear
        constant_bytes = len(core.constant_image())
        codes_bytes = (CHECK_BYTES + linear.columns * linear.code_depth * -(-linear.code_bits // 8)
                       if linear.codes == "loaded" else 0)
        figures = {"constant_bytes": constant_bytes, "codes_bytes": codes_bytes,
                   "image_bytes": codes_base(constant_bytes) + codes_bytes if codes_bytes else constant_bytes,
                   "bytes_per_token": core.constant_bytes_per_token,
                   "seeks_per_token": core.constant_seeks_per_token, "bytes_per_cycle": reader.bytes_per_cycle,
                   "seek_cycles": reader.first_byte_cycles}
        del core, reader
    boot = math.ceil(codes_bytes / figures["bytes_per_cycle"]) + figures["seek_cycles"] if codes_bytes else 0
    cycles = math.ceil(figures["bytes_per_token"] / figures["bytes_per_cycle"]) + \
        figures["seeks_per_token"] * figures["seek_cycles"]
    return {**figures, "boot_cycles": boot, "boot_s": boot / clock_hz, "cycles_per_token": cycles,
            "tokens_per_s_bound": clock_hz / cycles}


def options(compiled, board, *, clock_hz, checkpoint=None, formats=None, **core):
    """Ways to fit `compiled` on `board` (UP5K), each with its figures: flash streaming, narrower formats.

    Narrower formats recompile the checkpoint (`golden.compile.compile_checkpoint`) with one override each;
    an override the checkpoint cannot compile to is reported with its error.
    """
    from golden.compile import CompileError, IntFormats, compile_checkpoint

    base = asdict(formats or compiled.formats)
    result = {"flash": flash_stream(compiled, board, context=min(64, compiled.config.n_positions),
                                    clock_hz=clock_hz, **core), "formats": []}
    pot_tables = {"tables": "pot", "table_bits": compiled.bits, "head": "pot", "head_bits": compiled.bits}
    trials = [{"mult_bits": 8}, {"mult_bits": 8, "ln_gamma_bits": 8}, pot_tables]
    for override in trials:
        try:
            other = compile_checkpoint(checkpoint, bits=compiled.bits, formats=IntFormats(**{**base, **override}))
            reached = fit(other, board, **core)
            blocks = place(forward_memories(other, context=min(64, other.config.n_positions), **core), board)["blocks"]
        except (CompileError, ValueError) as error:          # the compiler's or the core's refusal
            result["formats"].append({"override": override, "error": str(error)})
            continue
        result["formats"].append({"override": override, "context": reached["context"], "limit": reached["limit"],
                                  "blocks": blocks})
    return result


def _table(compiled, board, context, budget, reached):
    lines = [f"{board.device} ({board.name}): {board.blocks} {board.block_name} of {board.block_bits} bits"
             + (f", {board.sprams} SPRAM of {board.spram_words} x {board.spram_width}" if board.sprams else ""),
             f"model: vocab {compiled.config.vocab_size}, d {compiled.config.n_embd}, {compiled.config.n_layer} "
             f"layers, {compiled.bits}-bit codes; context {context}", ""]
    head = f"{'memory':<34}{'kind':<10}{'width':>6}{'depth':>8}{'Kbit':>9}  {'where':<8}{'blocks':>7}{'SPRAM':>6}"
    lines += [head, "-" * len(head)]
    for row in budget["placement"]:
        lines.append(f"{row['name']:<34}{row['kind']:<10}{row['width']:>6}{row['depth']:>8}"
                     f"{row['bits'] / 1024:>9.1f}  {row['where']:<8}{row['blocks'] or '':>7}{row['sprams'] or '':>6}")
    lines.append("-" * len(head))
    by_kind = budget["blocks_by_kind"]
    lines.append(f"{board.block_name}: {budget['blocks']} of {board.blocks} ("
                 + ", ".join(f"{k} {v}" for k, v in sorted(by_kind.items(), key=lambda kv: -kv[1]) if v) + ")")
    small = [row for row in budget["placement"] if row["blocks"] == 1 and row["bits"] < board.block_bits // 2]
    if small:
        lines.append(f"  {len(small)} memories of under half a block take a whole {board.block_name} each "
                     f"({sum(r['bits'] for r in small) / 1024:.1f} Kbit in {len(small)} blocks)")
    if board.sprams:
        lines.append(f"SPRAM: {budget['sprams']} of {board.sprams} ({budget['code_sprams']} for the codes, read "
                     f"from the flash at reset; {budget['kv_sprams']} for the KV cache)")
    lines.append("fits" if budget["fits"] else "does NOT fit: " + "; ".join(budget["over"]))
    lines.append(f"largest context that fits: {reached['context']} (limited by {reached['limit']})")
    if board.sprams:
        lines.append(f"largest context whose codes and KV cache fit the {board.sprams} SPRAMs: "
                     f"{reached['spram_context']}")
        missing = budget["blocks"] - board.blocks
        if missing > 0:
            biggest = sorted((r for r in budget["placement"] if r["blocks"]), key=lambda r: -r["blocks"])[:6]
            lines.append(f"still missing at context {context}: {missing} {board.block_name} (the largest: "
                         + ", ".join(f"{r['name']} {r['blocks']}" for r in biggest) + ")")
            by_name = {r["name"]: r for r in budget["placement"]}
            head = next((op for op in compiled.program if op["op"] == "head"), {})
            if head.get("table") == "wte.table" and "head_table" in by_name and "wte" in by_name:
                lines.append(f"  the head is tied: head_table holds wte's {by_name['wte']['bits'] // 8:,} bytes again "
                             f"({by_name['head_table']['blocks']} {board.block_name} one shared table would save)")
            constant_bits = sum(r["bits"] for r in budget["placement"] if r["kind"] == "constant")
            lines.append(f"  the constants alone are {constant_bits / 1024:.1f} Kbit against "
                         f"{board.blocks * board.block_bits / 1024:.0f} Kbit of {board.block_name}: at these formats "
                         f"they cannot all be block RAM (see the ways to fit)")
    return lines


def _flash_lines(board, budget, flash, clock_hz):
    """The flash mode as built: what left block RAM, what a token reads, what that caps."""
    gone = ("ln_gamma", "ln_beta", "linear_bias", "linear_mult", "linear_shift", "wpe", "wpe_mult")
    codes = (f"; the codes, {flash['codes_bytes']:,} bytes, follow them and are read into SPRAM at reset in "
             f"{flash['boot_cycles']:,} cycles ({flash['boot_s'] * 1e3:.1f} ms)" if flash["codes_bytes"] else "")
    return ["", f"constants from the SPI flash (constants=\"flash\"): {', '.join(gone)} are not in block RAM; the "
                f"image is {flash['image_bytes']:,} bytes (at 0x100000 in the flash){codes}",
            f"  a token reads {flash['bytes_per_token']:,} bytes in {flash['seeks_per_token']} seeks: "
            f"{flash['cycles_per_token']:,} cycles at {flash['bytes_per_cycle']:g} bytes per cycle (quad SPI, SCK at "
            f"the clock) and {flash['seek_cycles']} cycles a seek -> at most "
            f"{flash['tokens_per_s_bound']:,.0f} tokens/s at {clock_hz / 1e6:g} MHz from the flash alone",
            f"  {board.block_name}: {budget['blocks']} of {board.blocks} at this context: "
            + ("fits" if budget["blocks"] <= board.blocks else "does NOT fit")]


def _option_lines(board, found, clock_hz):
    flash = found["flash"]
    lines = ["", "ways to fit:",
             f"  stream from the SPI flash the constants block RAM cannot hold at context {flash['context']}: "
             f"{flash['bytes_per_token']:,} bytes per token, {flash['cycles_per_token']:,} cycles at "
             f"{board.flash_bits_per_cycle} bits per cycle (quad SPI, SCK at the clock) -> at most "
             f"{flash['tokens_per_s_bound']:,.0f} tokens/s at {clock_hz / 1e6:g} MHz from the flash alone; "
             f"{flash['blocks']} {board.block_name} left; streaming, the largest context is "
             f"{flash['largest_context']}" if flash["tokens_per_s_bound"] else
             f"  streaming from the SPI flash: nothing to stream; {flash['blocks']} {board.block_name} needed"]
    for trial in found["formats"]:
        label = " ".join(f"{k}={v}" for k, v in trial["override"].items())
        lines.append(f"  --int-format {label}: " + (f"not possible: {trial['error']}" if "error" in trial else
                                                     f"{trial['blocks']} {board.block_name} at context 64; "
                                                     f"context {trial['context']} (limited by {trial['limit']})"))
    return lines


def main(argv=None):
    p = ArgumentParser(
        prog="python -m hdl.forward.budget", formatter_class=HelpFormatter,
        description="Every memory the whole-forward design needs for a compiled checkpoint, where it goes on the "
                    "board, the largest context that fits and what limits it.",
        epilog="examples:\n"
               "  python -m hdl.forward.budget --board icebreaker\n"
               "  python -m hdl.forward.budget --board ulx3s --context 256 --json\n"
               "  python -m hdl.forward.budget --board icebreaker --int-format mult_bits=8")
    p.add_argument("--board", metavar="BOARD", required=True, choices=tuple(BOARDS), help="icebreaker or ulx3s")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--bits", metavar="b", type=positive_int, default=4, help="PoT code width of the linear layers")
    p.add_argument("--int-format", metavar="NAME=VALUE", nargs="+", default=[],
                   help="override a width of golden.compile.IntFormats, e.g. mult_bits=8")
    p.add_argument("--rows", metavar="R", type=positive_int, default=None,
                   help="the core's PoT array rows (default: on the iCEBreaker its forward build's, 2; else 4)")
    p.add_argument("--columns", metavar="C", type=positive_int, default=None,
                   help="the core's PoT array columns (default: 3)")
    p.add_argument("--context", metavar="N", type=positive_int, default=None,
                   help="positions of the KV cache (default: the largest that fits)")
    p.add_argument("--clock", metavar="MHZ", type=float, default=None,
                   help="system clock for the flash figures (default: the board's default build clock)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    from golden.compile import IntFormats, compile_checkpoint, parse_int_formats

    board = BOARDS[args.board]
    formats = IntFormats(**parse_int_formats(args.int_format))
    compiled = compile_checkpoint(args.checkpoint, bits=args.bits, formats=formats)
    if args.context is not None and args.context > compiled.config.n_positions:
        raise UserError(f"--context {args.context}: the model has {compiled.config.n_positions} positions")
    from ..build_forward import FORWARD_CORES

    # The iCEBreaker's forward core decides where its memories go (codes loaded into SPRAM, the KV word's
    # lanes); elsewhere the memories do not depend on the core's speed options.
    base = FORWARD_CORES["icebreaker"] if board.sprams else {"rows": 4, "columns": 3}
    shape = {**base, **{k: v for k, v in (("rows", args.rows), ("columns", args.columns)) if v is not None}}
    reached = fit(compiled, board, **shape)
    context = args.context or reached["context"] or min(64, compiled.config.n_positions)
    budget = place(forward_memories(compiled, context=context, **shape), board)
    clock_hz = (args.clock or _default_clock_mhz(board)) * 1e6
    streamed = shape.get("constants", "rom") == "flash"
    found = options(compiled, board, clock_hz=clock_hz, checkpoint=args.checkpoint, formats=formats, **shape) \
        if board.sprams and not streamed and (not budget["fits"] or reached["context"] < compiled.config.n_positions) \
        else None
    flash = flash_figures(compiled, context=context, clock_hz=clock_hz, **shape) if streamed else None
    if args.json:
        print(json.dumps({"board": board.name, "device": board.device, "context": context, "core": shape,
                          "largest_context": reached["context"], "limit": reached["limit"],
                          "spram_context": reached["spram_context"], **budget,
                          "options": found, "flash": flash}, indent=1))
        return 0
    lines = ["core: " + ", ".join(f"{k} {v}" for k, v in shape.items())] + \
        _table(compiled, board, context, budget, reached)
    if flash:
        lines += _flash_lines(board, budget, flash, clock_hz)
    if found:
        lines += _option_lines(board, found, clock_hz)
    print("\n".join(lines))
    return 0


def _default_clock_mhz(board):
    if board.name == "icebreaker":
        from boards.icebreaker import DEFAULT_FREQ_MHZ
    else:
        from ..build_ecp5 import DEFAULT_FREQ_MHZ
    return DEFAULT_FREQ_MHZ


if __name__ == "__main__":
    run(main, "python -m hdl.forward.budget")
