"""Every linear layer of a program on one split-K PoT array: one code memory, channel-indexed requantisers."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from golden.datapath import check_act_bits
from golden.pot_format import PotFormat

from ..pot_pe import PotPE
from ..read_port import NO_COLLISIONS, ReadPort
from ..single_port_memory import SinglePortMemory
from .arith import check_int, saturate
from .requantizer import Requantizer
from .two_pass_requantizer import TwoPassRequantizer

__all__ = ["LinearLayer", "ProgramLinear", "CODE_STORES", "CONSTANT_SOURCES", "REQUANTIZERS", "LOADED_WORD_BITS",
           "default_code_pack", "code_words", "pack_codes", "short_tile_banks", "program_code_banks", "program_layers"]

#: Where `ProgramLinear` keeps its codes: ``"rom"``, memories initialised by the bitstream; ``"loaded"``,
#: single-port memories (iCE40 SPRAM) with no initial contents, written through the ``code_write`` port.
CODE_STORES = ("rom", "loaded")

#: The requantiser behind `ProgramLinear`'s readout: ``"parallel"`` (`Requantizer`, a channel per cycle),
#: ``"two-pass"`` (`TwoPassRequantizer`, one 16 x 16 multiplier, a channel every other cycle),
#: ``"two-pass-serial"`` (the same with its shift made one place a cycle: no barrel shifter, a channel every
#: ``high - low + 1`` cycles of the layers' shift range) or ``"auto"`` (the slowest of them that every tile
#: leaves the time: ``min(chunk) + 1 >= interval * columns``).
REQUANTIZERS = ("auto", "parallel", "two-pass", "two-pass-serial")

#: Where `ProgramLinear` gets each channel's bias / mult / shift: ``"rom"``, memories initialised by the
#: bitstream; ``"stream"``, one record per output channel on the ``channel_constants`` port (the core
#: streams them from the SPI flash).
CONSTANT_SOURCES = ("rom", "stream")

#: Width of a loaded code bank's word (``codes="loaded"``): the iCE40UP5K SPRAM's 16 bits, and the
#: 16-bit code word the host's LOAD and the board's boot loader write.
LOADED_WORD_BITS = 16


def default_code_pack(*, rows, bits, codes):
    """Column words (``rows * bits`` bits: one beat of one array column) per code bank word.

    ROM codes: 1. Loaded codes: the largest power of two whose words fit `LOADED_WORD_BITS`, so a bank
    of a narrow array (2 rows of 4-bit codes: 8-bit column words) still fills its SPRAM's width and not
    twice its depth (which would take two SPRAMs a bank).
    """
    pack = 1
    while codes == "loaded" and 2 * pack * rows * bits <= LOADED_WORD_BITS:
        pack *= 2
    return pack


def code_words(codes, rows, columns, zero_code):
    """The code words of a split-K layer: word ``(tile, t)`` holds the ``rows x columns`` codes of one beat.

    Code ``(r, c)`` of word ``tile * chunk + t`` is ``codes[r * chunk + t, tile * columns + c]``
    (``chunk = ceil(K / rows)``), the zero code past ``K`` or ``N``; returns
    an int array ``(tiles * chunk, rows * columns)``.
    """
    k, n = codes.shape
    chunk, tiles = -(-k // rows), -(-n // columns)
    padded = np.full((rows * chunk, tiles * columns), zero_code, np.int64)
    padded[:k, :n] = codes
    # (r, t, tile, c) -> (tile, t, r, c)
    return padded.reshape(rows, chunk, tiles, columns).transpose(2, 1, 0, 3).reshape(tiles * chunk, rows * columns)


#: States kept per step when `short_tile_banks` searches the banks of the short tiles (exact below it).
BANK_SEARCH_STATES = 4096


def short_tile_banks(layers, *, rows, columns):
    """Per layer, the first bank of its last tile when that tile is short (``N`` not a multiple of ``columns``;
    else 0), chosen so the banks fill as evenly as they can.

    A full tile puts ``chunk`` column words in every bank; the short tile of ``c`` channels of a layer whose
    first bank is ``o`` puts them in banks ``o .. o + c - 1`` (mod ``columns``). The choice minimises the
    fullest bank (so the code banks are as shallow as the words allow: the default model's codes fill its
    three SPRAMs exactly); a search over the fills reached, at most `BANK_SEARCH_STATES` kept at each step.
    """
    states = {(0,) * columns: ()}
    for layer in layers:
        chunk, cols = -(-layer.k // rows), layer.n % columns
        grown = {}
        for fills, chosen in states.items():
            for first in range(columns if cols else 1):
                f = list(fills)
                for j in range(cols):
                    f[(first + j) % columns] += chunk
                low = min(f)
                grown.setdefault(tuple(x - low for x in f), chosen + (first,))
        states = dict(sorted(grown.items(), key=lambda item: (max(item[0]), item[0]))[:BANK_SEARCH_STATES])
    return list(min(states.items(), key=lambda item: (max(item[0]), item[0]))[1])


def pack_codes(layers, *, rows, columns, bits, zero_code, pack=1):
    """Every layer's codes as column words of ``rows * bits`` bits, in ``columns`` banks, with no padding of ``N``.

    Beat ``t`` of tile ``tile`` of a layer needs, for each of the tile's
    channels ``j`` (``tile * columns + j < N``), the ``rows`` codes
    ``codes[r * chunk + t, tile * columns + j]`` (the zero code past ``K``;
    code ``r`` in bits ``r * bits``): one column word. Channel ``j`` of a full
    tile is in bank ``j``; of a layer's short last tile, in bank
    ``(o + j) mod columns`` (``o`` from `short_tile_banks`). Each bank holds its
    words in the order they are used (layer, tile, beat), so it is read at
    consecutive addresses. Returns ``(banks, offsets)``: an int array
    ``(columns, depth)`` (``depth`` the fullest bank's words, the others
    padded with the zero code) and each layer's ``o``.

    With ``pack > 1`` a bank word holds `pack` consecutive column words of its bank (the first in the low
    bits), so ``depth`` is ``ceil(words / pack)`` of the fullest bank.
    """
    offsets = short_tile_banks(layers, rows=rows, columns=columns)
    banks = [[] for _ in range(columns)]
    for layer, first in zip(layers, offsets):
        k, n = layer.codes.shape
        chunk, tiles = -(-k // rows), -(-n // columns)
        padded = np.full((rows * chunk, tiles * columns), zero_code, np.int64)
        padded[:k, :n] = layer.codes
        # words[tile, t, j]: column word of channel j of tile, beat t
        words = sum(padded.reshape(rows, chunk, tiles, columns)[r].astype(object) << (bits * r)
                    for r in range(rows)).transpose(1, 0, 2)
        for tile in range(tiles):
            cols = min(columns, n - tile * columns)
            for j in range(cols):
                banks[(first + j) % columns if cols < columns else j].extend(words[tile, :, j])
    depth = max(1, -(-max(len(b) for b in banks) // pack))
    zero_word = zero_code * sum(1 << (bits * r) for r in range(rows))
    banks = [b + [zero_word] * (depth * pack - len(b)) for b in banks]
    return np.array([[sum(int(w) << (rows * bits * i) for i, w in enumerate(b[a:a + pack]))
                      for a in range(0, depth * pack, pack)] for b in banks], dtype=object), offsets


def program_code_banks(compiled, *, rows, columns):
    """The code banks (`pack_codes`) of the `ProgramLinear` of `compiled`'s program on a ``rows x columns``
    array: what a host writes into a board whose codes are loaded (``codes="loaded"``, so
    `default_code_pack`'s words)."""
    fmt = PotFormat(compiled.bits)
    return pack_codes(program_layers(compiled), rows=rows, columns=columns, bits=fmt.bits,
                      zero_code=fmt.zero_code, pack=default_code_pack(rows=rows, bits=fmt.bits, codes="loaded"))[0]


class LinearLayer:
    """One layer of a `ProgramLinear`: its codes ``(K, N)``, bias / mult / shift ``(N,)``, output width, add.

    ``out_bits``: the width its requantised outputs saturate to; ``add``: the
    outputs are added to the ``x`` stream and saturated to the engine's
    ``res_bits`` (a ``linear`` op with ``to: "residual"``).
    """

    def __init__(self, *, codes, bias, mult, shift, out_bits, add=False, name=""):
        self.codes = np.asarray(codes)
        if self.codes.ndim != 2 or not self.codes.size:
            raise ValueError(f"{name or 'codes'}: codes must be a non-empty (K, N) array, not of shape "
                             f"{self.codes.shape}")
        self.k, self.n = self.codes.shape
        self.bias, self.mult, self.shift = (np.asarray(v, np.int64) for v in (bias, mult, shift))
        for what, values in (("bias", self.bias), ("mult", self.mult), ("shift", self.shift)):
            if values.shape != (self.n,):
                raise ValueError(f"{name} {what} must have {self.n} values (one per output channel), not "
                                 f"{values.shape}")
        self.out_bits, self.add, self.name = out_bits, bool(add), name


def _width(low, high):
    """Bits of the narrowest two's-complement integer holding every value from `low` to `high`."""
    low, high = min(0, int(low)), max(0, int(high))
    return max(2, high.bit_length() + 1, (-low - 1).bit_length() + 1)


def sum_ranges(values, act_bits):
    """Per column of the integer weights `values` (K, N): the smallest and largest ``sum_k x_k w_kn`` of any
    `act_bits`-bit activations (each x at the end of its range that pushes the sum that way)."""
    values = np.asarray(values, np.int64)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    return np.minimum(values * lo, values * hi).sum(axis=0), np.maximum(values * lo, values * hi).sum(axis=0)


def adder_tree(m, values, name):
    """The sum of `values`, added two at a time into kept wires: one carry-chain adder per pair.

    Left to itself Yosys merges a chain of additions into one multi-operand sum and maps it with
    full-adder compressors in LUTs (about 1.6x the LUT4 of the adders, for 4 operands of 19 bits); the
    ``keep`` attribute on each partial sum stops the merge.
    """
    level = 0
    while len(values) > 1:
        pairs = []
        for i in range(0, len(values) - 1, 2):
            a, b = values[i], values[i + 1]
            total = Signal(signed(max(len(a), len(b)) + 1), name=f"{name}_{level}_{i // 2}", attrs={"keep": 1})
            m.d.comb += total.eq(a + b)
            pairs.append(total)
        values = pairs + values[len(values) - len(values) % 2:]
        level += 1
    return values[0]


def program_layers(compiled):
    """The `LinearLayer` s of every ``linear`` op of `compiled`'s program, in program order."""
    t, f = compiled.tensors, compiled.formats
    layers = []
    for op in compiled.program:
        if op["op"] == "linear":
            name, add = op["name"], op["to"] == "residual"
            layers.append(LinearLayer(codes=t[name + ".codes"], bias=t[name + ".bias"], mult=t[name + ".mult"],
                                      shift=t[name + ".shift"], out_bits=f.res_bits if add else f.act_bits,
                                      add=add, name=name))
    return layers


class ProgramLinear(wiring.Component):
    """``requantize(a @ W_l + bias_l, mult_l, shift_l)`` of one token for any layer ``l`` of a program.

    One ``rows x columns`` array of `PotPE` s serves every layer, with the
    split-K mapping of :mod:`hdl.forward.decode_plan`: PE ``(r, c)``
    accumulates K chunk ``r`` (``chunk_l = ceil(K_l / rows)`` activations,
    from its own bank) with output channel ``tile * columns + c`` (of a
    layer's short last tile, channel ``j`` in column ``(o_l + j) mod columns``);
    every beat each PE reads its own code: column ``c``'s ``rows`` codes are
    one word of code bank ``c``. A tile is ``chunk_l`` beats and one drain beat; at the drain each
    column's ``rows`` partial sums are added and held, and sent with the
    channel's bias through the requantiser (`Requantizer`, one channel per
    cycle, or `TwoPassRequantizer`, one every other cycle, or with its serial
    shifter one every ``shift - low + 1``: `requantizer`) while the next tile
    accumulates. The PEs add ones'-complement negative
    terms (``PotPE(exact_negation=False)``): a channel's sum comes out short by
    its count of negative non-zero codes, which its stored bias adds back
    (`channel_records`). The PEs' accumulators are as wide as the partial sums
    these codes can make (`pe_bits`), the held sums as wide as a channel's sum
    plus its bias (`acc_bits`). While no beat runs the PEs skip (``skip_in``),
    so no code or activation needs clearing. A layer takes ``K_l`` cycles to load the activations, then
    ``tiles_l * (chunk_l + 1)`` beats and a few cycles of pipeline.

    Memories (the seam where a build places them):

    - ``codes``: ``columns`` banks of `code_bits`-bit words, each `code_pack`
      column words of ``rows * bits`` bits (`pack_codes`: every layer's codes
      with no padding of ``N``; bank ``c`` holds column ``c``'s words in the
      order they are used and is read at consecutive addresses from 0, a word
      every `code_pack` beats that use it, held in between), `code_depth` deep:
      initialised memories (``codes="rom"``), or single-port memories with no
      initial contents (``codes="loaded"``: iCE40 SPRAMs, written through
      ``code_write`` with `code_banks` before the first layer runs);
    - ``bias``, ``mult``, ``shift``: one entry per output channel of every
      layer in program order, `channels` deep, holding
      `channel_records` (``constants="rom"``); with ``constants="stream"``
      there are none, and each channel's record arrives on ``channel_constants``;
    - ``banks``: the ``rows`` activation banks of `max_chunk` entries side by side (one memory: every beat
      reads entry ``t`` of each; a loaded activation writes its bank's lane).

    The layer is chosen by the ``select`` port, held for the whole layer
    (from its first activation to its last output). **The layers run in
    program order**, ``0, 1, .., L - 1``, then from 0 again (as the forward
    core runs them): the code banks and the constant memories are read on from
    where the previous layer stopped, and layer 0 starts them again at 0 (so
    no per-layer base addresses are needed). Nothing else may be skipped or
    repeated. Outputs are requantised to
    the widest ``out_bits`` and saturated to the layer's own (nested
    saturation equals the direct one); a layer with ``add`` joins each output
    with one value of the ``x`` stream and sends ``saturate(x + y, res_bits)``.

    Parameters
    ----------
    layers : sequence of LinearLayer
    bits : int
        PoT code width.
    act_bits, res_bits : int
        Activation width in; width of the residual (``x`` and the sums of ``add`` layers).
    rows, columns : int
        The array.
    mult_bits : int
        Width of the multipliers.
    codes : str
        ``"rom"`` or ``"loaded"`` (`CODE_STORES`).
    constants : str
        ``"rom"`` or ``"stream"`` (`CONSTANT_SOURCES`).
    requantizer : str
        ``"auto"``, ``"parallel"``, ``"two-pass"`` or ``"two-pass-serial"`` (`REQUANTIZERS`).
    code_pack : int or None
        Column words per code bank word, a power of two; None: `default_code_pack` of the array and `codes` (1 for ROM
        codes; loaded codes fill the SPRAM's 16-bit word, e.g. 2 on a 2-row array of 4-bit codes).

    Members
    -------
    a : ``In(stream.Signature(signed(act_bits)))``
        The ``K`` activations of the token.
    x : ``In(stream.Signature(signed(res_bits)))``
        Only when a layer adds: the residual row, one value per output.
    o : ``Out(stream.Signature(signed(out_bits)))``
        The ``N`` outputs, in channel order (``out_bits``: the widest layer's, or ``res_bits``).
    select : ``In(range(len(layers)))``
    code_write : ``In(Signature({"en", "bank": range(columns), "addr", "data": code_bits}))``
        Only with ``codes="loaded"``: word ``addr`` of bank ``bank`` is ``data`` in a cycle with ``en`` high
        (while no layer runs).
    channel_constants : ``In(stream.Signature(StructLayout({"bias": signed(bias_bits), "mult": mult_bits, "shift": 6})))``
        Only with ``constants="stream"``: the `channel_records` of the running layer, one per output channel in
        channel order. A record is taken (ready) only when its channel is about to be requantised; the
        readout stalls while none is valid.
    """

    def __init__(self, *, layers, bits=4, act_bits=8, res_bits=16, rows=4, columns=3, mult_bits=16, codes="rom",
                 constants="rom", requantizer="auto", code_pack=None):
        self._format = PotFormat(bits)
        self._act_bits = check_act_bits(act_bits)
        self._res_bits = check_int("res_bits", res_bits, 2, 32)
        self._rows = check_int("rows", rows, 1, 64)
        self._columns = check_int("columns", columns, 1, 256)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 32)
        self._layers = list(layers)
        if not self._layers:
            raise ValueError("layers must name at least one linear layer")
        if codes not in CODE_STORES:
            raise ValueError(f"codes must be one of {', '.join(CODE_STORES)}, not {codes!r}")
        self._codes = codes
        if constants not in CONSTANT_SOURCES:
            raise ValueError(f"constants must be one of {', '.join(CONSTANT_SOURCES)}, not {constants!r}")
        self._constants = constants
        if requantizer not in REQUANTIZERS:
            raise ValueError(f"requantizer must be one of {', '.join(REQUANTIZERS)}, not {requantizer!r}")
        if code_pack is None:
            code_pack = default_code_pack(rows=rows, bits=self._format.bits, codes=codes)
        check_int("code_pack", code_pack, 1, 64)
        if code_pack & (code_pack - 1):
            raise ValueError(f"code_pack must be a power of two, not {code_pack}")
        self._code_pack = code_pack
        for layer in self._layers:
            self._format.check_codes(layer.codes)
            check_int(f"{layer.name} out_bits", layer.out_bits, 2, 32)
            if layer.mult.min() < 0 or layer.mult.max() >= 1 << mult_bits or layer.shift.min() < 0 \
                    or layer.shift.max() > 62:
                raise ValueError(f"{layer.name}: mult must be {mult_bits}-bit unsigned and shift from 0 to 62")
        self._banks, self._short_banks = pack_codes(self._layers, rows=rows, columns=columns,
                                                    bits=self._format.bits, zero_code=self._format.zero_code,
                                                    pack=code_pack)
        self._negatives, pe_bits, acc_bits = [], 2, 2
        for layer in self._layers:
            values = self._format.to_int(layer.codes)
            self._negatives.append((values < 0).sum(axis=0))
            chunk = -(-layer.k // rows)
            for r in range(rows):
                part = values[r * chunk:(r + 1) * chunk]
                if len(part):                           # a ones'-complement sum: short by the negative codes
                    low, high = sum_ranges(part, act_bits)
                    negative = (part < 0).sum(axis=0)
                    pe_bits = max(pe_bits, _width((low - negative).min(), (high - negative).max()))
            low, high = sum_ranges(values, act_bits)
            acc_bits = max(acc_bits, _width((low + layer.bias).min(), (high + layer.bias).max()))
        self._pe_bits, self._acc_bits = pe_bits, acc_bits
        shifts = [int(v) for x in self._layers for v in x.shift]
        self._shift_range = (min(shifts), max(shifts))
        beats = min(self.layer_chunk(i) for i in range(len(self._layers))) + 1      # a tile's, at the least
        if requantizer == "auto":
            requantizer = "parallel"
            if mult_bits <= 16 and acc_bits <= 31 and beats >= 2 * columns:
                serial = self._shift_range[0] >= 1 and beats >= columns * max(2, self._shift_range[1] -
                                                                               self._shift_range[0] + 1)
                requantizer = "two-pass-serial" if serial else "two-pass"
        if requantizer == "two-pass-serial" and self._shift_range[0] < 1:
            raise ValueError(f"the two-pass-serial requantiser needs shifts from 1 up, not from {self._shift_range[0]}")
        self._requantizer = requantizer
        self._out_bits = max([x.out_bits for x in self._layers] + [res_bits if self.adds else 2])
        ports = {"a": In(stream.Signature(signed(act_bits))), "o": Out(stream.Signature(signed(self._out_bits))),
                 "select": In(range(len(self._layers)))}
        if self.adds:
            ports["x"] = In(stream.Signature(signed(res_bits)))
        if codes == "loaded":
            ports["code_write"] = In(self.code_write_signature)
        if constants == "stream":
            ports["channel_constants"] = In(stream.Signature(self.channel_layout))
        super().__init__(ports)

    @property
    def layers(self):
        return tuple(self._layers)

    @property
    def adds(self):
        """Whether a layer adds into the residual (then the ``x`` port exists)."""
        return any(x.add for x in self._layers)

    @property
    def rows(self):
        return self._rows

    @property
    def codes(self):
        """Where the codes are: ``"rom"`` or ``"loaded"`` (`CODE_STORES`)."""
        return self._codes

    @property
    def constants(self):
        """Where each channel's bias / mult / shift comes from: ``"rom"`` or ``"stream"`` (`CONSTANT_SOURCES`)."""
        return self._constants

    @property
    def channel_layout(self):
        """The layout of one ``channel_constants`` record: ``bias`` (signed `bias_bits`), ``mult``, ``shift``."""
        return data.StructLayout({"bias": signed(self.bias_bits), "mult": self._mult_bits, "shift": 6})

    def channel_records(self):
        """``[(bias, mult, shift)]``, one per output channel of every layer in program order: the values the
        ``bias`` / ``mult`` / ``shift`` memories hold, and what ``channel_constants`` must carry.

        The bias is the layer's bias plus the channel's count of negative non-zero codes, which the array's
        ones'-complement terms leave out of its sum (as `hdl.bias_store.stored_biases` for the engine)."""
        return [(int(b) + int(n), int(m), int(s)) for x, negatives in zip(self._layers, self._negatives)
                for b, m, s, n in zip(x.bias, x.mult, x.shift, negatives)]

    @property
    def code_bits(self):
        """Bits of one bank word: ``code_pack * rows * bits`` (`code_pack` beats of one column's codes)."""
        return self._code_pack * self._rows * self._format.bits

    @property
    def code_pack(self):
        """Column words (one beat of one column, ``rows * bits`` bits) per code bank word."""
        return self._code_pack

    @property
    def code_banks(self):
        """The banks' contents, ``(columns, code_depth)`` ints (`pack_codes`): what ``codes="loaded"`` must be
        written before a layer runs."""
        return self._banks.copy()

    @property
    def code_write_signature(self):
        """The ``code_write`` port's signature (from the writer's side)."""
        return wiring.Signature({"en": Out(1), "bank": Out(range(self._columns)),
                                 "addr": Out(range(max(2, self.code_depth))), "data": Out(self.code_bits)})

    @property
    def columns(self):
        return self._columns

    @property
    def acc_bits(self):
        """Width of a channel's held sum and the requantiser's input: the narrowest holding ``a @ W + bias`` of
        every channel of every layer, for any activations (from the codes themselves, `sum_ranges`)."""
        return self._acc_bits

    @property
    def pe_bits(self):
        """Width of the PEs' accumulators: the narrowest holding every partial sum of one row's K chunk (with
        its ones'-complement shortfall) of every layer, for any activations."""
        return self._pe_bits

    @property
    def requantizer(self):
        """The requantiser in use: ``"parallel"``, ``"two-pass"`` or ``"two-pass-serial"`` (`REQUANTIZERS`)."""
        return self._requantizer

    @property
    def bias_bits(self):
        """Width of the bias memory and of a record's ``bias``: the widest stored bias (`channel_records`)."""
        return max(_width(b, b) for b, _, _ in self.channel_records())

    @property
    def out_bits(self):
        return self._out_bits

    def layer_chunk(self, layer):
        """Activations per row of layer `layer`: ``ceil(K / rows)``."""
        return -(-self._layers[layer].k // self._rows)

    def layer_tiles(self, layer):
        """Column tiles of layer `layer`: ``ceil(N / columns)``."""
        return -(-self._layers[layer].n // self._columns)

    def layer_beats(self, layer):
        """Beats of the array for layer `layer`: ``tiles * (chunk + 1)``."""
        return self.layer_tiles(layer) * (self.layer_chunk(layer) + 1)

    @property
    def max_chunk(self):
        return max(self.layer_chunk(i) for i in range(len(self._layers)))

    @property
    def code_depth(self):
        """Words of each code bank (all layers)."""
        return self._banks.shape[1]

    @property
    def channels(self):
        """Output channels of all layers: the depth of the bias / mult / shift memories."""
        return sum(x.n for x in self._layers)

    @property
    def memories(self):
        """``[(name, width, depth)]`` of the engine's memories."""
        constants = [("bias", self.bias_bits, self.channels), ("mult", self._mult_bits, self.channels),
                     ("shift", 6, self.channels)] if self._constants == "rom" else []
        return [("codes", self.code_bits * self._columns, self.code_depth)] + constants + \
            [("banks", self._act_bits * self._rows, self.max_chunk)]

    @property
    def utilisation(self):
        """Useful products over PE beats, over all layers once: ``sum K N / (rows columns sum beats)``."""
        beats = sum(self.layer_beats(i) for i in range(len(self._layers)))
        return sum(x.k * x.n for x in self._layers) / (self._rows * self._columns * beats)

    def elaborate(self, platform):
        m = Module()
        R, C, fmt, layers = self._rows, self._columns, self._format, self._layers
        select = self.select

        def table(values):
            return Array(Const(int(v), range(min(0, min(values)), max(values) + 1)) for v in values)[select]

        last_channels_of = table([x.n % C or C for x in layers])          # channels of the last tile
        # The last activation goes to bank (K - 1) // chunk, entry (K - 1) % chunk.
        last_bank_of = table([(x.k - 1) // self.layer_chunk(i) for i, x in enumerate(layers)])
        last_entry_of = table([(x.k - 1) % self.layer_chunk(i) for i, x in enumerate(layers)])
        chunk_of = table([self.layer_chunk(i) for i in range(len(layers))])
        tiles_of = table([self.layer_tiles(i) for i in range(len(layers))])
        # The banks a layer's last tile reads (all of them for a full tile), and the first of them.
        last_banks_of = table([sum(1 << ((o + j) % C) for j in range(x.n % C or C)) for x, o in
                               zip(layers, self._short_banks)])
        last_first_of = table(self._short_banks)
        max_chunk, max_tiles = self.max_chunk, max(self.layer_tiles(i) for i in range(len(layers)))

        depth, column_bits, pack = self.code_depth, self.code_bits, self._code_pack
        phase_bits = pack.bit_length() - 1       # a bank's column-word count: its word address, then its phase
        code_reads = []
        for s in range(C):
            if self._codes == "rom":
                bank = memory.Memory(shape=column_bits, depth=depth, init=[int(w) for w in self._banks[s]])
            else:
                bank = SinglePortMemory(shape=column_bits, depth=depth)
                write = bank.write_port()
                m.d.comb += [write.addr.eq(self.code_write.addr), write.data.eq(self.code_write.data),
                             write.en.eq(self.code_write.en & (self.code_write.bank == s))]
            m.submodules[f"codes{s}"] = bank
            code_reads.append(bank.read_port())
        A = self._act_bits
        # Written only while loading (state LOAD), read only on beats (BEATS): no read meets a write in its cycle,
        # so the port needs no read-during-write logic (`ReadPort`).
        m.submodules.banks = bank_memory = memory.Memory(shape=A * R, depth=max_chunk, init=[], attrs=NO_COLLISIONS)
        bank_write, bank_read = bank_memory.write_port(granularity=A), ReadPort(m, bank_memory, "bank_read")
        constants = {}
        if self._constants == "rom":
            records = self.channel_records()
            for index, (name, shape) in enumerate((("bias", signed(self.bias_bits)), ("mult", self._mult_bits),
                                                    ("shift", 6))):
                rom = memory.Memory(shape=shape, depth=len(records), init=[r[index] for r in records])
                m.submodules[name] = rom
                constants[name] = rom.read_port()
        if self._requantizer == "parallel":
            requant = Requantizer(acc_bits=self._acc_bits, mult_bits=self._mult_bits, shift_bits=6,
                                  out_bits=self._out_bits)
        else:
            requant = TwoPassRequantizer(acc_bits=self._acc_bits, mult_bits=self._mult_bits,
                                         shift_range=self._shift_range, out_bits=self._out_bits,
                                         shifter="serial" if self._requantizer == "two-pass-serial" else "barrel")
        m.submodules.requantizer = requant
        pes = [[PotPE(act_bits=self._act_bits, bits=fmt.bits, acc_bits=self._pe_bits, exact_negation=False,
                      skip_input=True) for _ in range(C)] for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Loading: activation k goes to bank k // chunk, entry k % chunk.
        bank_index, bank_entry = Signal(range(R)), Signal(range(max_chunk))
        # Beats: issue (tile, t) -> code memory and banks answer -> PE inputs. Bank s (PE column s) reads its
        # words one after another (`pack_codes`), from 0 at layer 0: its address steps when a beat uses it.
        tile, t = Signal(range(max_tiles + 1)), Signal(range(max_chunk + 1))
        last_tile = tile == tiles_of - 1
        addresses = [Signal(range(depth * pack + 1), name=f"address{s}") for s in range(C)]
        issue, issue_drain = Signal(), Signal()
        beat_valid, beat_drain = Signal(), Signal()
        m.d.sync += [beat_valid.eq(issue), beat_drain.eq(issue_drain)]
        restart = Signal()                        # layer 0 is about to run: the banks start again at 0
        begin = Signal()                          # a layer's beats are about to begin
        # Each counter's step and clear share one enable: an enabled synchronous reset (SB_DFFESR), no LUT.
        with m.If(issue | begin):
            m.d.sync += t.eq(Mux(issue_drain | begin, 0, t + 1))
        with m.If(issue_drain | begin):
            m.d.sync += tile.eq(Mux(begin, 0, tile + 1))
        column_codes = []
        for s, read in enumerate(code_reads):
            # A bank word is read at the beat of its first column word and held (en low) through the rest.
            phase = addresses[s][:phase_bits]
            m.d.comb += [read.addr.eq(addresses[s][phase_bits:]), read.en.eq(issue & (phase == 0))]
            with m.If(restart | (issue & ~issue_drain & (~last_tile | last_banks_of[s]))):
                m.d.sync += addresses[s].eq(Mux(restart, 0, addresses[s] + 1))
            if pack > 1:
                lane = Signal(phase_bits, name=f"lane{s}")
                m.d.sync += lane.eq(phase)
                column_codes.append(read.data.word_select(lane, R * fmt.bits))
            else:
                column_codes.append(read.data)
        m.d.comb += [bank_write.addr.eq(bank_entry), bank_write.data.eq(Cat(*[self.a.payload] * R)),
                     bank_write.en.eq(Mux(self.a.valid & self.a.ready, 1 << bank_index, 0)), bank_read.addr.eq(t), bank_read.en.eq(issue)]
        # Outside a beat the PEs skip (add nothing); a drain beat's own code is ignored. A column past the
        # tile's last channel sums what its bank reads, and is never sent.
        drained = Signal()                        # the PEs' sums are a tile's
        m.d.sync += drained.eq(beat_drain)
        for r in range(R):
            for c in range(C):
                pe = pes[r][c]
                m.d.comb += [pe.x_in.eq(bank_read.data[A * r:A * (r + 1)].as_signed()),
                             pe.drain_in.eq(beat_drain), pe.skip_in.eq(~beat_valid),
                             pe.w_in.eq(column_codes[c][fmt.bits * r:fmt.bits * (r + 1)])]

        # Readout: column sums held, then one channel per cycle (plus its bias) into the requantiser.
        held = [Signal(signed(self._acc_bits), name=f"held{c}") for c in range(C)]
        # From a drain beat's issue (when the previous tile's sums have all been sent) until its sums are sent.
        pending = Signal()
        column = Signal(range(C))                 # the held sum sent next (a short tile's start in its first bank)
        in_tile = Signal(range(C + 1))            # the tile's channels not yet sent
        channel = Signal(range(self.channels + 1))  # with constants="rom": its next channel's memory entry
        sums = [adder_tree(m, [pes[r][c].acc for r in range(R)], f"column{c}_sum") for c in range(C)]
        with m.If(drained):
            for c in range(C):
                m.d.sync += held[c].eq(sums[c])
        stage_valid = Signal()
        stage_acc = Signal(signed(self._acc_bits))
        if self._constants == "rom":
            advance = ~requant.i.valid | requant.i.ready
            for port in constants.values():
                m.d.comb += [port.addr.eq(channel), port.en.eq(advance)]
            record = {name: port.data for name, port in constants.items()}
            m.d.comb += requant.i.valid.eq(stage_valid)
        else:
            # The staged channel leaves with its record: both must be there.
            record = {name: self.channel_constants.payload[name] for name in ("bias", "mult", "shift")}
            m.d.comb += [requant.i.valid.eq(stage_valid & self.channel_constants.valid),
                         self.channel_constants.ready.eq(stage_valid & requant.i.ready)]
            advance = ~stage_valid | (self.channel_constants.valid & requant.i.ready)
        m.d.comb += [requant.i.payload.acc.eq(stage_acc + record["bias"]),
                     requant.i.payload.mult.eq(record["mult"]), requant.i.payload.shift.eq(record["shift"])]
        with m.If(advance):
            send = pending & ~beat_drain & ~drained
            m.d.sync += stage_valid.eq(send)
            with m.If(send):
                with m.Switch(column):
                    for c in range(C):
                        with m.Case(c):
                            m.d.sync += stage_acc.eq(held[c])
                m.d.sync += [column.eq(Mux(column == C - 1, 0, column + 1)), in_tile.eq(in_tile - 1)]
                if self._constants == "rom":
                    m.d.sync += channel.eq(channel + 1)
                with m.If(in_tile == 1):
                    m.d.sync += pending.eq(0)

        # Output: saturate to the layer's width, or add into the residual.
        widths = sorted({x.out_bits for x in layers})
        out_width = Array(Const(widths.index(x.out_bits), range(len(widths))) for x in layers)[select]
        narrowed = Signal(signed(self._out_bits))
        m.d.comb += narrowed.eq(requant.o.payload)
        with m.Switch(out_width):
            for index, bits in enumerate(widths):
                with m.Case(index):
                    if bits < self._out_bits:
                        m.d.comb += narrowed.eq(saturate(requant.o.payload, bits))
        m.d.comb += [self.o.valid.eq(requant.o.valid), self.o.payload.eq(narrowed),
                     requant.o.ready.eq(self.o.ready)]
        if self.adds:
            add_of = Array(Const(int(x.add), 1) for x in layers)[select]
            with m.If(add_of):
                both = requant.o.valid & self.x.valid
                m.d.comb += [self.o.valid.eq(both),
                             self.o.payload.eq(saturate(self.x.payload + requant.o.payload, self._res_bits)),
                             requant.o.ready.eq(both & self.o.ready), self.x.ready.eq(both & self.o.ready)]

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += self.a.ready.eq(1)
                with m.If(self.a.valid):
                    m.d.sync += bank_entry.eq(bank_entry + 1)
                    with m.If(bank_entry == chunk_of - 1):
                        m.d.sync += [bank_entry.eq(0), bank_index.eq(bank_index + 1)]
                    with m.If((bank_index == last_bank_of) & (bank_entry == last_entry_of)):
                        m.d.sync += [bank_entry.eq(0), bank_index.eq(0)]
                        m.d.comb += begin.eq(1)
                        with m.If(select == 0):         # the program starts again: so do the banks and channels
                            m.d.comb += restart.eq(1)
                            m.d.sync += channel.eq(0)
                        m.next = "BEATS"
            with m.State("BEATS"):
                with m.If(t != chunk_of):
                    m.d.comb += issue.eq(1)
                with m.Elif(~pending):
                    # The drain beat: the previous tile's sums have all left the held registers.
                    m.d.comb += [issue.eq(1), issue_drain.eq(1)]
                    m.d.sync += [pending.eq(1),
                                 column.eq(Mux(last_tile, last_first_of, 0)),
                                 in_tile.eq(Mux(last_tile, last_channels_of, C))]
                    with m.If(tile == tiles_of - 1):
                        m.next = "FINISH"
            with m.State("FINISH"):
                with m.If(~pending & ~stage_valid):
                    m.next = "LOAD"
        return m
