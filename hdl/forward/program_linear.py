"""Every linear layer of a program on one split-K PoT array: one code memory, channel-indexed requantisers."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from golden.datapath import check_act_bits, pot_acc_bits
from golden.pot_format import PotFormat

from ..pot_pe import PotPE
from ..single_port_memory import SinglePortMemory
from .arith import check_int, saturate
from .requantizer import Requantizer

__all__ = ["LinearLayer", "ProgramLinear", "CODE_STORES", "CONSTANT_SOURCES", "code_words", "column_words", "pack_codes",
           "program_code_banks", "program_layers"]

#: Where `ProgramLinear` keeps its codes: ``"rom"``, memories initialised by the bitstream; ``"loaded"``,
#: single-port memories (iCE40 SPRAM) with no initial contents, written through the ``code_write`` port.
CODE_STORES = ("rom", "loaded")

#: Where `ProgramLinear` gets each channel's bias / mult / shift: ``"rom"``, memories initialised by the
#: bitstream; ``"stream"``, one record per output channel on the ``channel_constants`` port (the core
#: streams them from the SPI flash).
CONSTANT_SOURCES = ("rom", "stream")


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


def column_words(codes, rows, columns, zero_code):
    """The column words of a split-K layer, without the padding of ``N``: ``(words, rows)`` codes.

    Beat ``t`` of tile ``tile`` needs, for each of the tile's columns ``c``
    that holds an output channel (``tile * columns + c < N``), the ``rows``
    codes ``codes[r * chunk + t, tile * columns + c]`` (the zero code past
    ``K``); they come in that order: tile, beat, column. A tile past ``N``'s
    last full one has fewer columns, and nothing is stored for the others.
    """
    k, n = codes.shape
    chunk, tiles = -(-k // rows), -(-n // columns)
    beats = np.asarray(code_words(codes, rows, columns, zero_code)).reshape(tiles, chunk, rows, columns)
    parts = [beats[tile, :, :, :min(columns, n - tile * columns)].transpose(0, 2, 1).reshape(-1, rows)
             for tile in range(tiles)]
    return np.concatenate(parts)


def pack_codes(layers, *, rows, columns, bits, zero_code):
    """Every layer's `column_words`, one after another, dealt to ``columns`` banks of ``rows * bits``-bit words.

    Column word ``i`` of the whole program is word ``i // columns`` of bank
    ``i % columns``, so the ``columns`` words of a beat, ``p .. p + columns - 1``,
    are in ``columns`` different banks (bank ``s`` at address ``p // columns``,
    plus one if ``s < p % columns``). Returns ``(banks, bases)``: an int array
    ``(columns, depth)`` (``depth = ceil(words / columns)``, the last words the
    zero code) and each layer's first column word.
    """
    parts, bases, total = [], [], 0
    for layer in layers:
        words = column_words(np.asarray(layer.codes, np.int64), rows, columns, zero_code)
        bases.append(total)
        total += len(words)
        parts.append(words)
    flat = np.concatenate(parts)
    depth = -(-total // columns)
    padded = np.full((depth * columns, rows), zero_code, np.int64)
    padded[:total] = flat
    packed = sum(padded[:, r].astype(object) << (bits * r) for r in range(rows))
    return np.array(packed, dtype=object).reshape(depth, columns).T, bases


def program_code_banks(compiled, *, rows, columns):
    """The code banks (`pack_codes`) of the `ProgramLinear` of `compiled`'s program on a ``rows x columns``
    array: what a host writes into a board whose codes are loaded (``codes="loaded"``)."""
    fmt = PotFormat(compiled.bits)
    return pack_codes(program_layers(compiled), rows=rows, columns=columns, bits=fmt.bits,
                      zero_code=fmt.zero_code)[0]


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
    from its own bank) with output channel ``tile * columns + c``; every
    beat each PE reads its own code from one word of ``rows * columns``
    codes. A tile is ``chunk_l`` beats and one drain beat; at the drain each
    column's ``rows`` partial sums and the bias are added, held, and sent
    through the `Requantizer` one channel per cycle while the next tile
    accumulates. A layer takes ``K_l`` cycles to load the activations, then
    ``tiles_l * (chunk_l + 1)`` beats and a few cycles of pipeline.

    Memories (the seam where a build places them):

    - ``codes``: ``columns`` banks of ``rows * bits``-bit words side by side
      (`pack_codes`: every layer's codes with no padding of ``N``; a beat reads
      one word of each bank and turns them to its columns), `code_depth` deep:
      initialised memories (``codes="rom"``), or single-port memories with no
      initial contents (``codes="loaded"``: iCE40 SPRAMs, written through
      ``code_write`` with `code_banks` before the first layer runs);
    - ``bias``, ``mult``, ``shift``: one entry per output channel of every
      layer (layer ``l`` from ``channel_base[l]``), `channels` deep, holding
      `channel_records` (``constants="rom"``); with ``constants="stream"``
      there are none, and each channel's record arrives on ``channel_constants``;
    - ``banks``: the ``rows`` activation banks of `max_chunk` entries side by side (one memory: every beat
      reads entry ``t`` of each; a loaded activation writes its bank's lane).

    The layer is chosen by the ``select`` port, held for the whole layer
    (from its first activation to its last output). Outputs are requantised to
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

    Members
    -------
    a : ``In(stream.Signature(signed(act_bits)))``
        The ``K`` activations of the token.
    x : ``In(stream.Signature(signed(res_bits)))``
        Only when a layer adds: the residual row, one value per output.
    o : ``Out(stream.Signature(signed(out_bits)))``
        The ``N`` outputs, in channel order (``out_bits``: the widest layer's, or ``res_bits``).
    select : ``In(range(len(layers)))``
    code_write : ``In(Signature({"en", "bank": range(columns), "addr", "data": rows * bits}))``
        Only with ``codes="loaded"``: word ``addr`` of bank ``bank`` is ``data`` in a cycle with ``en`` high
        (while no layer runs).
    channel_constants : ``In(stream.Signature(StructLayout({"bias": signed(bias_bits), "mult": mult_bits, "shift": 6})))``
        Only with ``constants="stream"``: the `channel_records` of the running layer, one per output channel in
        channel order. A record is taken (ready) only when its channel is about to be requantised; the
        readout stalls while none is valid.
    """

    def __init__(self, *, layers, bits=4, act_bits=8, res_bits=16, rows=4, columns=3, mult_bits=16, codes="rom",
                 constants="rom"):
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
        channel_base = []
        for layer in self._layers:
            self._format.check_codes(layer.codes)
            check_int(f"{layer.name} out_bits", layer.out_bits, 2, 32)
            if layer.mult.min() < 0 or layer.mult.max() >= 1 << mult_bits or layer.shift.min() < 0 \
                    or layer.shift.max() > 62:
                raise ValueError(f"{layer.name}: mult must be {mult_bits}-bit unsigned and shift from 0 to 62")
            channel_base.append(sum(x.n for x in self._layers[:len(channel_base)]))
        self._banks, self._word_base = pack_codes(self._layers, rows=rows, columns=columns, bits=self._format.bits,
                                                  zero_code=self._format.zero_code)
        self._channel_base = channel_base
        self._acc_bits = max(pot_acc_bits(x.k, act_bits, bits, int(np.abs(x.bias).max())) for x in self._layers)
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
        ``bias`` / ``mult`` / ``shift`` memories hold, and what ``channel_constants`` must carry."""
        return [(int(b), int(m), int(s)) for x in self._layers for b, m, s in zip(x.bias, x.mult, x.shift)]

    @property
    def code_bits(self):
        """Bits of one bank word: ``rows * bits`` (one column's codes of a beat)."""
        return self._rows * self._format.bits

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
        """The exact accumulator width of the widest layer (``golden.datapath.pot_acc_bits`` with its bias)."""
        return self._acc_bits

    @property
    def bias_bits(self):
        """Width of the bias memory: the widest bias of any layer (signed), not the accumulator's."""
        largest = max(int(np.abs(x.bias).max()) for x in self._layers)
        return largest.bit_length() + 1

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

        k_of, n_of = table([x.k for x in layers]), table([x.n for x in layers])
        chunk_of = table([self.layer_chunk(i) for i in range(len(layers))])
        tiles_of = table([self.layer_tiles(i) for i in range(len(layers))])
        channel_base_of = table(self._channel_base)
        address_base_of, phase_base_of = table([b // C for b in self._word_base]), table([b % C for b in self._word_base])
        last_columns_of = table([x.n - (self.layer_tiles(i) - 1) * C for i, x in enumerate(layers)])
        max_chunk, max_tiles, max_n = self.max_chunk, max(self.layer_tiles(i) for i in range(len(layers))), \
            max(x.n for x in layers)

        depth, column_bits = self.code_depth, self.code_bits
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
        m.submodules.banks = bank_memory = memory.Memory(shape=A * R, depth=max_chunk, init=[])
        bank_write, bank_read = bank_memory.write_port(granularity=A), bank_memory.read_port()
        constants = {}
        if self._constants == "rom":
            records = self.channel_records()
            for index, (name, shape) in enumerate((("bias", signed(self.bias_bits)), ("mult", self._mult_bits),
                                                    ("shift", 6))):
                rom = memory.Memory(shape=shape, depth=len(records), init=[r[index] for r in records])
                m.submodules[name] = rom
                constants[name] = rom.read_port()
        m.submodules.requantizer = requant = Requantizer(acc_bits=self._acc_bits, mult_bits=self._mult_bits,
                                                         shift_bits=6, out_bits=self._out_bits)
        pes = [[PotPE(act_bits=self._act_bits, bits=fmt.bits, acc_bits=self._acc_bits) for _ in range(C)]
               for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Loading: activation k goes to bank k // chunk, entry k % chunk.
        loaded = Signal(range(max(x.k for x in layers) + 1))
        bank_index, bank_entry = Signal(range(R)), Signal(range(max_chunk))
        # Beats: issue (tile, t) -> code memory and banks answer -> PE inputs.
        tile, t = Signal(range(max_tiles + 1)), Signal(range(max_chunk + 1))
        # The beat's first column word p = C * address + phase: bank s reads address (+ 1 if s < phase).
        address, address1 = Signal(range(depth + 1)), Signal(range(depth + 2))
        phase, beat_phase = Signal(range(C)), Signal(range(C))
        columns_now = Mux(tile == tiles_of - 1, last_columns_of, C)          # columns of this tile
        beat_columns = Signal(range(C + 1))
        issue, issue_drain = Signal(), Signal()
        beat_valid, beat_drain = Signal(), Signal()
        m.d.sync += [beat_valid.eq(issue), beat_drain.eq(issue_drain)]
        for s, read in enumerate(code_reads):
            m.d.comb += [read.addr.eq(Mux(s < phase, address1, address) if s < C - 1 else address), read.en.eq(issue)]
        with m.If(issue & ~issue_drain):
            following = phase + columns_now
            m.d.sync += [beat_phase.eq(phase), beat_columns.eq(columns_now), phase.eq(following)]
            with m.If(following >= C):
                m.d.sync += [phase.eq(following - C), address.eq(address1), address1.eq(address1 + 1)]
        # Column c of the beat is column word p + c: bank (beat_phase + c) mod C.
        column_codes = []
        for c in range(C):
            word = Signal(column_bits, name=f"column_word{c}")
            with m.Switch(beat_phase):
                for ph in range(C):
                    with m.Case(ph):
                        m.d.comb += word.eq(code_reads[(ph + c) % C].data)
            column_codes.append(word)
        m.d.comb += [bank_write.addr.eq(bank_entry), bank_write.data.eq(Cat(*[self.a.payload] * R)),
                     bank_write.en.eq(Mux(self.a.valid & self.a.ready, 1 << bank_index, 0)), bank_read.addr.eq(t)]
        for r in range(R):
            for c in range(C):
                pe = pes[r][c]
                code = column_codes[c][fmt.bits * r:fmt.bits * (r + 1)]
                m.d.comb += [pe.x_in.eq(bank_read.data[A * r:A * (r + 1)].as_signed()), pe.drain_in.eq(beat_drain),
                             pe.w_in.eq(code)]
                with m.If(~beat_valid | beat_drain | (beat_columns <= c)):
                    m.d.comb += pe.w_in.eq(fmt.zero_code)

        # Readout: column sums held, then one channel per cycle (plus its bias) into the requantiser.
        held = [Signal(signed(self._acc_bits), name=f"held{c}") for c in range(C)]
        held_tile = Signal(range(max_tiles))
        draining_tile = Signal(range(max_tiles))
        pending = Signal()                        # held sums not yet all sent
        column = Signal(range(C + 1))
        sent = Signal(range(max_n + 1))
        with m.If(pes[0][0].valid):
            for c in range(C):
                m.d.sync += held[c].eq(sum(pes[r][c].acc for r in range(R)))
            m.d.sync += [pending.eq(1), column.eq(0), held_tile.eq(draining_tile)]
        channel = held_tile * C + column
        stage_valid = Signal()
        stage_acc = Signal(signed(self._acc_bits))
        if self._constants == "rom":
            advance = ~requant.i.valid | requant.i.ready
            for port in constants.values():
                m.d.comb += [port.addr.eq(channel_base_of + channel), port.en.eq(advance)]
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
            send = pending & ~pes[0][0].valid & (channel < n_of)
            m.d.sync += stage_valid.eq(send)
            with m.If(send):
                with m.Switch(column):
                    for c in range(C):
                        with m.Case(c):
                            m.d.sync += stage_acc.eq(held[c])
                m.d.sync += [column.eq(column + 1), sent.eq(sent + 1)]
                with m.If((column == C - 1) | (channel == n_of - 1)):
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
                    m.d.sync += [loaded.eq(loaded + 1), bank_entry.eq(bank_entry + 1)]
                    with m.If(bank_entry == chunk_of - 1):
                        m.d.sync += [bank_entry.eq(0), bank_index.eq(bank_index + 1)]
                    with m.If(loaded == k_of - 1):
                        m.d.sync += [loaded.eq(0), bank_entry.eq(0), bank_index.eq(0), tile.eq(0), t.eq(0),
                                     sent.eq(0), address.eq(address_base_of), address1.eq(address_base_of + 1),
                                     phase.eq(phase_base_of)]
                        m.next = "BEATS"
            with m.State("BEATS"):
                with m.If(t < chunk_of):
                    m.d.comb += issue.eq(1)
                    m.d.sync += t.eq(t + 1)
                with m.Elif(~pending):
                    # The drain beat: the previous tile's sums have all left the held registers.
                    m.d.comb += [issue.eq(1), issue_drain.eq(1)]
                    m.d.sync += [t.eq(0), tile.eq(tile + 1), draining_tile.eq(tile)]
                    with m.If(tile == tiles_of - 1):
                        m.next = "FINISH"
            with m.State("FINISH"):
                with m.If((sent == n_of) & ~stage_valid):
                    m.next = "LOAD"
        return m
