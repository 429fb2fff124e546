# amaranth: UnusedElaboratable=no
"""The next token from the head's integer logits: greedy, or temperature / top-k sampling with xorshift32."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import at_least, check_int
from ..read_port import NO_COLLISIONS, ReadPort
from .serial_xorshift32 import SerialXorshift32

__all__ = ["Sampler"]

#: Bits of ``logit_mult``: the serial product ``p * logit_mult`` takes one step per bit.
MULT_BITS = 16


class Sampler(wiring.Component):
    """``golden.int_ops.sample``, token for token and state for state, on one adder and one multiplier.

    The ``V`` logits arrive as a stream and are stored (one memory; their
    weights get another, read at the same address). A first pass over them
    finds their largest value ``m`` and its first index, on the subtractor
    that later makes the gaps (no comparator). Greedy (``inv_temperature ==
    0``) answers that index and leaves the generator untouched. Otherwise, by
    further passes over the stored logits:

    - top-k (``top_k < V``): each logit's key is ``(l, V-1-v)`` (logit, then
      the lower index first: golden's stable sort), all keys distinct; the
      ``k``-th largest key ``T`` is found bit by bit, one pass of one key a
      cycle per key bit (``logit_bits + ceil(log2 V)`` passes), with a
      counter down from ``k`` and no key comparator: each key's standing
      against ``T``'s bits so far (above, or equal with its last bit) rides
      in the weight memory, three bits a key, rewritten as the pass reads
      it; the members are the keys ``>= T``, read off that standing (with
      ``top_k >= V`` every logit is one, and no pass runs);
    - weights, one logit at a time: the gap ``m - l`` times
      ``inv_temperature`` on the one multiplier (``logit_bits x 16``: one
      SB_MAC16), then ``z = round_shift(p * logit_mult, logit_shift + 8)``
      by a serial multiply, one bit of the constant ``logit_mult`` a step,
      least significant first, into an accumulator that starts at the
      rounding half and halves every step (the dropped bits never reach the
      floor); ``w = exp2(z)``: the table read at ``z mod 2**f``, then shifted
      right one place a cycle, ``z >> f`` times, under the next logit's
      multiply (0 for a non-member, or from a shift of ``exp_bits`` on), and
      stored;
    - one pass sums the weights to ``W``;
    - ``r = (u * W) >> 32`` by a 32-step serial multiply on the same
      accumulator, ``u``'s bits least significant first from the generator
      (`SerialXorshift32`, which steps while the sampler is busy elsewhere);
    - one pass adds the weights to ``-r - 1``, to the first token whose
      running sum exceeds ``r`` (where the sum's sign clears).

    The wide logic is the one adder of the serial multiplies, the weights'
    adder and the gaps' subtractor: each
    carry chain is one register-to-register path, and there is no exp2
    barrel shifter, no XOR network of the generator's state and no bit
    selection from it.

    A token takes ``V + 2`` cycles after the last logit for the largest; a
    sampled one then ``(logit_bits + ceil(log2 V)) (V + 1)`` cycles of top-k
    search, 21 a member and 2 a non-member for
    the weights (a non-member after a member waits for its weight's shift),
    and at most ``2 V + 40`` for the sum, the draw and the search
    (``benchmarks/bench_sampler.py``).

    Parameters
    ----------
    vocab_size : int
        ``V``, 2 to 65536.
    logit_bits : int
        Width of the signed logits, 2 to 24.
    table : sequence of int
        The artefact's ``exp2.lut``.
    exp_frac_bits, exp_bits : int
        Its format (``IntFormats``); ``V * 2**(exp_bits-1)`` must stay below ``2**32``.
    logit_mult, logit_shift : int
        The artefact's ``sampler.logit`` requantiser (``0 <= logit_mult < 2**16``, ``0 <= logit_shift <= 54``).

    Members
    -------
    logits : ``In(stream.Signature(signed(logit_bits)))``
        The ``V`` logits of one position.
    seed : ``In(stream.Signature(32))``
        Loads the generator's state (``golden.int_ops.seed_state(seed)``).
    token : ``Out(stream.Signature(range(V)))``
    inv_temperature : ``In(16)``
        ``round(256 / T)``; 0 is greedy. Held while a token is sampled.
    top_k : ``In(range(V + 1))``
        ``V`` (or more) samples among all tokens. Held while a token is sampled.
    """

    def __init__(self, *, vocab_size, logit_bits=16, table, exp_frac_bits=8, exp_bits=16, logit_mult,
                 logit_shift):
        self._vocab_size = check_int("vocab_size", vocab_size, 2, 1 << 16)
        self._logit_bits = check_int("logit_bits", logit_bits, 2, 24)
        self._logit_mult = check_int("logit_mult", logit_mult, 0, (1 << MULT_BITS) - 1)
        self._logit_shift = check_int("logit_shift", logit_shift, 0, 54)
        self._frac_bits = check_int("exp_frac_bits", exp_frac_bits, 1, 12)
        self._exp_bits = check_int("exp_bits", exp_bits, 2, 32)
        self._table = tuple(int(v) for v in table)
        if len(self._table) != 1 << exp_frac_bits:
            raise ValueError(f"table must have {1 << exp_frac_bits} entries for exp_frac_bits {exp_frac_bits}, "
                             f"not {len(self._table)}")
        bad = [v for v in self._table if not 0 <= v < 1 << exp_bits]
        if bad:
            raise ValueError(f"table entry {bad[0]} does not fit {exp_bits} unsigned bits")
        if vocab_size << (exp_bits - 1) >= 1 << 32:
            raise ValueError(f"{vocab_size} weights of {exp_bits} bits may sum past 32 bits")
        super().__init__({
            "logits": In(stream.Signature(signed(logit_bits))),
            "seed": In(stream.Signature(32)),
            "token": Out(stream.Signature(range(vocab_size))),
            "inv_temperature": In(16),
            "top_k": In(range(vocab_size + 1)),
        })

    @property
    def vocab_size(self):
        return self._vocab_size

    @property
    def logit_bits(self):
        return self._logit_bits

    @property
    def logit_mult(self):
        return self._logit_mult

    @property
    def logit_shift(self):
        return self._logit_shift

    @property
    def clamp(self):
        """The smallest ``z`` whose weight (like any above it) is 0: ``exp_bits * 2**exp_frac_bits``."""
        return self._exp_bits << self._frac_bits

    @property
    def total_bits(self):
        """Width of ``W``: ``V`` weights below ``2**exp_bits`` each."""
        return (self._vocab_size * ((1 << self._exp_bits) - 1)).bit_length()

    @property
    def key_bits(self):
        """Width of a top-k key: the logit, then the index's complement."""
        return self._logit_bits + self._index_bits

    @property
    def memories(self):
        """``[(name, width, depth)]``: the logits, their weights and the exp2 table."""
        return [("sampler_logits", self._logit_bits, self._vocab_size),
                ("sampler_weights", max(self._exp_bits, 3), self._vocab_size),
                ("sampler_exp2", self._exp_bits, 1 << self._frac_bits)]

    @property
    def _index_bits(self):
        return (self._vocab_size - 1).bit_length()

    def elaborate(self, platform):
        m = Module()
        V, L, E, F = self._vocab_size, self._logit_bits, self._exp_bits, self._frac_bits
        I, K = self._index_bits, self.key_bits
        m.submodules.generator = generator = SerialXorshift32()
        wiring.connect(m, wiring.flipped(self.seed), generator.seed)
        # Two memories, read at one address: a shared one would need a multiplexer on its write data. Neither is
        # read where it is written in the same cycle, or the word so read is not used (the logits are read after
        # the last is written; a weight or a key's standing is written at an index the passes have left behind):
        # no read-during-write logic.
        m.submodules.logit_memory = logit_memory = memory.Memory(shape=signed(L), depth=V, init=[],
                                                                 attrs=NO_COLLISIONS)
        m.submodules.weight_memory = weight_memory = memory.Memory(shape=max(E, 3), depth=V, init=[],
                                                                   attrs=NO_COLLISIONS)
        logit_write, logit_read = logit_memory.write_port(), ReadPort(m, logit_memory, "logit_read")
        weight_write = weight_memory.write_port()
        weight_read = ReadPort(m, weight_memory, "weight_read")

        # Passes over the stored rows: `advance` reads row idx (and steps idx); its data is there one cycle later,
        # at rd_index (rd_valid).
        idx = Signal(range(V + 1))
        advance = Signal()
        rd_valid = Signal()
        rd_index = Signal(range(V))
        m.d.comb += [logit_read.addr.eq(idx), weight_read.addr.eq(idx)]
        reading = advance & (idx != V)                          # idx runs 0 .. V: no comparator
        m.d.sync += rd_valid.eq(reading)
        with m.If(reading):
            m.d.sync += [idx.eq(idx + 1), rd_index.eq(idx)]
        last = rd_valid & (rd_index == V - 1)
        logit = logit_read.data
        weight = weight_read.data[:E]
        standing = weight_read.data                             # in the top-k search: (above, equal, b)

        top = Signal(signed(L), reset_less=True)                # m, the largest logit
        difference = top - logit                                # m - l: the search for m, then the gaps
        argmax = Signal(range(V), reset_less=True)              # its index; then the token drawn
        m.d.comb += self.token.payload.eq(argmax)

        # Top-k: the threshold key T, built from the top bit down, one pass of the keys per bit (`bit_index`).
        # No key comparator: each key's standing against T's bits decided so far is kept in the weight memory
        # (free until the weights are written) as three bits, (above, equal, b): its bits above the last pass's
        # are above T's, or equal to them, and b is its bit of the last pass. A pass first applies the last
        # pass's decision `taken` (T's bit) to that standing, then the key reaches ``T's bits | this bit`` if it
        # is above or equal with this bit set; `need` counts down from k the keys reaching, and T's bit is 1 when
        # k of them reach. The first pass starts every key equal (`first`).
        key = Cat(~rd_index[:I], logit[:-1], ~logit[-1])          # (logit, V-1-index) as one unsigned number
        bit_index = Signal(range(K), reset_less=True)
        first = Signal(reset_less=True)
        taken = Signal(reset_less=True)                         # T's bit of the last pass
        need = Signal(range(V + 1), reset_less=True)
        above = ~first & (standing[0] | (~taken & standing[1] & standing[2]))
        equal = first | (standing[1] & ~(standing[2] ^ taken))
        key_bit = key.bit_select(bit_index, 1)
        reaches = above | (equal & key_bit)
        counted = need - (rd_valid & reaches & (need != 0))

        # The serial multiplies: acc <- (acc + operand) >> 1, operand registered one step ahead. In the weights
        # p = gap * inv_temperature (one multiplier) is taken where a bit of logit_mult is set; in the draw W
        # where a bit of u is.
        S = self._logit_shift + 8
        pad = max(0, MULT_BITS - S)                             # so that the shift is at least the steps
        shift = S + pad
        P = L + 16
        W = self.total_bits
        A = max(shift, P + pad, W)
        # The one multiplier (P bits), an SB_MAC16 with its three registers (Yosys's ice40_dsp takes plain
        # registers with no enable): gap (held from GAP) into `factor`, inv_temperature into `scale`, the
        # product into `product`; so it is a clocked path on the iCE40, and the weights wait 2 cycles a logit.
        gap = Signal(L, reset_less=True)
        factor = Signal(L, reset_less=True)
        scale = Signal.like(self.inv_temperature, reset_less=True)
        product = Signal(P, reset_less=True)
        m.d.sync += [factor.eq(gap), scale.eq(self.inv_temperature), product.eq(factor * scale)]
        acc = Signal(A, reset_less=True)
        operand = Signal(A, reset_less=True)
        steps = Signal(range(32))
        weights_step = Signal()
        draw_step = Signal()
        acc_step = Signal()
        total = Signal(W + 1, reset_less=True)                  # W; in the search, the running sum - r - 1
        mult_bit = Const(self._logit_mult, MULT_BITS).bit_select(steps[:4], 1)
        m.d.sync += [operand.eq(Mux(weights_step & mult_bit, product << pad, 0)
                                | Mux(draw_step & generator.o.payload, total[:W], 0)),
                     acc_step.eq(weights_step | draw_step)]
        with m.If(acc_step):
            m.d.sync += acc.eq((acc + operand) >> 1)

        # z = acc >> (shift - 16) once the 16 steps are made.
        member = Signal(reset_less=True)
        z = acc[shift - MULT_BITS:]

        # exp2(z) = table[z mod 2**F] >> (z >> F), 0 from a shift of E on: the table read at z, then the shift
        # one place a cycle (under the next logit's serial multiply), then the weight is written.
        m.submodules.exp2_table = exp2_table = memory.Memory(shape=E, depth=1 << F, init=self._table)
        table_read = exp2_table.read_port()
        m.d.comb += table_read.addr.eq(z[:F])
        places = Signal(range(E), reset_less=True)             # shifts still to make
        zero = Signal(reset_less=True)                          # the weight is 0
        fetching = Signal()                                     # the table answers this cycle
        shifting = Signal()                                     # weight is being shifted, then written
        weight_out = Signal(E, reset_less=True)
        write_addr = Signal(range(V), reset_less=True)
        m.d.sync += fetching.eq(0)
        with m.If(fetching):
            m.d.sync += [weight_out.eq(Mux(zero, 0, table_read.data)), shifting.eq(1)]
        with m.Elif(shifting):
            with m.If(places == 0):
                m.d.sync += shifting.eq(0)
            with m.Else():
                m.d.sync += [weight_out.eq(weight_out >> 1), places.eq(places - 1)]
        busy = fetching | shifting

        # The sum and the search on one adder. The search: total starts at -r - 1 and the running sum has passed r
        # when the sum's sign clears.
        running = (total + weight)[:W + 1]

        every = at_least(self.top_k, V)                         # top_k >= V: no top-k search
        keys_in = every | above | equal                         # after the search: the key is >= T, a member
        thresholding = Signal()

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += [self.logits.ready.eq(1), logit_write.addr.eq(idx),
                             logit_write.data.eq(self.logits.payload), logit_write.en.eq(self.logits.valid)]
                with m.If(self.logits.valid):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If(idx == V - 1):
                        m.d.sync += [idx.eq(0), need.eq(self.top_k), bit_index.eq(K - 1), first.eq(1),
                                     top.eq(-1 << (L - 1)), argmax.eq(0)]
                        m.next = "MAX"
            with m.State("MAX"):                                # m and its first index, on the gap's subtractor
                m.d.comb += advance.eq(1)
                with m.If(rd_valid & difference[-1]):           # l > m
                    m.d.sync += [top.eq(logit), argmax.eq(rd_index)]
                with m.If(last):
                    m.d.sync += idx.eq(0)
                    with m.If(self.inv_temperature == 0):
                        m.next = "OUT"
                    with m.Elif(every):
                        m.next = "READ"
                    with m.Else():
                        m.next = "THRESHOLD"
            with m.State("THRESHOLD"):                          # do k keys reach T's bits with this one set?
                m.d.comb += [advance.eq(1), thresholding.eq(1)]
                m.d.sync += need.eq(counted)
                with m.If(last):
                    m.d.sync += [idx.eq(0), need.eq(self.top_k), bit_index.eq(bit_index - 1), first.eq(0),
                                 taken.eq(counted == 0)]
                    with m.If(bit_index == 0):
                        m.next = "READ"
            with m.State("READ"):                               # the weights, one logit at a time: the first
                m.d.comb += advance.eq(1)
                m.next = "GAP"
            with m.State("GAP"):
                m.d.sync += [gap.eq(difference[:L]), member.eq(keys_in), steps.eq(0),
                             acc.eq(1 << (shift - 1))]          # the rounding half
                with m.If(keys_in):
                    m.next = "FACTOR"
                with m.Else():
                    m.next = "Z"
            with m.State("FACTOR"):                             # gap into the multiplier's input register
                m.next = "PRODUCT"
            with m.State("PRODUCT"):                            # its product into the output register
                m.next = "STEP"
            with m.State("STEP"):                               # acc <- (acc + bit_j * p) >> 1, j = 0..15
                m.d.comb += weights_step.eq(1)
                m.d.sync += steps.eq(steps + 1)
                with m.If(steps == MULT_BITS - 1):
                    m.next = "LAST_STEP"
            with m.State("LAST_STEP"):                          # the operand of step 15 is added
                m.next = "Z"
            with m.State("Z"):                                  # exp2(z) begins; the next logit is read
                m.d.comb += advance.eq(~busy)                   # once the last weight is written
                with m.If(~busy):
                    none = ~member | at_least(z[F:], E)
                    m.d.sync += [fetching.eq(1), write_addr.eq(rd_index), zero.eq(none),
                                 places.eq(Mux(none, 0, z[F:]))]
                    with m.If(idx == V):
                        m.next = "DRAIN"
                    with m.Else():
                        m.next = "GAP"
            with m.State("DRAIN"):                              # the last weight is written
                with m.If(shifting & (places == 0)):
                    m.d.sync += [idx.eq(0), total.eq(0)]
                    m.next = "SUM"
            with m.State("SUM"):                                # W
                m.d.comb += advance.eq(1)
                with m.If(rd_valid):
                    m.d.sync += total.eq(running)
                with m.If(last):
                    m.d.sync += idx.eq(0)
                    m.next = "DRAW"
            with m.State("DRAW"):
                m.d.sync += [acc.eq(0), steps.eq(0)]
                m.next = "MULTIPLY"
            with m.State("MULTIPLY"):                           # (u * W) >> 32, u's bits from the generator, least
                m.d.comb += [generator.o.ready.eq(1), draw_step.eq(generator.o.valid)]     # significant first
                with m.If(generator.o.valid):
                    m.d.sync += steps.eq(steps + 1)
                    with m.If(steps == 31):
                        m.next = "LAST_DRAW"
            with m.State("LAST_DRAW"):                          # the operand of bit 31 is added
                m.next = "NEGATE"
            with m.State("NEGATE"):
                m.d.sync += total.eq(Cat(~acc[:W], 1))         # -r - 1 in W + 1 bits (r < W)
                m.next = "SEARCH"
            with m.State("SEARCH"):                             # the first token whose running sum exceeds r
                m.d.comb += advance.eq(1)
                with m.If(rd_valid):
                    m.d.sync += total.eq(running)
                    with m.If(~running[W]):
                        m.d.sync += [argmax.eq(rd_index), idx.eq(0)]
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.sync += idx.eq(0)
                m.d.comb += self.token.valid.eq(1)
                with m.If(self.token.ready):
                    m.next = "LOAD"

        # The weights, or in the search each key's standing as the pass leaves it.
        m.d.comb += [weight_write.addr.eq(Mux(thresholding, rd_index, write_addr)),
                     weight_write.data.eq(Mux(thresholding, Cat(above, equal, key_bit), weight_out)),
                     weight_write.en.eq(Mux(thresholding, rd_valid, shifting & (places == 0)))]
        return m
