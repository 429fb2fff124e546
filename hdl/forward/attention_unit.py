# amaranth: UnusedElaboratable=no
"""Causal softmax attention of one position's query on the on-chip KV cache, head by head."""

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits

from ..single_port_memory import SinglePortMemory
from .arith import check_int, round_shift
from .exp2_unit import Exp2Unit
from .handshake import call_states
from .reciprocal_unit import ReciprocalUnit
from .requantizer import Requantizer

__all__ = ["AttentionUnit"]


class AttentionUnit(wiring.Component):
    """``golden.int_ops.attention`` for one new position (batch-1 decode), with the KV cache of every layer.

    ``kv`` appends the new position's keys and values (``d`` pairs, channel
    order, two cycles a pair) to layer ``layer``'s cache at ``position``; ``q`` then brings the
    ``d`` query values and the unit answers ``d`` outputs in channel order.
    Per head ``h`` (``hd = d / n_head`` channels), for the keys
    ``j = 0 .. position``:

    1. scores ``s_j = q . k_j``: one product per cycle, ``(position + 1) * hd``
       cycles, into a score memory, keeping the largest;
    2. ``z_j = round_shift((max - s_j) * score_mult, score_shift)``,
       ``e_j = exp2(z_j)`` (`Exp2Unit`) into a memory, ``E = sum e_j``;
    3. ``(R, sh) = reciprocal(E, recip_bits)`` (`ReciprocalUnit`);
    4. per channel ``i``: ``acc_i = sum_j e_j v_ji`` (``position + 1`` cycles),
       ``a_i = round_shift(acc_i * R, sh - avg_frac_bits)`` and
       ``y_i = requantize(a_i, out_mult, out_shift, act_bits)`` (`Requantizer`).

    With ``lanes`` channels per cycle (a power of two dividing ``hd``) the
    cache, the query and the value accumulators are ``lanes`` wide: a score
    takes ``hd / lanes`` cycles of ``lanes`` products, and the values
    ``lanes`` channels at once (``lanes`` multipliers, shared by the two
    phases; the mean and the requantiser stay one channel per cycle). So a
    head costs about ``(position + 1) (2 hd / lanes + 1)`` cycles and
    ``2 hd`` of mean and output (`head_cycles`).

    Parameters
    ----------
    d, n_head, n_layer, positions : int
        The model's width, heads, layers and context (the cache holds
        ``n_layer * positions * d`` keys and as many values).
    act_bits : int
        Width of q, k, v and the output (signed).
    table, exp_frac_bits, exp_bits : the artefact's ``exp2.lut`` and its format.
    recip_bits, avg_frac_bits, mult_bits : int
        ``IntFormats`` fields.
    lanes : int
        Channels per cycle: a power of two dividing ``d / n_head``.

    Members
    -------
    kv : ``In(stream.Signature(StructLayout({"k", "v"})))``
    q : ``In(stream.Signature(signed(act_bits)))``
    o : ``Out(stream.Signature(signed(act_bits)))``
    layer : ``In(range(n_layer))``, position : ``In(range(positions))``
    score_mult, out_mult : ``In(mult_bits)``; score_shift, out_shift : ``In(6)``
        The layer's compiled ``attn.score`` and ``attn.out`` requantisers.
    """

    def __init__(self, *, d, n_head, n_layer, positions, act_bits=8, table, exp_frac_bits=8, exp_bits=16,
                 recip_bits=16, avg_frac_bits=8, mult_bits=16, lanes=1):
        self._d = check_int("d", d, 1, 4096)
        self._n_head = check_int("n_head", n_head, 1, d)
        if d % n_head:
            raise ValueError(f"d ({d}) must be a multiple of n_head ({n_head})")
        self._lanes = check_int("lanes", lanes, 1, d // n_head)
        if lanes & (lanes - 1) or (d // n_head) % lanes:
            raise ValueError(f"lanes must be a power of two dividing the head dimension {d // n_head}, not {lanes}")
        self._n_layer = check_int("n_layer", n_layer, 1, 256)
        self._positions = check_int("positions", positions, 1, 1 << 16)
        self._act_bits = check_act_bits(act_bits)
        self._recip_bits = check_int("recip_bits", recip_bits, 3, 32)
        self._avg_frac_bits = check_int("avg_frac_bits", avg_frac_bits, 0, 16)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 24)
        self._exp_args = dict(table=table, frac_bits=exp_frac_bits, exp_bits=exp_bits,
                              z_bits=self.score_bits + 1 + mult_bits)
        Exp2Unit(**self._exp_args)                             # validates the table now
        self._exp_bits = exp_bits
        kv = data.StructLayout({"k": signed(act_bits), "v": signed(act_bits)})
        super().__init__({
            "kv": In(stream.Signature(kv)),
            "q": In(stream.Signature(signed(act_bits))),
            "o": Out(stream.Signature(signed(act_bits))),
            "layer": In(range(n_layer)),
            "position": In(range(positions)),
            "score_mult": In(mult_bits), "score_shift": In(6),
            "out_mult": In(mult_bits), "out_shift": In(6),
        })

    @property
    def head_dim(self):
        return self._d // self._n_head

    @property
    def lanes(self):
        return self._lanes

    @property
    def score_bits(self):
        """Signed width of a score ``q . k``: ``2 act_bits + ceil(log2 hd)``."""
        return 2 * self._act_bits + (self.head_dim - 1).bit_length()

    @property
    def sum_bits(self):
        """Unsigned width of ``E``: ``exp_bits + ceil(log2 positions)``."""
        return self._exp_bits + (self._positions - 1).bit_length()

    @property
    def mean_bits(self):
        """Signed width of the weighted mean ``a``: ``act_bits + avg_frac_bits + 1``."""
        return self._act_bits + self._avg_frac_bits + 1

    @property
    def cache_bits(self):
        """Bits of the KV cache: ``2 n_layer positions d act_bits``."""
        return 2 * self._n_layer * self._positions * self._d * self._act_bits

    def head_cycles(self, position):
        """Cycles of one head at `position` with no stalls (scores, exps, reciprocal at most, values, outputs)."""
        keys, groups = position + 1, self.head_dim // self._lanes
        return keys * groups + keys + 6 + (self.sum_bits + self._recip_bits + 2) + groups * (keys + 4) \
            + 2 * self.head_dim

    @property
    def memories(self):
        """``[(name, width, depth)]``: the KV cache (``keys``, ``values``), ``query``, ``scores``, ``weights``, ``exp2``."""
        L, A, P = self._lanes, self._act_bits, self._positions
        cache = self._n_layer * P * self._d // L
        return [("kv_cache", L * A, 2 * cache), ("query", L * A, self._d // L),
                ("scores", self.score_bits, P), ("weights", self._exp_bits, P),
                ("exp2", self._exp_bits, len(self._exp_args["table"]))]

    def elaborate(self, platform):
        m = Module()
        d, hd, A, P, L = self._d, self.head_dim, self._act_bits, self._positions, self._lanes
        words, groups, lane_bits = d // L, hd // L, (L - 1).bit_length()
        m.submodules.exp2 = exp2 = Exp2Unit(**self._exp_args)
        m.submodules.reciprocal = recip_unit = ReciprocalUnit(value_bits=self.sum_bits, bits=self._recip_bits)
        m.submodules.requantizer = requant = Requantizer(acc_bits=self.mean_bits, mult_bits=self._mult_bits,
                                                         shift_bits=6, out_bits=A)
        wiring.connect(m, requant.o, wiring.flipped(self.o))
        # The KV cache: one memory, its write and read ports on one address and never used in the same
        # cycle (so a single-port RAM, an iCE40 SPRAM, can hold it); row (layer, j): the key's words, then
        # the value's.
        m.submodules.cache = cache = SinglePortMemory(shape=L * A, depth=2 * self._n_layer * P * words)
        m.submodules.query = query = memory.Memory(shape=L * A, depth=words, init=[])
        m.submodules.scores = scores = memory.Memory(shape=signed(self.score_bits), depth=P, init=[])
        m.submodules.weights = weights = memory.Memory(shape=self._exp_bits, depth=P, init=[])
        cache_write, cache_read = cache.write_port(granularity=A), cache.read_port()
        q_write, q_read = query.write_port(granularity=A), query.read_port()
        s_write, s_read = scores.write_port(), scores.read_port()
        e_write, e_read = weights.write_port(), weights.read_port()

        def lane(word, index):
            return word[index * A:(index + 1) * A].as_signed()

        head = Signal(range(self._n_head + 1))
        group = Signal(range(groups + 1))                 # channels group * L .. of the head
        key = Signal(range(P + 1))                        # j, issued
        index = Signal(range(d + 1))                      # kv / q load counter
        row = (self.layer * P + key) * 2 * words          # cache word of (layer, j, key channel 0)
        second = Signal()                                 # loading: the value of the pair (the key went first)
        issuing = Signal()
        # Issue stage -> data stage (memories answer) -> accumulate stage.
        b_valid, b_last, b_key = Signal(), Signal(), Signal(range(P))
        c_valid, c_last, c_key = Signal(), Signal(), Signal(range(P))
        products = [Signal(signed(max(2 * A, self._exp_bits + A + 1)), name=f"product{i}") for i in range(L)]
        accs = [Signal(signed(self.sum_bits + A + 1), name=f"acc{i}") for i in range(L)]
        top = Signal(signed(self.score_bits))
        total = Signal(self.sum_bits)
        exps = Signal(range(P + 1))
        recip = Signal(self._recip_bits)
        shift = Signal(recip_unit.shift_bits)
        mean = Signal(signed(self.mean_bits))
        out_lane = Signal(range(L + 1))
        z = Signal(exp2.z_bits)
        z_valid = Signal()
        values_phase = Signal()

        load_word = index[lane_bits:]
        load_lane = 1 << index[:lane_bits] if L > 1 else 1
        cache_word = (self.layer * P + self.position) * 2 * words + Mux(second, words, 0) + load_word
        # One address for both ports (the load's in IDLE, the reads' otherwise): a single-port RAM's pattern.
        cache_address = Signal(range(2 * self._n_layer * P * words))
        loading = Signal()
        m.d.comb += [cache_address.eq(Mux(loading, cache_word,
                                          row + Mux(values_phase, words, 0) + head * groups + group)),
                     cache_write.addr.eq(cache_address), cache_read.addr.eq(cache_address),
                     cache_write.data.eq(Cat(*[Mux(second, self.kv.payload.v, self.kv.payload.k)] * L)),
                     q_write.addr.eq(load_word), q_write.data.eq(Cat(*[self.q.payload] * L)),
                     s_read.addr.eq(key), e_read.addr.eq(key),
                     exp2.i.valid.eq(z_valid), exp2.i.payload.eq(z), exp2.o.ready.eq(1),
                     e_write.addr.eq(exps), e_write.data.eq(exp2.o.payload), e_write.en.eq(exp2.o.valid),
                     requant.i.payload.acc.eq(mean), requant.i.payload.mult.eq(self.out_mult),
                     requant.i.payload.shift.eq(self.out_shift)]
        m.d.sync += [b_valid.eq(issuing), b_key.eq(key), c_valid.eq(b_valid), c_last.eq(b_last), c_key.eq(b_key)]
        # One multiplier per lane, shared: q . k in the scores, e * v in the values.
        weight = Cat(e_read.data, 0).as_signed()
        for i in range(L):
            m.d.sync += products[i].eq(Mux(values_phase, weight, lane(q_read.data, i)) * lane(cache_read.data, i))
        with m.If(exp2.o.valid):
            m.d.sync += [total.eq(total + exp2.o.payload), exps.eq(exps + 1)]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.kv.ready.eq(second), self.q.ready.eq(~self.kv.valid), loading.eq(1),
                             cache_write.en.eq(Mux(self.kv.valid, load_lane, 0)),
                             q_write.en.eq(Mux(self.q.valid & ~self.kv.valid, load_lane, 0))]
                with m.If(self.kv.valid):
                    m.d.sync += second.eq(~second)
                with m.If((self.kv.valid & second) | (self.q.valid & ~self.kv.valid)):
                    m.d.sync += index.eq(Mux(index == d - 1, 0, index + 1))
                with m.If(self.q.valid & ~self.kv.valid & (index == d - 1)):
                    m.d.sync += [head.eq(0), key.eq(0), group.eq(0)] + [acc.eq(0) for acc in accs]
                    m.next = "SCORES"
            with m.State("SCORES"):                        # s_j = sum_i q_i k_ji, i inner, L at a time
                m.d.comb += [issuing.eq(key <= self.position), q_read.addr.eq(head * groups + group)]
                m.d.sync += b_last.eq(group == groups - 1)
                with m.If(issuing):
                    m.d.sync += [group.eq(Mux(group == groups - 1, 0, group + 1)),
                                 key.eq(Mux(group == groups - 1, key + 1, key))]
                with m.If(c_valid):
                    summed = accs[0] + sum(products)
                    m.d.sync += accs[0].eq(Mux(c_last, 0, summed))
                    m.d.comb += [s_write.addr.eq(c_key), s_write.data.eq(summed), s_write.en.eq(c_last)]
                    with m.If(c_last & ((c_key == 0) | (summed > top))):
                        m.d.sync += top.eq(summed)
                    with m.If(c_last & (c_key == self.position)):
                        m.d.sync += [key.eq(0), total.eq(0), exps.eq(0)]
                        m.next = "EXPS"
            with m.State("EXPS"):                          # e_j = exp2(round_shift((top - s_j) * score_mult, ...))
                m.d.comb += issuing.eq(key <= self.position)
                with m.If(issuing):
                    m.d.sync += key.eq(key + 1)
                gap = ((top - s_read.data).as_unsigned() * self.score_mult).as_signed()
                m.d.sync += [z_valid.eq(b_valid), z.eq(round_shift(gap, self.score_shift))]
                with m.If(exp2.o.valid & (exps == self.position)):
                    m.next = "RECIPROCAL"
            call_states(m, "RECIPROCAL", recip_unit, total,
                        lambda result: [recip.eq(result.recip), shift.eq(result.shift), key.eq(0), group.eq(0),
                                        values_phase.eq(1)] + [acc.eq(0) for acc in accs],
                        after="VALUES")
            with m.State("VALUES"):                        # acc_i = sum_j e_j v_ji, j inner, L channels at once
                m.d.comb += issuing.eq(key <= self.position)
                m.d.sync += b_last.eq(key == self.position)
                with m.If(issuing):
                    m.d.sync += key.eq(key + 1)
                with m.If(c_valid):
                    m.d.sync += [acc.eq(acc + product) for acc, product in zip(accs, products)]
                    with m.If(c_last):
                        m.d.sync += out_lane.eq(0)
                        m.next = "MEAN"
            with m.State("MEAN"):
                m.d.sync += mean.eq(round_shift(Array(accs)[out_lane] * recip,
                                                (shift - self._avg_frac_bits)[:len(shift)]))
                m.next = "PUSH"
            with m.State("PUSH"):
                m.d.comb += requant.i.valid.eq(1)
                with m.If(requant.i.ready):
                    m.d.sync += out_lane.eq(out_lane + 1)
                    m.next = "MEAN"
                    with m.If(out_lane == L - 1):
                        m.d.sync += [key.eq(0), group.eq(group + 1)] + [acc.eq(0) for acc in accs]
                        m.next = "VALUES"
                        with m.If(group == groups - 1):
                            m.d.sync += [group.eq(0), head.eq(head + 1), values_phase.eq(0)]
                            m.next = "SCORES"
                            with m.If(head == self._n_head - 1):
                                m.next = "IDLE"
        return m
