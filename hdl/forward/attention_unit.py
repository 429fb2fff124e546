# amaranth: UnusedElaboratable=no
"""Causal softmax attention of one position's query on the on-chip KV cache, head by head."""

from amaranth import Array, Cat, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits
from golden.int_ops import round_shift

from ..read_port import NO_COLLISIONS, ReadPort
from ..single_port_memory import SinglePortMemory
from .arith import check_int, check_range, row_address, saturate
from .exp2_unit import Exp2Unit
from .handshake import call_states
from .reciprocal_unit import ReciprocalUnit

__all__ = ["AttentionUnit"]


def _check_shifts(name, shifts):
    """`shifts` as a ``(low, high)`` tuple of ints with ``0 <= low <= high <= 63``; else ValueError naming `name`."""
    if (not isinstance(shifts, (tuple, list)) or len(shifts) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) for v in shifts)
            or not 0 <= shifts[0] <= shifts[1] <= 63):
        raise ValueError(f"{name} must be (low, high) with 0 <= low <= high <= 63, not {shifts!r}")
    return tuple(shifts)


class AttentionUnit(wiring.Component):
    """``golden.int_ops.attention`` for one new position (batch-1 decode), with the KV cache of every layer.

    ``kv`` appends the new position's keys and values (``d`` pairs, channel
    order, two cycles a pair) to layer ``layer``'s cache at ``position``; ``q`` then brings the
    ``d`` query values and the unit answers ``d`` outputs in channel order.
    Per head ``h`` (``hd = d / n_head`` channels), for the keys
    ``j = 0 .. position``, with ``lanes`` channels per cycle (a power of two
    dividing ``hd``; the cache, the query and the value accumulators are
    ``lanes`` wide, and ``lanes`` multipliers serve both MACs):

    1. SCORES: ``s_j = q . k_j``, ``hd / lanes`` cycles of ``lanes`` products
       a key, summed by an adder tree with a register every two levels, into
       a score memory, keeping the largest;
    2. VALUES, one pass per group of ``lanes`` channels: ``z_j =
       round_shift((max - s_j) * score_mult, score_shift)``, ``e_j =
       exp2(z_j)`` (`Exp2Unit`) and ``acc_i += e_j v_ji``, one key a cycle:
       the value is read from the cache as ``e_j`` leaves the exp2 unit, so
       no memory holds the weights (a pass recomputes them); the first pass
       also sums ``E = sum e_j``;
    3. ``(R, sh) = reciprocal(E, recip_bits)`` (`ReciprocalUnit`), once;
    4. OUTPUT, after each pass: ``a_i = round_shift(acc_i * R, sh -
       avg_frac_bits)`` and ``y_i = requantize(a_i, out_mult, out_shift,
       act_bits)``, a channel every two cycles.

    Every step is pipelined (a register after each multiplier, shifter and
    adder chain, tags travelling beside the data), for the ECP5's clock.
    ``(max - s_j) * score_mult``, ``acc_i * R`` and ``a_i * out_mult`` share
    one multiplier, shifter and rounding stage (VALUES and OUTPUT never
    overlap), whose shifter covers only the shifts' ranges (``score_shifts``
    and ``out_shifts``, the compiled layers'; `mean_shift_range`, from the
    table and the context). A head takes `head_cycles`: about
    ``(position + 1) (2 hd / lanes)`` cycles and ``2 hd`` more for the
    outputs.

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
    score_shifts, out_shifts : (int, int)
        The least and largest ``score_shift`` / ``out_shift`` the unit is given
        (0 to 63); its shifter covers only these (outside them the result is
        wrong).
    score_mults : (int, int) or None
        The least and largest ``score_mult`` the unit is given (None: any
        ``mult_bits`` value); with `compact` a smaller one gives wrong results.
    compact : bool or None
        One scaling multiplier of ``mean_bits x max(mult_bits, recip_bits)``
        (one iCE40 SB_MAC16 for the default formats) instead of ``acc_bits x
        ..`` (two): score gaps clamped to `gap_bits` (exact when every gap from
        ``2**gap_bits - 1`` up gives ``e = 0`` at the least ``score_mult`` and
        largest ``score_shift``), each mean in two passes (its accumulator's
        low then high bits), about ``2 lanes`` more cycles per group of
        channels. None: compact for up to 4 lanes where it is exact (the
        iCE40's shapes), not for wider units (the ECP5's, left as they were
        timed). True where it is not exact raises ValueError.
    exp2_multiplier : bool or None
        The `Exp2Unit` shifts by a multiplier (one more DSP, about 45 fewer
        iCE40 LUT4) rather than a barrel shifter. None: as `compact`.

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
                 recip_bits=16, avg_frac_bits=8, mult_bits=16, lanes=1, score_shifts=(0, 63),
                 out_shifts=(0, 63), score_mults=None, compact=None, exp2_multiplier=None):
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
        self._score_shifts = _check_shifts("score_shifts", score_shifts)
        self._out_shifts = _check_shifts("out_shifts", out_shifts)
        self._score_mults = check_range("score_mults", (0, (1 << mult_bits) - 1) if score_mults is None
                                        else score_mults, 0, (1 << mult_bits) - 1)
        table = self._exp_args["table"]
        if int(table[0]).bit_length() + recip_bits - 2 < avg_frac_bits:
            raise ValueError(f"the reciprocal's least shift {int(table[0]).bit_length() + recip_bits - 2} is below "
                             f"avg_frac_bits {avg_frac_bits}")
        why = self._not_compact()
        if compact is None:
            compact = lanes <= 4 and why is None
        elif not isinstance(compact, bool):
            raise TypeError(f"compact must be True, False or None, not {compact!r}")
        elif compact and why is not None:
            raise ValueError(f"compact=True needs {why}")
        self._compact = compact
        if exp2_multiplier is not None and not isinstance(exp2_multiplier, bool):
            raise TypeError(f"exp2_multiplier must be True, False or None, not {exp2_multiplier!r}")
        self._exp_args["multiplier"] = compact if exp2_multiplier is None else exp2_multiplier
        if compact:                                            # z of a clamped gap: a narrower exp2 input
            self._exp_args["z_bits"] = max(exp_frac_bits + 1, self.gap_bits + max(mult_bits, recip_bits)
                                           - self._score_shifts[0] + 1)
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
        """Signed width of the weighted mean ``a``: ``act_bits + avg_frac_bits``.

        ``R = floor(2**sh / E)``, so ``E R <= 2**sh`` and ``|acc| <= 2**(act_bits-1) E`` give ``-2**(act_bits-1+
        avg_frac_bits) <= a <= (2**(act_bits-1) - 1) 2**avg_frac_bits``.
        """
        return self._act_bits + self._avg_frac_bits

    @property
    def acc_bits(self):
        """Signed width of a value accumulator ``sum_j e_j v_ji``: ``sum_bits + act_bits + 1``."""
        return self.sum_bits + self._act_bits + 1

    @property
    def score_mults(self):
        """``(low, high)``: the values ``score_mult`` may take (the compiled layers' range)."""
        return self._score_mults

    @property
    def compact(self):
        """Whether the scaling multiplier is ``mean_bits x max(mult_bits, recip_bits)`` (one iCE40 SB_MAC16 for
        16 x 16): gaps clamped to `gap_bits`, each mean in two passes (its accumulator's low, then high bits)."""
        return self._compact

    @property
    def exp2_multiplier(self):
        """Whether the `Exp2Unit` shifts by a multiplier (a DSP) rather than a barrel shifter."""
        return self._exp_args["multiplier"]

    @property
    def gap_bits(self):
        """With `compact`, the unsigned width the score gaps ``max - s_j`` are clamped to: ``mean_bits - 1``."""
        return self.mean_bits - 1

    def _not_compact(self):
        """None if the compact scaling path is exact for this unit, else what it would need."""
        low, high = self._score_mults[0], self._score_shifts[1]
        frac, eb = self._exp_args["frac_bits"], self._exp_bits
        clamp = (1 << self.gap_bits) - 1
        if int(round_shift(clamp * low, high)) >> frac < eb:
            return (f"every score gap of {clamp} or more to give exp2 0 (score_mults from {low}, "
                    f"score_shifts up to {high})")
        if self.acc_bits > 2 * self.mean_bits - 1:
            return f"an accumulator of at most {2 * self.mean_bits - 1} bits, not {self.acc_bits}"
        if self.mean_shift_range[0] <= self.mean_bits - 1:
            return f"a mean shift above {self.mean_bits - 1}, not from {self.mean_shift_range[0]}"
        return None

    @property
    def shift_steps(self):
        """Cycles OUTPUT waits per channel at most for its serial shifts (`compact` only, else 0): the spans of
        `mean_shift_range` and of `out_shifts`, a bit a cycle (a mean's shift depends on its head's ``E``)."""
        if not self._compact:
            return 0
        return sum(high - low for low, high in (self.mean_shift_range, self._out_shifts))

    @property
    def score_shifts(self):
        """``(low, high)``: the values ``score_shift`` may take (the compiled layers' range)."""
        return self._score_shifts

    @property
    def out_shifts(self):
        """``(low, high)``: the values ``out_shift`` may take (the compiled layers' range)."""
        return self._out_shifts

    @property
    def mean_shift_range(self):
        """``(low, high)`` of the mean's shift ``sh - avg_frac_bits``, ``sh = bit_length(E) + recip_bits - 2``.

        The key of the largest score has ``z = 0``, so ``E >= table[0]``; ``E <= positions * max(table)``.
        """
        table, r = self._exp_args["table"], self._recip_bits - 2 - self._avg_frac_bits
        return (int(table[0]).bit_length() + r, (self._positions * int(max(table))).bit_length() + r)

    @property
    def cache_bits(self):
        """Bits of the KV cache: ``2 n_layer positions d act_bits``."""
        return 2 * self._n_layer * self._positions * self._d * self._act_bits

    def head_cycles(self, position):
        """Cycles of one head at `position` with no stalls, the reciprocal at its longest.

        SCORES ``keys * groups`` and the tree's latency, VALUES ``groups (keys + 8)`` (8: the pipeline from
        the score to the accumulators), the reciprocal (``sum_bits + recip_bits + 2`` at most), OUTPUT
        ``groups max(lanes + 8, 2 lanes + 4)`` (a mean and its requantisation, four stages each; `compact`:
        ``groups (2 lanes + 8 + 2 max(0, lanes - 2))``, a mean's two passes, and `shift_steps` for each channel
        at most).
        """
        keys, groups, L = position + 1, self.head_dim // self._lanes, self._lanes
        tree = 0 if L == 1 else ((L - 1).bit_length() + 1) // 2      # adder-tree registers
        output = 2 * L + 8 + 2 * max(0, L - 2) + L * self.shift_steps if self._compact else max(L + 8, 2 * L + 4)
        return keys * groups + 3 + tree + groups * (keys + 8) + (self.sum_bits + self._recip_bits + 2) \
            + groups * output

    @property
    def memories(self):
        """``[(name, width, depth)]``: the KV cache (``keys``, ``values``), ``query``, ``scores``, ``exp2``."""
        L, A, P = self._lanes, self._act_bits, self._positions
        cache = self._n_layer * P * self._d // L
        return [("kv_cache", L * A, 2 * cache), ("query", L * A, self._d // L),
                ("scores", self.score_bits, P),
                ("exp2", self._exp_bits, len(self._exp_args["table"]))]

    def elaborate(self, platform):
        m = Module()
        d, hd, A, P, L = self._d, self.head_dim, self._act_bits, self._positions, self._lanes
        eb = self._exp_bits
        words, groups, lane_bits = d // L, hd // L, (L - 1).bit_length()
        m.submodules.exp2 = exp2 = Exp2Unit(**self._exp_args)
        m.submodules.reciprocal = recip_unit = ReciprocalUnit(value_bits=self.sum_bits, bits=self._recip_bits)
        # The KV cache: one memory, its write and read ports on one address and never used in the same
        # cycle (so a single-port RAM, an iCE40 SPRAM, can hold it); row (layer, j): the key's words, then
        # the value's.
        m.submodules.cache = cache = SinglePortMemory(shape=L * A, depth=2 * self._n_layer * P * words)
        # No read whose data is used meets a write of the same cycle (`ReadPort`): the query is written in IDLE
        # and read in SCORES; the scores are written in SCORES and read in VALUES, which starts after the last
        # score is written (reads in the other states feed no valid tag).
        m.submodules.query = query = memory.Memory(shape=L * A, depth=words, init=[], attrs=NO_COLLISIONS)
        m.submodules.scores = scores = memory.Memory(shape=signed(self.score_bits), depth=P, init=[],
                                                     attrs=NO_COLLISIONS)
        cache_write, cache_read = cache.write_port(granularity=A), cache.read_port()
        q_write, q_read = query.write_port(granularity=A), ReadPort(m, query, "q_read")
        s_write, s_read = scores.write_port(), ReadPort(m, scores, "s_read")

        def lane(word, index):
            return word[index * A:(index + 1) * A].as_signed()

        def register(value, name, shape=None):
            """`value` one cycle later."""
            reg = Signal(shape if shape is not None else value.shape(), name=name)
            m.d.sync += reg.eq(value)
            return reg

        head = Signal(range(self._n_head + 1))
        group = Signal(range(groups + 1))                 # channels group * L .. of the head
        key = Signal(range(P + 1))                        # j, issued
        index = Signal(range(d + 1))                      # kv / q load counter
        second = Signal()                                 # loading: the value of the pair (the key went first)
        loading = Signal()
        values_phase = Signal()                           # VALUES (exps and e v) rather than SCORES (q . k)
        issuing = Signal()

        # Every read is issued with a tag (valid, first and last group of a score, last key, key 0) that travels
        # down the pipeline beside its data: tags[n] is the tag n cycles after the issue. The key itself does not
        # travel: keys reach each point in order, so a counter there names them, `late_key`, at the one keyed
        # point of each phase (SCORES' score write, VALUES' value read), back to 0 after the last key.
        tag = data.StructLayout({"valid": 1, "values": 1, "first": 1, "last": 1, "final": 1, "zero": 1})
        tags = [Signal(tag, name="tag0")]
        m.d.comb += [tags[0].valid.eq(issuing), tags[0].values.eq(values_phase), tags[0].first.eq(group == 0),
                     tags[0].last.eq(group == groups - 1), tags[0].final.eq(key == self.position),
                     tags[0].zero.eq(key == 0)]
        late_key = Signal(range(P))

        def tag_at(n):
            while len(tags) <= n:
                tags.append(register(tags[-1], f"tag{len(tags)}"))
            return tags[n]

        # -- the KV cache's one address: the load's in IDLE; else key j's words of this head's channel group ----
        load_word = index[lane_bits:]
        load_lane = 1 << index[:lane_bits] if L > 1 else 1
        # Addresses as row_address: wiring alone where the sizes are powers of two.
        cache_word = row_address(row_address(self.layer, P, self.position), 2 * words,
                                 row_address(second, words, load_word))
        channel_word = row_address(head, groups, group)             # this head's channel group
        # SCORES reads key j's words as it issues j; VALUES reads value j's words when e_j is one cycle from
        # leaving the exp2 unit (`value_read` cycles after its issue), so both arrive together.
        z_stage = 5                                       # issue, score read, operand, product, shift, rounding
        value_read = z_stage + exp2.latency - 1
        read_key = Mux(values_phase, late_key, key)
        late = tag_at(value_read)
        with m.If(late.valid & late.values):
            m.d.sync += late_key.eq(Mux(late.final, 0, late_key + 1))
        cache_address = Signal(range(2 * self._n_layer * P * words))
        m.d.comb += [cache_address.eq(Mux(loading, cache_word,
                                          row_address(row_address(self.layer, P, read_key), 2 * words,
                                                      row_address(values_phase, words, channel_word)))),
                     cache_write.addr.eq(cache_address), cache_read.addr.eq(cache_address),
                     cache_write.data.eq(Cat(*[Mux(second, self.kv.payload.v, self.kv.payload.k)] * L)),
                     q_write.addr.eq(load_word), q_write.data.eq(Cat(*[self.q.payload] * L)),
                     q_read.addr.eq(channel_word), s_read.addr.eq(key)]

        # -- one multiplier per lane, shared: q_i k_ji in SCORES, e_j v_ji in VALUES ----------------------------
        # Unsigned times signed, no adder (one iCE40 SB_MAC16 per lane for 16-bit weights): e_j as it is, q_i
        # sign-extended to `factor` bits and read unsigned, which adds 2**factor k_ji when q_i < 0 and so leaves
        # the product's low 2 act_bits bits, where q_i k_ji lives, exact.
        factor = max(eb, 2 * A)
        products = []
        for i in range(L):
            # factor + A bits hold every product (|e v| <= 2**22; the unsigned q times k above -2**23); no reset:
            # the DSP's own output register (an iCE40 SB_MAC16 cannot hold a register with a synchronous reset).
            product = Signal(signed(factor + A), name=f"product{i}", reset_less=True)
            value, query_lane = lane(cache_read.data, i), lane(q_read.data, i)
            m.d.sync += product.eq(Mux(values_phase, exp2.o.payload,
                                       Cat(query_lane, query_lane[-1].replicate(factor - A))) * value)
            products.append(product)

        # -- SCORES: s_j = sum_i q_i k_ji (an adder tree, a register every two levels), then the largest ------
        level, depth = [p[:2 * A].as_signed() for p in products], 2
        while len(level) > 1:
            level = [register(sum(level[k:k + 4]), f"partial{depth}_{k // 4}", signed(self.score_bits))
                     for k in range(0, len(level), 4)]
            depth += 1
        psum, at = level[0], tag_at(depth)
        running = Signal(signed(self.score_bits))
        score_next = psum if groups == 1 else Mux(at.first, 0, running) + psum
        score = Signal(signed(self.score_bits))
        m.d.sync += [running.eq(score_next), score.eq(score_next)]
        scored = tag_at(depth + 1)
        score_valid = scored.valid & ~scored.values & scored.last
        top = Signal(signed(self.score_bits))
        m.d.comb += [s_write.addr.eq(late_key), s_write.data.eq(score), s_write.en.eq(score_valid)]
        with m.If(score_valid):
            m.d.sync += late_key.eq(Mux(scored.final, 0, late_key + 1))
        with m.If(score_valid & (scored.zero | (score > top))):
            m.d.sync += top.eq(score)

        # -- one scaling pipeline, shared: VALUES' gaps, OUTPUT's means and their requantisation ----------------
        # z_j = round_shift((top - s_j) * score_mult, score_shift), a_i = round_shift(acc_i R, sh - avg_frac_bits)
        # and y_i = saturate(round_shift(a_i * out_mult, out_shift)) each take four stages: the operand, its
        # product (one multiplier for all), the shift, the rounding (`round_shift` split in two: ((2 x >> shift)
        # + 1) >> 1). A mean goes round twice: it re-enters as the operand of its requantisation, before any new
        # channel. The shift's known least value is a constant shift (wires); only the rest is a barrel shifter,
        # as short as the three ranges allow.
        # Compact (the operand `mean_bits` wide): the gap is clamped to `gap_bits`, and a mean takes two passes,
        # acc = hi 2**k + lo (k = mean_bits - 1, lo unsigned): first lo R, whose bits from k up the next pass
        # adds to hi R, Y = hi R + floor(lo R / 2**k); then a = round_shift(Y, sh - avg_frac_bits - k), exact
        # because the rounding half 2**(sh-avg_frac_bits-1) is a multiple of 2**k.
        compact, k = self._compact, self.mean_bits - 1
        accs = [Signal(signed(self.acc_bits), name=f"acc{i}") for i in range(L)]
        # R and its shift stay on the reciprocal unit's output until the next head's E: read there, not copied.
        recip = recip_unit.o.payload.recip
        mean_low = self.mean_shift_range[0]
        lows = {"gap": self._score_shifts[0], "mean": mean_low - k if compact else mean_low,
                "out": self._out_shifts[0]}
        span = max(high - low for low, high in (self._score_shifts, self.mean_shift_range, self._out_shifts))
        mean_shift = (recip_unit.o.payload.shift - (self._avg_frac_bits + mean_low))[:(span + 1).bit_length()]
        output_phase = Signal()                           # OUTPUT: means and outputs, under back-pressure
        y, y_valid = Signal(signed(A)), Signal()          # the output register
        m.d.comb += [self.o.payload.eq(y), self.o.valid.eq(y_valid)]
        taking = ~y_valid | self.o.ready                  # the output register takes a new value
        # Compact: OUTPUT's variable shifts are serial, a bit a cycle in `shifted` while the pipeline waits
        # (`shifting` steps left); VALUES' gaps, one a cycle, go through a barrel shifter of the score shifts only.
        serial = max(high - low for low, high in (self.mean_shift_range, self._out_shifts)) if compact else 0
        shifting = Signal(range(serial + 1))
        stall = shifting != 0
        step = ~output_phase | (taking & ~stall)          # in VALUES the pipeline never stalls
        out_lane = Signal(range(L + 1))
        pushed = Signal(range(L + 1))
        operand = Signal(signed(self.mean_bits if compact else max(self.score_bits + 2, self.acc_bits,
                                                                   self.mean_bits)))
        scale = Signal(max(self._mult_bits, self._recip_bits))
        variable, variable2 = Signal(range(span + 1)), Signal(range(span + 1))
        scaled = Signal(signed(len(operand) + len(scale) + compact))
        # Compact: every result is narrow (z of a clamped gap, a mean of `mean_bits`, an output of a mean), so
        # the shifter forms only the bits of the widest (its other bits would be copies of the sign).
        narrow = max(self.gap_bits + len(scale) - lows["gap"] + 2, self.mean_bits + 2,
                     self.mean_bits + len(scale) - lows["out"] + 2)
        rounded = Signal(signed(min(narrow, len(scaled) + 1) if compact else len(scaled) + 1))
        shifted = Signal(signed(min(len(rounded) + serial, len(scaled) + 1)))     # `serial` bits more to shift
        # Per stage in OUTPUT: valid and whether it is a requantisation (else a mean).
        valids, outs = [Signal(name=f"scale_valid{n}") for n in range(4)], [Signal(name=f"scale_out{n}")
                                                                            for n in range(4)]
        again = valids[3] & ~outs[3]                      # a mean leaving: its requantisation enters now
        issue_mean = Signal()                             # a mean's (last) pass enters
        high = Signal()                                   # compact: the pass entering is a mean's high bits
        gap = (top - s_read.data).as_unsigned()
        chosen = Array(accs)[out_lane[:max(1, lane_bits)]] if L > 1 else accs[0]
        # A low pass enters only when no requantisation will enter at the next step.
        starts_low = output_phase & (out_lane < L) & ~high & ~again & ~(valids[2] & ~outs[2])

        def pre_shift(x, low):
            """``(2 x) >> low``: the constant part of the shift."""
            return x << 1 if low == 0 else x >> (low - 1)

        with m.If(step):
            with m.If(~output_phase):
                m.d.sync += [operand.eq(Mux(gap[k:].any(), (1 << k) - 1, gap[:k]) if compact else gap),
                             scale.eq(self.score_mult),
                             variable.eq((self.score_shift - lows["gap"])[:len(variable)])]
            with m.Elif(again):
                m.d.sync += [operand.eq(rounded), scale.eq(self.out_mult),
                             variable.eq((self.out_shift - lows["out"])[:len(variable)])]
            with m.Else():
                m.d.sync += [operand.eq(Mux(high, chosen[k:].as_signed(), chosen[:k]) if compact else chosen),
                             scale.eq(recip), variable.eq(mean_shift)]
            presets = Mux(~output_phase, pre_shift(scaled, lows["gap"]),
                          Mux(outs[1], pre_shift(scaled, lows["out"]), pre_shift(scaled, lows["mean"])))
            product = operand * scale
            if compact:                                   # the high pass adds the low pass's floor(lo R / 2**k)
                added = Signal(name="scale_added")
                m.d.sync += added.eq(issue_mean)
                product = product + Mux(added, scaled[k:k + len(scale)], 0)
            if compact:
                gap_bits = (self._score_shifts[1] - self._score_shifts[0]).bit_length()
                gap_shift = presets >> variable2[:gap_bits] if gap_bits else presets
                m.d.sync += [shifted.eq(Mux(output_phase, presets, gap_shift)),
                             shifting.eq(Mux(output_phase & valids[1], variable2, 0))]
            else:
                m.d.sync += shifted.eq(presets >> variable2)
            m.d.sync += [scaled.eq(product), variable2.eq(variable), rounded.eq((shifted + 1) >> 1),
                         valids[0].eq(again | issue_mean), outs[0].eq(again)]
            m.d.sync += [v.eq(p) for v, p in zip(valids[1:], valids)] + [o.eq(p) for o, p in zip(outs[1:], outs)]
            with m.If(issue_mean):
                m.d.sync += out_lane.eq(out_lane + 1)
            if compact:
                with m.If(starts_low):
                    m.d.sync += high.eq(1)
                with m.If(issue_mean):
                    m.d.sync += high.eq(0)
        if compact:
            with m.If(stall):
                m.d.sync += [shifted.eq(shifted >> 1), shifting.eq(shifting - 1)]
        with m.If(taking):
            m.d.sync += [y_valid.eq(output_phase & valids[3] & outs[3] & ~stall), y.eq(saturate(rounded, A))]
        if compact:                                       # a high pass always follows its low pass at once
            m.d.comb += issue_mean.eq(output_phase & high)
        else:
            m.d.comb += issue_mean.eq(output_phase & (out_lane < L) & ~again)
        # VALUES: e_j = exp2(z_j) and acc_i += e_j v_ji.
        total = Signal(self.sum_bits)
        m.d.comb += [exp2.i.valid.eq(tag_at(z_stage).valid & tag_at(z_stage).values), exp2.i.payload.eq(rounded),
                     exp2.o.ready.eq(1)]
        # The accumulators start over at key 0 (a clear folded into their adders, not a state's reset).
        with m.If(exp2.o.valid & (group == 0)):
            m.d.sync += total.eq(total + exp2.o.payload)
        summed = tag_at(value_read + 2)
        with m.If(summed.valid & summed.values):
            m.d.sync += [acc.eq(Mux(summed.zero, 0, acc) + product) for acc, product in zip(accs, products)]

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
                    m.d.sync += [head.eq(0), key.eq(0), group.eq(0), values_phase.eq(0)]
                    m.next = "SCORES"
            with m.State("SCORES"):                        # s_j = sum_i q_i k_ji, i inner, L at a time
                m.d.comb += issuing.eq(key <= self.position)
                with m.If(issuing):
                    m.d.sync += [group.eq(Mux(group == groups - 1, 0, group + 1)),
                                 key.eq(Mux(group == groups - 1, key + 1, key))]
                with m.If(score_valid & scored.final):
                    m.d.sync += [key.eq(0), total.eq(0), values_phase.eq(1)]
                    m.next = "VALUES"
            with m.State("VALUES"):                        # e_j and acc_i = sum_j e_j v_ji, L channels at once
                m.d.comb += issuing.eq(key <= self.position)
                with m.If(issuing):
                    m.d.sync += key.eq(key + 1)
                with m.If(summed.valid & summed.values & summed.final):
                    m.d.sync += [out_lane.eq(0), pushed.eq(0), output_phase.eq(group != 0)]
                    m.next = "OUTPUT"
                    with m.If(group == 0):
                        m.next = "RECIPROCAL"
            call_states(m, "RECIPROCAL", recip_unit, total,
                        lambda result: [output_phase.eq(1)],
                        after="OUTPUT")
            with m.State("OUTPUT"):                        # L means, each requantised, into the output register
                with m.If(taking & ~stall & valids[3] & outs[3]):
                    m.d.sync += pushed.eq(pushed + 1)
                    with m.If(pushed == L - 1):
                        m.d.sync += [key.eq(0), output_phase.eq(0)]
                        m.next = "VALUES"
                        with m.If(group == groups - 1):
                            m.d.sync += [head.eq(head + 1), values_phase.eq(0)]
                            m.next = "SCORES"
                            with m.If(head == self._n_head - 1):
                                m.next = "IDLE"
                        with m.If(group == groups - 1):
                            m.d.sync += group.eq(0)
                        with m.Else():
                            m.d.sync += group.eq(group + 1)
        return m
