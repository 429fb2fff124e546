# amaranth: UnusedElaboratable=no
"""The whole GPT-2 forward of a compiled integer model, one token at a time, with the sampler: a token in, a token out."""

from amaranth import Array, Cat, Const, Module, Mux, ResetInserter, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from ..read_port import NO_COLLISIONS, ReadPort
from .arith import check_int, row_address
from .embedding_unit import EmbeddingUnit
from .gelu_table import GeluTable
from .head_unit import head_for, head_tied
from .prefetch_fifo import PrefetchFIFO
from .program_linear import ProgramLinear, program_layers
from .units import FLASH_NORM_SERIAL_SHIFT_BITS, attention_for, layer_norm_for, sampler_for

__all__ = ["ForwardCore", "core_steps", "CONSTANT_SOURCES", "NORM", "LINEAR", "ATTENTION", "HEAD"]

#: Where `ForwardCore` keeps the layer norms' gains and biases, the linear layers' bias / mult / shift and the
#: wpe rows with their requantisers: ``"rom"``, block RAM initialised by the bitstream; ``"flash"``, read as a
#: byte stream (`ForwardCore.constant_image`) from the board's SPI flash.
CONSTANT_SOURCES = ("rom", "flash")

#: Step kinds of the core's program table.
NORM, LINEAR, ATTENTION, HEAD = range(4)


def core_steps(compiled):
    """The program of `compiled` as the core runs it: ``[{"kind", "index", "gelu"}]``, one per step after ``embed``.

    ``index`` is the layer norm's (NORM: position among the program's layer
    norms), the linear layer's (LINEAR: among its linear ops), the attention's
    layer (ATTENTION); ``gelu`` is the GELU table's layer fused behind a
    linear layer (the program's ``gelu`` op follows its ``linear`` to "act"),
    or None. The last two steps are ``ln_f`` and the head. Raises ValueError
    for a program of another shape.
    """
    program = compiled.program
    if not program or program[0]["op"] != "embed" or program[-1]["op"] != "head" \
            or program[-2]["op"] != "layer_norm":
        raise ValueError("the forward core runs programs of embed, layers, a final layer norm and a head")
    steps, norms, linears, gelus = [], 0, 0, 0
    for op in program[1:]:
        kind = op["op"]
        if kind == "layer_norm":
            steps.append({"kind": NORM, "index": norms, "name": op["name"], "gelu": None})
            norms += 1
        elif kind == "linear":
            steps.append({"kind": LINEAR, "index": linears, "name": op["name"], "gelu": None})
            linears += 1
        elif kind == "attention":
            steps.append({"kind": ATTENTION, "index": int(op["layer"]), "name": op["name"], "gelu": None})
        elif kind == "gelu":
            before = steps[-1] if steps else None
            if before is None or before["kind"] != LINEAR or \
                    next(o for o in program if o.get("name") == before["name"])["to"] != "act":
                raise ValueError(f"gelu {op['name']!r} must follow a linear layer to activations")
            before["gelu"] = gelus
            gelus += 1
        elif kind == "head":
            steps.append({"kind": HEAD, "index": 0, "name": "head", "gelu": None})
        else:
            raise ValueError(f"unknown operation {kind!r} in the compiled program")
    return steps


def fold_program(steps, layers, d, n_layer):
    """The program table of `steps` (`core_steps`) as the core holds it, folded by layer.

    Every layer runs the same steps, so each field of the table is a small
    table of ``slot``: the step's place in its layer (``sub``, below
    ``period``) and, in the slot's top bit, whether it is one of the tail's
    (``ln_f``, the head: their ``sub`` 0, 1, .. with the layer counter at
    ``n_layer``). A unit's index (a layer norm's, the linear layer's the step
    selects, the GELU table's, the attention's layer) is the layer times that
    kind's count per layer plus a table's offset: wiring when the count is a
    power of two. On the iCE40 each table bit is one LUT4 of the 4-bit slot
    (the default model: 7 steps a layer), where one of the 30 steps was up to
    three.

    `layers`: the linear layers (`ProgramLinear.layers`: ``n``, ``k``, ``add``).
    Returns ``(period, sub_bits, tables, strides)``: ``tables`` maps each
    field (``kind``, ``n``, ``k``, ``feeds``, ``feeds_head``, ``preloaded``,
    ``add``, ``has_gelu``, and the offsets ``norm``, ``select``, ``gelu``,
    ``attention``) to its ``2 << sub_bits`` values, ``strides`` each offset's
    count per layer. Raises ValueError when the layers' steps differ.
    """
    body = len(steps) - 2
    if n_layer < 1 or body % n_layer:
        raise ValueError(f"{body} steps do not split into {n_layer} layers")
    period = body // n_layer
    # A layer norm or attention whose output is the next linear layer's (or the head's) whole input streams
    # it straight into that unit too, which then needs no load from the activation buffer.
    feeds = [s["kind"] in (NORM, ATTENTION) and i + 1 < len(steps) and
             ((steps[i + 1]["kind"] == LINEAR and layers[steps[i + 1]["index"]].k == d) or
              (steps[i + 1]["kind"] == HEAD and s["kind"] == NORM)) for i, s in enumerate(steps)]
    linear = [s["kind"] == LINEAR for s in steps]
    fields = {
        "kind": [s["kind"] for s in steps],
        "n": [layers[s["index"]].n if linear[i] else d for i, s in enumerate(steps)],
        "k": [layers[s["index"]].k if linear[i] else d for i, s in enumerate(steps)],
        "feeds": feeds,
        "feeds_head": [f and steps[i + 1]["kind"] == HEAD for i, f in enumerate(feeds)],
        "preloaded": [i > 0 and feeds[i - 1] for i in range(len(steps))],
        "add": [linear[i] and layers[s["index"]].add for i, s in enumerate(steps)],
        "has_gelu": [s["gelu"] is not None for s in steps],
        # indices: None where the step does not use them
        "norm": [s["index"] if s["kind"] == NORM else None for s in steps],
        "select": [s["index"] if linear[i] else steps[i + 1]["index"] if feeds[i] and linear[i + 1] else None
                   for i, s in enumerate(steps)],
        "gelu": [s["gelu"] for s in steps],
        "attention": [s["index"] if s["kind"] == ATTENTION else None for s in steps],
    }
    first = steps[:period]
    strides = {"norm": sum(s["kind"] == NORM for s in first), "select": sum(linear[:period]),
               "gelu": sum(s["gelu"] is not None for s in first), "attention": 1}
    sub_bits = (max(period, len(steps) - body) - 1).bit_length()
    tables = {}
    for name, values in fields.items():
        slots = [None] * (2 << sub_bits)
        for i, value in enumerate(values):
            if value is None:
                continue
            layer, sub = divmod(i, period) if i < body else (n_layer, i - body)
            value = int(value) - layer * strides.get(name, 0)
            slot = sub | (layer == n_layer) << sub_bits
            if value < 0 or slots[slot] not in (None, value):
                raise ValueError(f"the forward core runs programs whose layers have the same steps "
                                 f"({steps[i]['name']!r} differs)")
            slots[slot] = value
        tables[name] = [0 if v is None else v for v in slots]
    return period, sub_bits, tables, strides


def _unit_memory(name, unit):
    """The core's name of attention unit `unit`'s memory `name`: ``kv_cache``, ``attention_query``, .. (+ unit)."""
    return (name if name == "kv_cache" else "attention_" + name) + (str(unit) if unit else "")


class ForwardCore(wiring.Component):
    """`golden.int_forward.IntegerForward.generate` in hardware: prompt ids in, sampled token ids out.

    A sequencer steps through the compiled program (`core_steps`: a table
    built here from ``compiled.program``) for one position at a time:
    ``embed`` (`EmbeddingUnit`) into the residual memory; per layer ``ln_1``
    (`LayerNormUnit`), ``c_attn`` (`ProgramLinear`, the split-K PoT array
    shared by every linear layer) into the activation buffer, ``attention``
    (`AttentionUnit`: the new keys and values into the KV cache, then the
    query), ``c_proj`` added into the residual, ``ln_2``, ``c_fc`` through the
    layer's GELU table (`GeluTable`), ``c_proj`` added into the residual;
    then, when the position's logits are wanted (the last prompt position and
    every generated one), ``ln_f``, the head (`HeadUnit`) and the `Sampler`.
    Every unit is a stream; memories feed them through small readers and
    their outputs are written back through writers, one value per cycle, one
    unit at a time.

    Memories (`memories` lists them as ``(name, width, depth)``; a build
    places them: the codes and the KV cache belong in iCE40 SPRAM, the rest
    in EBR):

    - ``residual``: ``d`` x ``res_bits``; ``activations``: ``max(3 d, N)`` x
      ``act_bits`` (two read ports: keys and values leave together);
    - ``ln_gamma``, ``ln_beta``: every layer norm's gains and biases, ``(2 n_layer + 1) d``;
    - the linear engine's ``codes`` (every layer's code words),
      ``bias`` / ``mult`` / ``shift`` (every output channel) and its
      ``rows`` activation banks;
    - the attention's ``kv_cache`` (``2 n_layer context d`` values, ``lanes``
      per word; one write and one read port, never in the same cycle, so one
      single-port SPRAM holds it), ``query``, ``scores``, ``weights``;
    - the embedding's ``wte`` table and requantisers, its ``wpe`` terms (only
      ``context`` rows); the head's table, requantisers and banks; the GELU
      tables (``n_layer 2**act_bits``); the sampler's logits and weights; two
      exp2 tables;
    - with ``constants="flash"``: none of the layer norms' or linear layers'
      constants or the wpe terms, and the ``constant_prefetch`` buffer.

    Parameters
    ----------
    compiled : golden.compile.CompiledModel
        Integer tables (``tables="int"``, ``head="int"``).
    context : int
        Positions of the KV cache and of wpe built, 1 to ``n_positions``.
    rows, columns : int
        The PoT array of the linear layers.
    head_lanes : int
        Multipliers of the head.
    attention_lanes : int
        Channels per cycle of the attention (a power of two dividing the head dimension; clipped to it).
    attention_units : int
        `AttentionUnit` s working side by side, each on ``n_head / attention_units`` heads with its own
        slice of the KV cache (dividing ``n_head``; 1: the heads one after another).
    codes : str
        The linear engine's code store (`hdl.forward.program_linear.CODE_STORES`): ``"rom"``, initialised
        by the bitstream; ``"loaded"``, written at start through ``code_write`` (iCE40 SPRAM).
    constants : str
        `CONSTANT_SOURCES`: ``"rom"``, the layer norms' gains and biases, the linear layers' bias / mult /
        shift and the wpe rows with their requantisers in block RAM; ``"flash"``, none of them on the chip: the
        core reads `constant_image` (its layout is there) as a byte stream through ``constants_seek`` and
        ``constants``, seeking each position's wpe block, then the records, which a small unpacker assembles
        (one shift register as long as the longest record, each kind's fields wiring) and hands to the step's unit (the layer norm's
        ``affine``, the linear engine's ``channel_constants``); the embedding takes its bytes itself.
    prefetch : int
        With ``constants="flash"``: bytes of the stream buffered ahead of the unpacker (a `PrefetchFIFO` of a
        power of two and its output register; 512: one iCE40 EBR), so the flash reads while the core computes;
        0, none (the stream then stops whenever the core is not taking constants).
    embedding_multiplier : str or None
        The `EmbeddingUnit`'s ``multiplier``; default ``"serial"`` (shift-add, no DSP) with
        ``constants="flash"`` (the iCE40 build, where the stream is slower anyway), else ``"dsp"``.

    Members
    -------
    start : ``In(stream.Signature(StructLayout({"prompt_length", "count", "inv_temperature", "top_k", "seed"})))``
        One generation: the KV cache restarts, the sampler's state is ``seed + 1``.
    prompt : ``In(stream.Signature(range(V)))``
        Exactly ``prompt_length`` ids after ``start``.
    token : ``Out(stream.Signature(range(V)))``
        Exactly ``count`` sampled ids.
    busy : ``Out(1)``
        From ``start`` taken to the last token taken.
    logits : ``Out(wiring.Signature({"valid": Out(1), "payload": Out(signed(logit_bits))}))``
        Observation: each logit as the sampler takes it, a stream without ``ready`` (ignore it or watch
        it; it never stalls the core).
    position : ``Out(range(context))``
        Observation: the position being computed.
    code_write : ``In(ProgramLinear.code_write_signature)``
        Only with ``codes="loaded"``: the linear engine's code banks (`ProgramLinear.code_banks`), written
        while the core is idle.
    constants_seek : ``Out(stream.Signature(24))``
        Only with ``constants="flash"``: a byte address in `constant_image` the reader goes to.
    constants : ``In(stream.Signature(8))``
        Only with ``constants="flash"``: the image's bytes from the last seek taken on, one after another
        (the reader may take any time to the first and between bytes; the core takes them when it needs them).
    """

    def __init__(self, *, compiled, context, rows=4, columns=3, head_lanes=4, attention_lanes=4,
                 attention_units=1, codes="rom", constants="rom", embedding_multiplier=None, prefetch=512):
        c, f, t = compiled.config, compiled.formats, compiled.tensors
        if constants not in CONSTANT_SOURCES:
            raise ValueError(f"constants must be one of {', '.join(CONSTANT_SOURCES)}, not {constants!r}")
        self._constants = constants
        flash = constants == "flash"
        self._prefetch = check_int("prefetch", prefetch, 0) if flash else 0
        if self._prefetch & (self._prefetch - 1):
            raise ValueError(f"prefetch must be 0 or a power of two, not {prefetch}")
        self._compiled = compiled
        self._context = check_int("context", context, 1, c.n_positions)
        attention_lanes = min(check_int("attention_lanes", attention_lanes, 1), c.head_dim)
        self._steps = core_steps(compiled)
        V, d = c.vocab_size, c.n_embd
        self._norm = layer_norm_for(compiled, serial_shift_bits=FLASH_NORM_SERIAL_SHIFT_BITS if flash else 0)
        self._norm_names = [s["name"] for s in self._steps if s["kind"] == NORM]
        # The gains' and biases' memories are as wide as their widest value (the unit's ports are wider).
        self._ln_bits = [max(2, max(int(abs(v)) for n in self._norm_names for v in t[n + suffix]).bit_length() + 1)
                         for suffix in (".gamma", ".beta")]
        self._linear = ProgramLinear(layers=program_layers(compiled), bits=compiled.bits, act_bits=f.act_bits,
                                     res_bits=f.res_bits, rows=rows, columns=columns, mult_bits=f.mult_bits,
                                     codes=codes, constants="stream" if flash else "rom")
        check_int("attention_units", attention_units, 1, c.n_head)
        self._attentions = [attention_for(compiled, positions=context, lanes=attention_lanes,
                                          groups=attention_units) for _ in range(attention_units)]
        if f.tables != "int":
            raise ValueError(f"the forward core reads integer embedding tables, not tables={f.tables!r}")
        # A tied head reads the embedding's wte (held in the head's layout): one table for both.
        self._tied = head_tied(compiled)
        self._embedding = EmbeddingUnit(wte=t["wte.table"], wpe=t["wpe.table"][:context], wte_mult=t["wte.mult"],
                                        wte_shift=t["wte.shift"], wpe_mult=t["wpe.mult"][:context],
                                        wpe_shift=t["wpe.shift"][:context], res_bits=f.res_bits,
                                        lanes=head_lanes if self._tied else None,
                                        wpe_source="stream" if flash else "rom",
                                        multiplier=embedding_multiplier or ("serial" if flash else "dsp"),
                                        split_table=flash and self._tied)
        self._head = head_for(compiled, lanes=head_lanes, shared_table=self._tied)
        gelu_names = [next(s["name"] for s in self._steps if s.get("gelu") == g).rsplit(".", 1)[0]
                      for g in range(sum(s["gelu"] is not None for s in self._steps))]
        self._gelu = GeluTable(table=[t[name + ".gelu"] for name in gelu_names], act_bits=f.act_bits)
        self._sampler = sampler_for(compiled)
        self._program = fold_program(self._steps, self._linear.layers, d, c.n_layer)
        self._act_depth = max([3 * d] + [x.n for x in self._linear.layers] + [x.k for x in self._linear.layers])
        start = data.StructLayout({"prompt_length": range(context + 1), "count": range(context + 1),
                                   "inv_temperature": 16, "top_k": range(V + 1), "seed": 32})
        ports = {
            "start": In(stream.Signature(start)),
            "prompt": In(stream.Signature(range(V))),
            "token": Out(stream.Signature(range(V))),
            "busy": Out(1),
            "logits": Out(wiring.Signature({"valid": Out(1), "payload": Out(signed(f.logit_bits))})),
            "position": Out(range(context)),
        }
        if codes == "loaded":
            ports["code_write"] = In(self._linear.code_write_signature)
        if flash:
            self._record_fields = self._records_layout()
            self._record_bytes = {kind: -(-sum(bits for _, _, bits, _ in fields) // 8)
                                  for kind, fields in self._record_fields.items()}
            self._stride = 1 << (len(self._embedding.wpe_bytes(0)) - 1).bit_length()
            if self.constant_stream_base + self.constant_bytes_per_token > 1 << 24:
                raise ValueError(f"a constant image of {self.constant_stream_base + self.constant_bytes_per_token} "
                                 "bytes does not fit 24-bit flash addresses")
            ports["constants_seek"] = Out(stream.Signature(24))
            ports["constants"] = In(stream.Signature(8))
        super().__init__(ports)

    @property
    def compiled(self):
        return self._compiled

    @property
    def context(self):
        return self._context

    @property
    def vocab_size(self):
        return self._compiled.config.vocab_size

    @property
    def rows(self):
        return self._linear.rows

    @property
    def columns(self):
        return self._linear.columns

    @property
    def head_lanes(self):
        return self._head.lanes

    @property
    def attention_lanes(self):
        return self._attentions[0].lanes

    @property
    def attention_units(self):
        return len(self._attentions)

    @property
    def constant_source(self):
        """Where the layer norms', linear layers' and wpe's constants are: ``"rom"`` or ``"flash"``
        (`CONSTANT_SOURCES`; the ``constants`` port is the stream of them)."""
        return self._constants

    @property
    def constant_stride(self):
        """With ``constants="flash"``: bytes of each position's wpe block in `constant_image` (a power of two)."""
        return self._stride if self._constants == "flash" else None

    @property
    def constant_stream_base(self):
        """With ``constants="flash"``: the address of the per-token records in `constant_image`."""
        return self._context * self._stride if self._constants == "flash" else None

    @property
    def constant_bytes_per_token(self):
        """With ``constants="flash"``: the bytes a position reads (its wpe block without the padding, and every
        record; a prompt position that needs no logits leaves ``ln_f``'s ``d`` records unread)."""
        if self._constants != "flash":
            return None
        return (len(self._embedding.wpe_bytes(0)) + self._record_bytes[NORM] * len(self._norm_names)
                * self._compiled.config.n_embd + self._record_bytes[LINEAR] * self._linear.channels)

    @property
    def constant_seeks_per_token(self):
        """Seeks a position makes with ``constants="flash"``: 2 (its wpe block, then the records)."""
        return 2 if self._constants == "flash" else 0

    def _records_layout(self):
        """Per kind (`NORM`, `LINEAR`), its record's fields ``(name, bit offset, bits, signed)``, packed from bit 0:
        each as narrow as its values (unsigned when none is negative)."""
        t = self._compiled.tensors
        records = self._linear.channel_records()
        columns = {"gamma": [v for n in self._norm_names for v in t[n + ".gamma"]],
                   "beta": [v for n in self._norm_names for v in t[n + ".beta"]],
                   "bias": [r[0] for r in records], "mult": [r[1] for r in records], "shift": [r[2] for r in records]}
        layout = {}
        for kind, names in ((NORM, ("gamma", "beta")), (LINEAR, ("bias", "mult", "shift"))):
            fields, at = [], 0
            for name in names:
                low, high = int(min(columns[name])), int(max(columns[name]))
                negative = low < 0
                bits = max(1, max((-low - 1).bit_length() if negative else 0, high.bit_length()) + negative)
                fields.append((name, at, bits, negative))
                at += bits
            layout[kind] = tuple(fields)
        return layout

    @property
    def constant_record_fields(self):
        """With ``constants="flash"``: ``{"norm": (bytes, ((name, bit offset, bits, signed), ..)), "linear": ..}``:
        each kind's record length and fields in `constant_image`."""
        if self._constants != "flash":
            return None
        return {name: (self._record_bytes[kind], self._record_fields[kind])
                for name, kind in (("norm", NORM), ("linear", LINEAR))}

    def constant_image(self):
        """The constants the core streams with ``constants="flash"``, as `bytes` (address 0 = first byte).

        As a position begins, the core seeks to its wpe block and then to the
        records; it reads each in order:

        - at ``p * constant_stride``, position ``p``'s `EmbeddingUnit.wpe_bytes`:
          its ``d`` requantised wpe terms (`EmbeddingUnit.wpe_terms`, golden's
          ``round_shift(wpe[p] * mult, shift)``, exact: the requantiser is
          applied here, not on the chip), each little-endian two's complement
          in whole bytes, padded with ``0xFF`` (erased flash) to the stride (a
          power of two: the seek address is the position's bits shifted);
        - at ``constant_stream_base`` (``context * constant_stride``), for every
          step of the program (`core_steps`) in order, one record per value the
          step's unit takes: a layer norm's ``d`` records ``(gamma, beta)``, a
          linear layer's ``n`` records ``(bias, mult, shift)``
          (`ProgramLinear.channel_records`, in channel order). A record is a
          little-endian integer of whole bytes, its fields packed from bit 0,
          each as narrow as its values (two's complement where one is
          negative; `constant_record_fields`); each kind's records have their
          own length, and the unpacker's shift register, as long as the longest,
          holds either kind with its fields as wiring (for the default model a
          norm record is 6 bytes, gamma 15 + beta 26 bits, and a linear record
          5, bias 15 + mult 16 + shift 5).

        ``ln_f``'s records come last: a prompt position that needs no logits
        leaves them unread. Raises ValueError with ``constants="rom"``.
        """
        if self._constants != "flash":
            raise ValueError("the core has no constant image with constants='rom'")
        t, fields = self._compiled.tensors, self._record_fields

        def record(kind, values):
            packed = sum((int(v) & ((1 << bits) - 1)) << at for (_, at, bits, _), v in zip(fields[kind], values))
            return packed.to_bytes(self._record_bytes[kind], "little")

        channels = self._linear.channel_records()
        bases = np.cumsum([0] + [x.n for x in self._linear.layers])
        tail = bytearray()
        for step in self._steps:
            if step["kind"] == NORM:
                name = step["name"]
                for gamma, beta in zip(t[name + ".gamma"], t[name + ".beta"]):
                    tail += record(NORM, (gamma, beta))
            elif step["kind"] == LINEAR:
                for values in channels[bases[step["index"]]:bases[step["index"] + 1]]:
                    tail += record(LINEAR, values)
        image = bytearray()
        for position in range(self._context):
            block = self._embedding.wpe_bytes(position)
            image += block + b"\xff" * (self._stride - len(block))
        image += tail
        return bytes(image)

    @property
    def steps(self):
        """The program table (`core_steps`)."""
        return list(self._steps)

    @property
    def linear(self):
        """The `ProgramLinear` engine inside."""
        return self._linear

    @property
    def memories(self):
        """``[(name, width, depth)]`` of every memory of the core (see the class docstring)."""
        c, f = self._compiled.config, self._compiled.formats
        d, V = c.n_embd, c.vocab_size
        n_norm = len(self._norm_names)
        emb = self._embedding
        lut = 1 << f.exp_frac_bits
        norms = [] if self._constants == "flash" else [("ln_gamma", self._ln_bits[0], n_norm * d),
                                                        ("ln_beta", self._ln_bits[1], n_norm * d)]
        return ([("residual", f.res_bits, d), ("activations", f.act_bits, self._act_depth)] + norms
                + [("linear_" + name, width, depth) for name, width, depth in self._linear.memories]
                + [(_unit_memory(name, g), width, depth)
                   for g, unit in enumerate(self._attentions) for name, width, depth in unit.memories]
                # A tied head's table is the embedding's wte: listed once, as the head's (read whole every token).
                + [("head_table" if self._tied and name == "wte" else name, width, depth)
                   for name, width, depth in emb.memories]
                + self._head.memories
                + [("gelu", f.act_bits, self._gelu.n_layer << f.act_bits), ("norm_row", f.res_bits, d),
                   ("sampler_logits", f.logit_bits, V), ("sampler_weights", f.exp_bits, V),
                   ("sampler_exp2", f.exp_bits, lut)]
                + ([("constant_prefetch", 8, self._prefetch)] if self._prefetch else []))

    def elaborate(self, platform):
        m = Module()
        c, f, t = self._compiled.config, self._compiled.formats, self._compiled.tensors
        d = c.n_embd
        m.submodules.norm = norm = self._norm
        m.submodules.linear = linear = self._linear
        if self._linear.codes == "loaded":
            wiring.connect(m, wiring.flipped(self.code_write), linear.code_write)
        attentions = self._attentions
        for g, unit in enumerate(attentions):
            m.submodules[f"attention{g}"] = unit
        G, width = len(attentions), d // len(attentions)
        m.submodules.embedding = embedding = self._embedding
        m.submodules.head = head = self._head
        if self._tied:
            wiring.connect(m, head.table, embedding.wte_read)
        m.submodules.gelu = gelu = self._gelu
        m.submodules.sampler = sampler = self._sampler

        # -- the program table (`fold_program`): the step is (layer, sub), the tables are of (tail, sub) -----
        period, sub_bits, tables, strides = self._program
        sub, layer = Signal(sub_bits), Signal(range(c.n_layer + 1))
        tail = layer == c.n_layer
        slot = Cat(sub, tail)

        def table(name):
            values = tables[name]
            return Array(Const(v, range(min(0, min(values)), max(values) + 2)) for v in values)[slot]

        def indexed(name):
            """The unit index `name` of the step: the layer times its count per layer, plus the table's offset."""
            stride, offsets = strides[name], tables[name]
            if not stride:
                return table(name)
            if stride & (stride - 1) == 0 and max(offsets) < stride:
                return row_address(layer, stride, table(name))
            return layer * stride + table(name)

        kind_of, n_of, k_of = table("kind"), table("n"), table("k")
        feeds_of, feeds_head_of, preloaded_of = table("feeds"), table("feeds_head"), table("preloaded")
        add_of, has_gelu = table("add"), table("has_gelu")
        norm_of, select_of, gelu_of, layer_of = indexed("norm"), indexed("select"), indexed("gelu"), \
            indexed("attention")
        ln_f_step = tail & (sub == 0)

        def norm_constant(suffix):
            values = [int(t[name + suffix]) for name in self._norm_names]
            return Array(Const(v, range(max(values) + 1)) for v in values)[norm_of]

        def layer_constant(suffix):
            values = [int(t[f"h.{i}.attn{suffix}"]) for i in range(c.n_layer)]
            return Array(Const(v, range(max(values) + 1)) for v in values)[layer_of]

        m.d.comb += [norm.eps.eq(norm_constant(".eps")), norm.gamma_shift.eq(norm_constant(".shift")),
                     linear.select.eq(select_of), gelu.layer.eq(gelu_of)]

        # -- memories and their readers / writers ----------------------------------------------
        # No step reads, for data it uses, an address its writer writes in the same cycle (a unit's output comes
        # after the inputs it is made from): no read-during-write logic around the block RAMs (`hdl.read_port`).
        m.submodules.residual = residual = memory.Memory(shape=signed(f.res_bits), depth=d, init=[],
                                                         attrs=NO_COLLISIONS)
        m.submodules.activations = activations = memory.Memory(shape=signed(f.act_bits), depth=self._act_depth,
                                                               init=[], attrs=NO_COLLISIONS)
        x_write, x_read = residual.write_port(), ReadPort(m, residual, "x_read")
        a_write = activations.write_port()
        a_read, a_read2 = ReadPort(m, activations, "a_read"), ReadPort(m, activations, "a_read2")

        def reader(name, ports, depth):
            """A stream of entries ``base + 0 .. count-1`` of `ports` (all at one address, or at ``offset`` past it
            for a ``(port, offset)``): ``start`` latches ``base`` and ``count`` (comb inputs) and restarts it."""
            r = {"start": Signal(name=name + "_start"), "count": Signal(range(depth + 1), name=name + "_count"),
                 "base": Signal(range(depth + 1), name=name + "_base"), "valid": Signal(name=name + "_valid"),
                 "ready": Signal(name=name + "_ready")}
            left, address = Signal(range(depth + 1), name=name + "_left"), Signal(range(depth + 1), name=name + "_addr")
            advance = ~r["valid"] | r["ready"]
            for port in ports:
                port, offset = port if isinstance(port, tuple) else (port, 0)
                m.d.comb += [port.addr.eq(address + offset if offset else address), port.en.eq(advance)]
            with m.If(r["start"]):
                m.d.sync += [address.eq(r["base"]), left.eq(r["count"]), r["valid"].eq(0)]
            with m.Elif(advance):
                m.d.sync += r["valid"].eq(left != 0)
                with m.If(left != 0):
                    m.d.sync += [address.eq(address + 1), left.eq(left - 1)]
            r["done"] = (left == 0) & ~r["valid"]
            return r

        def writer(name, port, depth):
            """Writes a stream to entries ``0, 1, ..`` of `port`; ``written`` counts them since ``start``."""
            w = {"start": Signal(name=name + "_start"), "valid": Signal(name=name + "_valid"),
                 "data": Signal(port.data.shape(), name=name + "_data"),
                 "written": Signal(range(depth + 1), name=name + "_written")}
            m.d.comb += [port.addr.eq(w["written"]), port.data.eq(w["data"]), port.en.eq(w["valid"])]
            with m.If(w["start"]):
                m.d.sync += w["written"].eq(0)
            with m.Elif(w["valid"]):
                m.d.sync += w["written"].eq(w["written"] + 1)
            return w

        source_x = reader("source_x", [x_read], d)
        # The attention's values (act 2d..3d) leave beside its keys (d..2d): the second port reads d further on.
        source_a = reader("source_a", [a_read, (a_read2, d)], self._act_depth)
        flash = self._constants == "flash"
        if flash:
            # The unpacker: a record's bytes shift in from the top of `record`; full after its kind's length, it
            # goes to the step's unit (every kind's fields are wiring from it) and empties when taken. `left`
            # counts the step's records not yet begun, so no byte of the next step's is taken early.
            lengths = self._record_bytes
            top = max(lengths.values())
            record, got = Signal(8 * top), Signal(range(top + 1))
            left = Signal(range(max([d] + [x.n for x in self._linear.layers]) + 1))
            length = Mux(kind_of == NORM, lengths[NORM], lengths[LINEAR])
            full = got == length
            unpacking, record_taken = Signal(), Signal()
            # The prefetch buffer: the stream's bytes are taken while there is room, so the flash keeps reading
            # while the core computes; a seek empties it.
            incoming = self.constants
            if self._prefetch:
                fifo = PrefetchFIFO(width=8, depth=self._prefetch)
                m.submodules.prefetch = ResetInserter(self.constants_seek.valid & self.constants_seek.ready)(fifo)
                wiring.connect(m, wiring.flipped(self.constants), fifo.w)
                incoming = fifo.r
            m.d.comb += [unpacking.eq(~full & ((left != 0) | (got != 0))), incoming.ready.eq(unpacking)]
            with m.If(record_taken):
                m.d.sync += got.eq(0)
            with m.Elif(incoming.valid & unpacking):
                m.d.sync += [record.eq(Cat(record[8:], incoming.payload)), got.eq(got + 1)]
                with m.If(got == 0):
                    m.d.sync += left.eq(left - 1)
            fields = {}
            for kind, layout in self._record_fields.items():
                base = 8 * (top - lengths[kind])
                for name, at, bits, negative in layout:
                    field = record[base + at:base + at + bits]
                    fields[name] = field.as_signed() if negative else field
            channel = linear.channel_constants
            m.d.comb += [norm.affine.payload.gamma.eq(fields["gamma"]), norm.affine.payload.beta.eq(fields["beta"]),
                         channel.payload.bias.eq(fields["bias"]), channel.payload.mult.eq(fields["mult"]),
                         channel.payload.shift.eq(fields["shift"]),
                         embedding.wpe.payload.eq(incoming.payload)]
            with m.If(kind_of == NORM):
                m.d.comb += [norm.affine.valid.eq(full), record_taken.eq(norm.affine.ready & full)]
            with m.Else():
                m.d.comb += [channel.valid.eq(full), record_taken.eq(channel.ready & full)]
        else:
            gamma_values = [int(v) for name in self._norm_names for v in t[name + ".gamma"]]
            beta_values = [int(v) for name in self._norm_names for v in t[name + ".beta"]]
            m.submodules.ln_gamma = gammas = memory.Memory(shape=signed(self._ln_bits[0]), depth=len(gamma_values),
                                                           init=gamma_values)
            m.submodules.ln_beta = betas = memory.Memory(shape=signed(self._ln_bits[1]), depth=len(beta_values),
                                                         init=beta_values)
            gamma_read, beta_read = gammas.read_port(), betas.read_port()
            source_g = reader("source_g", [gamma_read, beta_read], len(gamma_values))
            m.d.comb += [norm.affine.payload.gamma.eq(gamma_read.data), norm.affine.payload.beta.eq(beta_read.data),
                         source_g["count"].eq(d), source_g["base"].eq(norm_of * d),
                         norm.affine.valid.eq(source_g["valid"]), source_g["ready"].eq(norm.affine.ready)]
        sink_x = writer("sink_x", x_write, d)
        sink_a = writer("sink_a", a_write, self._act_depth)
        m.d.comb += [norm.x.payload.eq(x_read.data), linear.x.payload.eq(x_read.data),
                     linear.a.payload.eq(a_read.data),
                     head.a.payload.eq(a_read.data),
                     source_x["count"].eq(d)]

        # head -> sampler (and the observation port)
        wiring.connect(m, head.o, sampler.logits)
        m.d.comb += [self.logits.valid.eq(head.o.valid & head.o.ready), self.logits.payload.eq(head.o.payload)]

        # -- the generation's registers ---------------------------------------------------------
        # Down-counters in place of the lengths: the prompt's ids not yet past (prompt_length - position, down
        # to 0) and the tokens still to make; a comparison with 0 or 1 each, no adder beside them.
        prompt_left = Signal(range(self._context + 1))
        tokens_left = Signal(range(self._context + 1))
        position = Signal(range(self._context))
        current = Signal(range(self.vocab_size))
        inv_temperature, top_k = Signal(16), Signal(range(self.vocab_size + 1))
        m.d.comb += [sampler.inv_temperature.eq(inv_temperature), sampler.top_k.eq(top_k),
                     self.position.eq(position),
                     sampler.seed.payload.eq(self.start.payload.seed + 1),
                     embedding.i.payload.token.eq(current), embedding.i.payload.position.eq(position)]
        wants_logits = prompt_left <= 1                  # position + 1 >= prompt_length

        # The attention units: channel c of k, v, q goes to unit c // width; outputs leave unit by unit.
        group, channel = Signal(range(G)), Signal(range(width))
        out_group, out_channel = Signal(range(G)), Signal(range(width))
        for unit in attentions:
            m.d.comb += [unit.layer.eq(layer_of), unit.position.eq(position),
                         unit.score_mult.eq(layer_constant(".score.mult")),
                         unit.score_shift.eq(layer_constant(".score.shift")),
                         unit.out_mult.eq(layer_constant(".out.mult")),
                         unit.out_shift.eq(layer_constant(".out.shift")),
                         unit.q.payload.eq(a_read.data),
                         unit.kv.payload.k.eq(a_read.data), unit.kv.payload.v.eq(a_read2.data)]

        def count_channel(taken):
            with m.If(taken):
                m.d.sync += channel.eq(channel + 1)
                with m.If(channel == width - 1):
                    m.d.sync += [channel.eq(0), group.eq(Mux(group == G - 1, 0, group + 1))]

        def to_next(valid, payload):
            """Offer an output to the next step's unit too when this step feeds it; the readiness to take it."""
            ready = Signal()
            m.d.comb += ready.eq(1)
            with m.If(feeds_of & feeds_head_of):
                m.d.comb += [head.a.valid.eq(valid), head.a.payload.eq(payload), ready.eq(head.a.ready)]
            with m.Elif(feeds_of):
                m.d.comb += [linear.a.valid.eq(valid), linear.a.payload.eq(payload), ready.eq(linear.a.ready)]
            return ready

        def next_step():
            """The step after this one."""
            with m.If(~tail & (sub == period - 1)):
                m.d.sync += [sub.eq(0), layer.eq(layer + 1)]
            with m.Else():
                m.d.sync += sub.eq(sub + 1)
            m.next = "DISPATCH"

        def next_position():
            m.d.sync += [position.eq(position + 1), prompt_left.eq(prompt_left - (prompt_left != 0)), sub.eq(0),
                         layer.eq(0)]
            m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.start.ready.eq(1), sampler.seed.valid.eq(self.start.valid)]
                with m.If(self.start.valid):
                    p = self.start.payload
                    m.d.sync += [prompt_left.eq(p.prompt_length), tokens_left.eq(p.count),
                                 inv_temperature.eq(p.inv_temperature), top_k.eq(p.top_k), position.eq(0),
                                 sub.eq(0), layer.eq(0)]
                    m.next = "CONSUME"
                    with m.If(p.count != 0):
                        m.next = "FETCH"
            with m.State("CONSUME"):                      # count 0: the prompt is taken and dropped
                m.d.comb += self.prompt.ready.eq(1)
                with m.If(self.prompt.valid):
                    m.d.sync += [position.eq(position + 1), prompt_left.eq(prompt_left - 1)]
                    with m.If(prompt_left == 1):
                        m.next = "IDLE"
            with m.State("FETCH"):                        # the position's token: the prompt's, or the last sampled
                with m.If(prompt_left != 0):                # position < prompt_length
                    m.d.comb += self.prompt.ready.eq(1)
                    with m.If(self.prompt.valid):
                        m.d.sync += current.eq(self.prompt.payload)
                        m.next = "SEEK" if flash else "EMBED"
                with m.Else():
                    m.next = "SEEK" if flash else "EMBED"
            if flash:
                with m.State("SEEK"):                 # the position's wpe block of the constant image
                    m.d.comb += [self.constants_seek.valid.eq(1),
                                 self.constants_seek.payload.eq(position << (self._stride.bit_length() - 1))]
                    with m.If(self.constants_seek.ready):
                        m.next = "EMBED"
                with m.State("SEEK_RECORDS"):         # then the records, from their start
                    m.d.comb += [self.constants_seek.valid.eq(1),
                                 self.constants_seek.payload.eq(self.constant_stream_base)]
                    with m.If(self.constants_seek.ready):
                        m.next = "DISPATCH"
            with m.State("EMBED"):
                m.d.comb += [embedding.i.valid.eq(1), sink_x["start"].eq(1)]
                with m.If(embedding.i.ready):
                    m.next = "EMBED_ROW"
            with m.State("EMBED_ROW"):
                m.d.comb += [embedding.o.ready.eq(1), sink_x["valid"].eq(embedding.o.valid),
                             sink_x["data"].eq(embedding.o.payload)]
                if flash:                             # the wpe row's bytes go to the embedding itself
                    m.d.comb += [embedding.wpe.valid.eq(incoming.valid), incoming.ready.eq(embedding.wpe.ready)]
                with m.If(sink_x["written"] == d):
                    m.next = "SEEK_RECORDS" if flash else "DISPATCH"
            with m.State("DISPATCH"):                     # start the step's readers and writers
                if not flash:
                    m.d.comb += source_g["start"].eq(1)
                m.d.comb += [sink_a["start"].eq(1), sink_x["start"].eq(1), source_x["start"].eq(1),
                             source_a["start"].eq(1),
                             source_a["count"].eq(Mux(preloaded_of, 0, k_of)),
                             source_a["base"].eq(Mux(kind_of == ATTENTION, d, 0))]
                with m.If(ln_f_step & ~wants_logits):
                    next_position()
                with m.Else():
                    if flash:
                        with m.If((kind_of == NORM) | (kind_of == LINEAR)):
                            m.d.sync += left.eq(n_of)          # the step's records
                    with m.Switch(kind_of):
                        with m.Case(NORM):
                            m.next = "NORM"
                        with m.Case(LINEAR):
                            m.next = "LINEAR"
                        with m.Case(ATTENTION):
                            m.next = "KV"
                        with m.Case(HEAD):
                            m.next = "HEAD"
            with m.State("NORM"):
                m.d.comb += [norm.x.valid.eq(source_x["valid"]), source_x["ready"].eq(norm.x.ready),
                             norm.o.ready.eq(to_next(norm.o.valid, norm.o.payload)),
                             sink_a["valid"].eq(norm.o.valid & norm.o.ready), sink_a["data"].eq(norm.o.payload)]
                with m.If(sink_a["written"] == d):
                    next_step()
            with m.State("LINEAR"):
                m.d.comb += [linear.a.valid.eq(source_a["valid"]), source_a["ready"].eq(linear.a.ready)]
                with m.If(add_of):
                    m.d.comb += [linear.x.valid.eq(source_x["valid"]), source_x["ready"].eq(linear.x.ready),
                                 linear.o.ready.eq(1), sink_x["valid"].eq(linear.o.valid),
                                 sink_x["data"].eq(linear.o.payload)]
                    with m.If(sink_x["written"] == n_of):
                        next_step()
                with m.Else():
                    with m.If(has_gelu):
                        m.d.comb += [gelu.i.valid.eq(linear.o.valid), gelu.i.payload.eq(linear.o.payload),
                                     linear.o.ready.eq(gelu.i.ready), gelu.o.ready.eq(1),
                                     sink_a["valid"].eq(gelu.o.valid), sink_a["data"].eq(gelu.o.payload)]
                    with m.Else():
                        m.d.comb += [linear.o.ready.eq(1), sink_a["valid"].eq(linear.o.valid),
                                     sink_a["data"].eq(linear.o.payload)]
                    with m.If(sink_a["written"] == n_of):
                        next_step()
            with m.State("KV"):                           # keys (act d..2d) and values (2d..3d) into the cache
                for g, unit in enumerate(attentions):
                    with m.If(group == g):
                        m.d.comb += [unit.kv.valid.eq(source_a["valid"]), source_a["ready"].eq(unit.kv.ready)]
                count_channel(source_a["valid"] & source_a["ready"])
                with m.If(source_a["done"]):
                    m.d.comb += [source_a["start"].eq(1), source_a["count"].eq(d), source_a["base"].eq(0)]
                    m.next = "QUERY"
            with m.State("QUERY"):
                for g, unit in enumerate(attentions):
                    with m.If(group == g):
                        m.d.comb += [unit.q.valid.eq(source_a["valid"]), source_a["ready"].eq(unit.q.ready)]
                    with m.If(out_group == g):
                        m.d.comb += [unit.o.ready.eq(to_next(unit.o.valid, unit.o.payload)),
                                     sink_a["valid"].eq(unit.o.valid & unit.o.ready),
                                     sink_a["data"].eq(unit.o.payload)]
                count_channel(source_a["valid"] & source_a["ready"])
                with m.If(sink_a["valid"]):
                    m.d.sync += out_channel.eq(out_channel + 1)
                    with m.If(out_channel == width - 1):
                        m.d.sync += [out_channel.eq(0), out_group.eq(Mux(out_group == G - 1, 0, out_group + 1))]
                with m.If(sink_a["written"] == d):
                    next_step()
            with m.State("HEAD"):                         # ln_f's output -> head -> sampler -> token
                m.d.comb += [head.a.valid.eq(source_a["valid"]), source_a["ready"].eq(head.a.ready),
                             self.token.valid.eq(sampler.token.valid), self.token.payload.eq(sampler.token.payload),
                             sampler.token.ready.eq(self.token.ready)]
                with m.If(sampler.token.valid & self.token.ready):
                    m.d.sync += [tokens_left.eq(tokens_left - 1), current.eq(sampler.token.payload)]
                    with m.If(tokens_left == 1):
                        m.next = "IDLE"
                    with m.Else():
                        next_position()
        m.d.comb += self.busy.eq(~self.start.ready)
        return m
