# amaranth: UnusedElaboratable=no
"""The whole GPT-2 forward of a compiled integer model, one token at a time, with the sampler: a token in, a token out."""

from amaranth import Array, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from .arith import check_int
from .attention_unit import AttentionUnit
from .embedding_unit import EmbeddingUnit
from .gelu_table import GeluTable
from .head_unit import head_for
from .program_linear import ProgramLinear, program_layers
from .units import layer_norm_for, sampler_for

__all__ = ["ForwardCore", "core_steps"]

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
    - the attention's ``keys`` and ``values`` (``n_layer context d`` each: the
      KV cache), ``query``, ``scores``, ``weights``;
    - the embedding's ``wte`` / ``wpe`` tables (wpe only ``context`` rows)
      and requantisers; the head's table, requantisers and banks; the GELU
      tables (``n_layer 2**act_bits``); the sampler's logits and weights; two
      exp2 tables.

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
    logits : ``Out(stream.Signature(signed(logit_bits), always_ready=True))``
        Observation: each logit as the sampler takes it (ignore it or watch it; it never stalls the core).
    position : ``Out(range(context))``
        Observation: the position being computed.
    """

    def __init__(self, *, compiled, context, rows=4, columns=3, head_lanes=4):
        c, f, t = compiled.config, compiled.formats, compiled.tensors
        self._compiled = compiled
        self._context = check_int("context", context, 1, c.n_positions)
        self._steps = core_steps(compiled)
        V, d = c.vocab_size, c.n_embd
        self._norm = layer_norm_for(compiled)
        self._norm_names = [s["name"] for s in self._steps if s["kind"] == NORM]
        self._linear = ProgramLinear(layers=program_layers(compiled), bits=compiled.bits, act_bits=f.act_bits,
                                     res_bits=f.res_bits, rows=rows, columns=columns, mult_bits=f.mult_bits)
        self._attention = AttentionUnit(d=d, n_head=c.n_head, n_layer=c.n_layer, positions=context,
                                        act_bits=f.act_bits, table=t["exp2.lut"], exp_frac_bits=f.exp_frac_bits,
                                        exp_bits=f.exp_bits, recip_bits=f.recip_bits,
                                        avg_frac_bits=f.avg_frac_bits, mult_bits=f.mult_bits)
        if f.tables != "int":
            raise ValueError(f"the forward core reads integer embedding tables, not tables={f.tables!r}")
        self._embedding = EmbeddingUnit(wte=t["wte.table"], wpe=t["wpe.table"][:context], wte_mult=t["wte.mult"],
                                        wte_shift=t["wte.shift"], wpe_mult=t["wpe.mult"][:context],
                                        wpe_shift=t["wpe.shift"][:context], res_bits=f.res_bits)
        self._head = head_for(compiled, lanes=head_lanes)
        gelu_names = [next(s["name"] for s in self._steps if s.get("gelu") == g).rsplit(".", 1)[0]
                      for g in range(sum(s["gelu"] is not None for s in self._steps))]
        self._gelu = GeluTable(table=[t[name + ".gelu"] for name in gelu_names], act_bits=f.act_bits)
        self._sampler = sampler_for(compiled)
        self._act_depth = max([3 * d] + [x.n for x in self._linear.layers] + [x.k for x in self._linear.layers])
        start = data.StructLayout({"prompt_length": range(context + 1), "count": range(context + 1),
                                   "inv_temperature": 16, "top_k": range(V + 1), "seed": 32})
        super().__init__({
            "start": In(stream.Signature(start)),
            "prompt": In(stream.Signature(range(V))),
            "token": Out(stream.Signature(range(V))),
            "busy": Out(1),
            "logits": Out(stream.Signature(signed(f.logit_bits), always_ready=True)),
            "position": Out(range(context)),
        })

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
        d, V, P, L = c.n_embd, c.vocab_size, self._context, c.n_layer
        a = self._attention
        n_norm = len(self._norm_names)
        emb = self._embedding
        lut = 1 << f.exp_frac_bits
        return ([("residual", f.res_bits, d), ("activations", f.act_bits, self._act_depth),
                 ("ln_gamma", len(self._norm.affine.payload.gamma), n_norm * d),
                 ("ln_beta", len(self._norm.affine.payload.beta), n_norm * d)]
                + [("linear_" + name, width, depth) for name, width, depth in self._linear.memories]
                + [("kv_keys", f.act_bits, L * P * d), ("kv_values", f.act_bits, L * P * d),
                   ("attention_query", f.act_bits, d), ("attention_scores", a.score_bits, P),
                   ("attention_weights", f.exp_bits, P), ("attention_exp2", f.exp_bits, lut)]
                + [("wte", f.table_bits, V * d), ("wte_mult", f.mult_bits, V), ("wte_shift", 6, V),
                   ("wpe", f.table_bits, emb.positions * d), ("wpe_mult", f.mult_bits, P), ("wpe_shift", 6, P)]
                + self._head.memories
                + [("gelu", f.act_bits, self._gelu.n_layer << f.act_bits), ("norm_row", f.res_bits, d),
                   ("sampler_logits", f.logit_bits, V), ("sampler_weights", f.exp_bits, V),
                   ("sampler_exp2", f.exp_bits, lut)])

    def elaborate(self, platform):
        m = Module()
        c, f, t = self._compiled.config, self._compiled.formats, self._compiled.tensors
        d, steps = c.n_embd, self._steps
        m.submodules.norm = norm = self._norm
        m.submodules.linear = linear = self._linear
        m.submodules.attention = attention = self._attention
        m.submodules.embedding = embedding = self._embedding
        m.submodules.head = head = self._head
        m.submodules.gelu = gelu = self._gelu
        m.submodules.sampler = sampler = self._sampler

        # -- the program table ------------------------------------------------------------------
        step = Signal(range(len(steps)))

        def table(values, shape=None):
            values = [int(v) for v in values]
            shape = shape or range(min(0, min(values)), max(values) + 2)
            return Array(Const(v, shape) for v in values)[step]

        kind_of = table([s["kind"] for s in steps])
        index_of = table([s["index"] for s in steps])
        gelu_of = table([-1 if s["gelu"] is None else s["gelu"] for s in steps])
        layers = program_layers(self._compiled)
        n_of = table([layers[s["index"]].n if s["kind"] == LINEAR else d for s in steps])
        k_of = table([layers[s["index"]].k if s["kind"] == LINEAR else d for s in steps])
        add_of = table([s["kind"] == LINEAR and layers[s["index"]].add for s in steps])
        ln_f_step = len(steps) - 2

        def norm_constant(suffix):
            values = [int(t[name + suffix]) for name in self._norm_names]
            return Array(Const(v, range(max(values) + 1)) for v in values)[index_of]

        def layer_constant(suffix):
            values = [int(t[f"h.{i}.attn{suffix}"]) for i in range(c.n_layer)]
            return Array(Const(v, range(max(values) + 1)) for v in values)[index_of]

        m.d.comb += [norm.eps.eq(norm_constant(".eps")), norm.gamma_shift.eq(norm_constant(".shift")),
                     linear.select.eq(index_of), gelu.layer.eq(gelu_of),
                     attention.layer.eq(index_of),
                     attention.score_mult.eq(layer_constant(".score.mult")),
                     attention.score_shift.eq(layer_constant(".score.shift")),
                     attention.out_mult.eq(layer_constant(".out.mult")),
                     attention.out_shift.eq(layer_constant(".out.shift")),
                     sampler.logit_mult.eq(int(t["sampler.logit.mult"])),
                     sampler.logit_shift.eq(int(t["sampler.logit.shift"]))]

        # -- memories and their readers / writers ----------------------------------------------
        m.submodules.residual = residual = memory.Memory(shape=signed(f.res_bits), depth=d, init=[])
        m.submodules.activations = activations = memory.Memory(shape=signed(f.act_bits), depth=self._act_depth,
                                                               init=[])
        gamma_values = [int(v) for name in self._norm_names for v in t[name + ".gamma"]]
        beta_values = [int(v) for name in self._norm_names for v in t[name + ".beta"]]
        m.submodules.ln_gamma = gammas = memory.Memory(shape=norm.affine.payload.gamma.shape(),
                                                       depth=len(gamma_values), init=gamma_values)
        m.submodules.ln_beta = betas = memory.Memory(shape=norm.affine.payload.beta.shape(),
                                                     depth=len(beta_values), init=beta_values)
        x_write, x_read = residual.write_port(), residual.read_port()
        a_write, a_read, a_read2 = activations.write_port(), activations.read_port(), activations.read_port()
        gamma_read, beta_read = gammas.read_port(), betas.read_port()

        def reader(name, ports, depth):
            """A stream of entries ``base + 0 .. count-1`` of `ports` (all at one address): ``start`` latches
            ``base`` and ``count`` (comb inputs) and restarts it."""
            r = {"start": Signal(name=name + "_start"), "count": Signal(range(depth + 1), name=name + "_count"),
                 "base": Signal(range(depth + 1), name=name + "_base"), "valid": Signal(name=name + "_valid"),
                 "ready": Signal(name=name + "_ready")}
            left, address = Signal(range(depth + 1), name=name + "_left"), Signal(range(depth + 1), name=name + "_addr")
            advance = ~r["valid"] | r["ready"]
            for port in ports:
                m.d.comb += [port.addr.eq(address), port.en.eq(advance)]
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
        source_a = reader("source_a", [a_read], self._act_depth)
        source_g = reader("source_g", [gamma_read, beta_read], len(gamma_values))
        kv = reader("source_kv", [a_read2], self._act_depth)        # values, beside source_a's keys
        sink_x = writer("sink_x", x_write, d)
        sink_a = writer("sink_a", a_write, self._act_depth)
        m.d.comb += [norm.x.payload.eq(x_read.data), linear.x.payload.eq(x_read.data),
                     norm.affine.payload.gamma.eq(gamma_read.data), norm.affine.payload.beta.eq(beta_read.data),
                     linear.a.payload.eq(a_read.data), attention.q.payload.eq(a_read.data),
                     head.a.payload.eq(a_read.data),
                     attention.kv.payload.k.eq(a_read.data), attention.kv.payload.v.eq(a_read2.data),
                     source_g["count"].eq(d), source_g["base"].eq(index_of * d),
                     norm.affine.valid.eq(source_g["valid"]), source_g["ready"].eq(norm.affine.ready),
                     source_x["count"].eq(d), kv["count"].eq(d), kv["base"].eq(2 * d)]

        # head -> sampler (and the observation port)
        wiring.connect(m, head.o, sampler.logits)
        m.d.comb += [self.logits.valid.eq(head.o.valid & head.o.ready), self.logits.payload.eq(head.o.payload)]

        # -- the generation's registers ---------------------------------------------------------
        prompt_length = Signal(range(self._context + 1))
        count = Signal(range(self._context + 1))
        made = Signal(range(self._context + 1))
        position = Signal(range(self._context))
        current = Signal(range(self.vocab_size))
        inv_temperature, top_k = Signal(16), Signal(range(self.vocab_size + 1))
        m.d.comb += [sampler.inv_temperature.eq(inv_temperature), sampler.top_k.eq(top_k),
                     attention.position.eq(position), self.position.eq(position),
                     sampler.seed.payload.eq(self.start.payload.seed + 1),
                     embedding.i.payload.token.eq(current), embedding.i.payload.position.eq(position)]
        wants_logits = position + 1 >= prompt_length

        def next_step():
            """The step after this one."""
            m.d.sync += step.eq(step + 1)
            m.next = "DISPATCH"

        def next_position():
            m.d.sync += [position.eq(position + 1), step.eq(0)]
            m.next = "FETCH"

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.start.ready.eq(1), sampler.seed.valid.eq(self.start.valid)]
                with m.If(self.start.valid):
                    p = self.start.payload
                    m.d.sync += [prompt_length.eq(p.prompt_length), count.eq(p.count), made.eq(0),
                                 inv_temperature.eq(p.inv_temperature), top_k.eq(p.top_k), position.eq(0),
                                 step.eq(0)]
                    m.next = "CONSUME"
                    with m.If(p.count != 0):
                        m.next = "FETCH"
            with m.State("CONSUME"):                      # count 0: the prompt is taken and dropped
                m.d.comb += self.prompt.ready.eq(1)
                with m.If(self.prompt.valid):
                    m.d.sync += position.eq(position + 1)
                    with m.If(position + 1 == prompt_length):
                        m.next = "IDLE"
            with m.State("FETCH"):                        # the position's token: the prompt's, or the last sampled
                with m.If(position < prompt_length):
                    m.d.comb += self.prompt.ready.eq(1)
                    with m.If(self.prompt.valid):
                        m.d.sync += current.eq(self.prompt.payload)
                        m.next = "EMBED"
                with m.Else():
                    m.next = "EMBED"
            with m.State("EMBED"):
                m.d.comb += [embedding.i.valid.eq(1), sink_x["start"].eq(1)]
                with m.If(embedding.i.ready):
                    m.next = "EMBED_ROW"
            with m.State("EMBED_ROW"):
                m.d.comb += [embedding.o.ready.eq(1), sink_x["valid"].eq(embedding.o.valid),
                             sink_x["data"].eq(embedding.o.payload)]
                with m.If(sink_x["written"] == d):
                    m.next = "DISPATCH"
            with m.State("DISPATCH"):                     # start the step's readers and writers
                m.d.comb += [sink_a["start"].eq(1), sink_x["start"].eq(1), source_x["start"].eq(1),
                             source_a["start"].eq(1), source_g["start"].eq(1), kv["start"].eq(1),
                             source_a["count"].eq(k_of),
                             source_a["base"].eq(Mux(kind_of == ATTENTION, d, 0))]
                with m.If((step == ln_f_step) & ~wants_logits):
                    next_position()
                with m.Else():
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
                             norm.o.ready.eq(1), sink_a["valid"].eq(norm.o.valid), sink_a["data"].eq(norm.o.payload)]
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
                    with m.If(gelu_of >= 0):
                        m.d.comb += [gelu.i.valid.eq(linear.o.valid), gelu.i.payload.eq(linear.o.payload),
                                     linear.o.ready.eq(gelu.i.ready), gelu.o.ready.eq(1),
                                     sink_a["valid"].eq(gelu.o.valid), sink_a["data"].eq(gelu.o.payload)]
                    with m.Else():
                        m.d.comb += [linear.o.ready.eq(1), sink_a["valid"].eq(linear.o.valid),
                                     sink_a["data"].eq(linear.o.payload)]
                    with m.If(sink_a["written"] == n_of):
                        next_step()
            with m.State("KV"):                           # keys (act d..2d) and values (2d..3d) into the cache
                m.d.comb += [attention.kv.valid.eq(source_a["valid"]), source_a["ready"].eq(attention.kv.ready),
                             kv["ready"].eq(attention.kv.ready)]
                with m.If(source_a["done"]):
                    m.d.comb += [source_a["start"].eq(1), source_a["count"].eq(d), source_a["base"].eq(0)]
                    m.next = "QUERY"
            with m.State("QUERY"):
                m.d.comb += [attention.q.valid.eq(source_a["valid"]), source_a["ready"].eq(attention.q.ready),
                             attention.o.ready.eq(1), sink_a["valid"].eq(attention.o.valid),
                             sink_a["data"].eq(attention.o.payload)]
                with m.If(sink_a["written"] == d):
                    next_step()
            with m.State("HEAD"):                         # ln_f's output -> head -> sampler -> token
                m.d.comb += [head.a.valid.eq(source_a["valid"]), source_a["ready"].eq(head.a.ready),
                             self.token.valid.eq(sampler.token.valid), self.token.payload.eq(sampler.token.payload),
                             sampler.token.ready.eq(self.token.ready)]
                with m.If(sampler.token.valid & self.token.ready):
                    m.d.sync += [made.eq(made + 1), current.eq(sampler.token.payload)]
                    with m.If(made + 1 == count):
                        m.next = "IDLE"
                    with m.Else():
                        next_position()
        m.d.comb += self.busy.eq(~self.start.ready)
        return m
