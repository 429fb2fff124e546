# amaranth: UnusedElaboratable=no
"""The next token from the head's integer logits: greedy, or temperature / top-k sampling with xorshift32."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int
from .exp2_unit import Exp2Unit
from .xorshift32 import Xorshift32

__all__ = ["Sampler"]


class Sampler(wiring.Component):
    """``golden.int_ops.sample``, token for token and state for state.

    The ``V`` logits arrive as a stream and are stored (one memory) while
    their largest value and its first index are kept. Then, by passes over
    the stored logits:

    - greedy (``inv_temperature == 0``): the first index of the largest logit,
      the generator untouched;
    - top-k (``top_k < V``): the ``k``-th largest logit ``T`` by a bitwise
      search, ``logit_bits`` counting passes of one logit per cycle (the
      largest ``T`` with at least ``k`` logits ``>= T``: one comparator,
      whatever ``k``), then one pass counting the logits above ``T``; ties at
      ``T`` are admitted in index order, as golden's stable sort does;
    - one pass of weights, two cycles per logit: ``z = round_shift((m - l) *
      (logit_mult * inv_temperature), logit_shift + 8)`` on one multiplier
      (``logit_bits x 16`` bits: one SB_MAC16 for 16-bit logits), used for
      the low and the high half of the scale in turn (and once before the
      pass for the scale itself); ``z`` is clamped at ``exp_bits * 2**f``,
      where every weight is 0, so the `Exp2Unit` is narrow; ``w = exp2(z)``
      (a logit outside the top k is sent as the clamp, which gives 0),
      stored, and summed to ``W``;
    - the generator steps (`Xorshift32`), ``r = (u * W) >> 32`` by a 32-cycle
      serial multiply, least significant bit of ``u`` first into a register
      as wide as ``W`` (the dropped bits never matter to a floor); one pass
      counts ``r`` down by the weights to the first token that takes it below 0.

    So a sampled token takes about ``(logit_bits + 4) V + 40`` cycles with
    top-k, ``3 V + 40`` without (``V + 5`` greedy).

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
        ``round(256 / T)``; 0 is greedy.
    top_k : ``In(range(V + 1))``
        ``V`` (or more) samples among all tokens.
    """

    def __init__(self, *, vocab_size, logit_bits=16, table, exp_frac_bits=8, exp_bits=16, logit_mult,
                 logit_shift):
        self._vocab_size = check_int("vocab_size", vocab_size, 2, 1 << 16)
        self._logit_bits = check_int("logit_bits", logit_bits, 2, 24)
        self._logit_mult = check_int("logit_mult", logit_mult, 0, (1 << 16) - 1)
        self._logit_shift = check_int("logit_shift", logit_shift, 0, 54)
        self._exp2 = Exp2Unit(table=table, frac_bits=exp_frac_bits, exp_bits=exp_bits,
                              z_bits=(exp_bits << exp_frac_bits).bit_length())
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
        """The largest ``z`` sent to exp2: ``exp_bits * 2**exp_frac_bits``, whose weight (like any above) is 0."""
        return self._exp2.exp_bits << self._exp2.frac_bits

    @property
    def total_bits(self):
        """Width of ``W``: ``V`` weights below ``2**exp_bits`` each."""
        return (self._vocab_size * ((1 << self._exp2.exp_bits) - 1)).bit_length()

    @property
    def max_cycles(self):
        """Cycles from the last logit to the token at most, with top-k and no stalls."""
        return (self._logit_bits + 4) * (self._vocab_size + 2) + 32 + 16

    def elaborate(self, platform):
        m = Module()
        V, L = self._vocab_size, self._logit_bits
        m.submodules.exp2 = exp2 = self._exp2
        m.submodules.generator = generator = Xorshift32()
        wiring.connect(m, wiring.flipped(self.seed), generator.seed)
        m.submodules.logit_memory = logit_memory = memory.Memory(shape=signed(L), depth=V, init=[])
        m.submodules.weight_memory = weight_memory = memory.Memory(shape=exp2.exp_bits, depth=V, init=[])
        logit_write, logit_read = logit_memory.write_port(), logit_memory.read_port()
        weight_write, weight_read = weight_memory.write_port(), weight_memory.read_port()

        # Sequential passes over the stored rows: address idx, data one cycle later at rd_index. `scanning`
        # steps the address; the weights pass steps it every other cycle (`slow`).
        idx = Signal(range(V + 1))
        scanning = Signal()
        rd_valid = Signal()
        rd_index = Signal(range(V))
        m.d.comb += [logit_read.addr.eq(idx), weight_read.addr.eq(idx)]
        m.d.sync += [rd_valid.eq(scanning & (idx < V)), rd_index.eq(idx)]
        with m.If(scanning & (idx < V)):
            m.d.sync += idx.eq(idx + 1)
        last = rd_valid & (rd_index == V - 1)
        logit = logit_read.data
        offset = Cat(logit[:-1], ~logit[-1])                    # logit + 2**(L-1), ordered as unsigned

        top = Signal(signed(L))
        argmax = Signal(range(V))
        count = Signal(range(V + 1))
        bit = Signal(range(L))
        prefix = Signal(L)                                      # the threshold T, offset binary
        candidate = prefix | (Const(1, L) << bit)[:L]
        ties_allowed = Signal(range(V + 1))
        ties_seen = Signal(range(V + 1))
        everyone = Signal()
        W = self.total_bits
        total = Signal(W)                                       # W
        written = Signal(range(V + 1))
        steps = Signal(range(32))                               # the bit of u the serial multiply adds
        remaining = Signal(signed(W + 2))                       # r, then r minus the weights so far
        token = Signal(range(V))
        m.d.comb += self.token.payload.eq(token)

        # The one multiplier: a = the logit gap (or logit_mult, for the scale), b = a half of the scale (or
        # inv_temperature). `high` selects the scale's upper half.
        gap = Signal(max(L, 16))                                # m - l, or logit_mult before the pass
        scale = Signal(32)                                      # logit_mult * inv_temperature
        high = Signal()
        product = gap * Mux(high, scale[16:], scale[:16])
        S = self._logit_shift + 8
        dropped = min(16, S - 1)                                # low product bits no rounding ever sees
        low = Signal(len(product) - dropped)                    # the gap times the scale's lower half, >> dropped
        member = Signal()
        low_valid = Signal()
        member_now = everyone | (offset > prefix) | ((offset == prefix) & (ties_seen < ties_allowed))

        # The weights pipeline: gap registered (rd_valid) -> its product with the scale's low half
        # (low_valid) -> with the high half, z clamped and registered (high) -> Exp2Unit -> stored and summed.
        whole = low + (product << (16 - dropped))               # (m - l) * scale >> dropped, exactly (no carry
        z = ((whole >> (S - 1 - dropped)) + 1) >> 1             # from the dropped bits): round_shift(.., S)
        z_in = Signal(exp2.z_bits)
        z_valid = Signal()
        m.d.comb += [exp2.i.valid.eq(z_valid), exp2.i.payload.eq(z_in), exp2.o.ready.eq(1),
                     weight_write.addr.eq(written), weight_write.data.eq(exp2.o.payload),
                     weight_write.en.eq(exp2.o.valid)]
        with m.If(exp2.o.valid):
            m.d.sync += [total.eq(total + exp2.o.payload), written.eq(written + 1)]

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += [self.logits.ready.eq(1), logit_write.addr.eq(idx), logit_write.data.eq(self.logits.payload),
                             logit_write.en.eq(self.logits.valid)]
                with m.If(self.logits.valid):
                    m.d.sync += idx.eq(idx + 1)
                    with m.If((idx == 0) | (self.logits.payload > top)):
                        m.d.sync += [top.eq(self.logits.payload), argmax.eq(idx)]
                    with m.If(idx == V - 1):
                        m.d.sync += [idx.eq(0), count.eq(0), bit.eq(L - 1), prefix.eq(0), ties_seen.eq(0),
                                     everyone.eq(self.top_k >= V), ties_allowed.eq(0),
                                     gap.eq(self._logit_mult), scale.eq(self.inv_temperature), high.eq(0)]
                        with m.If(self.inv_temperature == 0):
                            m.next = "GREEDY"
                        with m.Elif(self.top_k >= V):
                            m.next = "SCALE"
                        with m.Else():
                            m.next = "THRESHOLD"
            with m.State("GREEDY"):
                m.d.sync += token.eq(argmax)
                m.next = "OUT"
            with m.State("THRESHOLD"):                          # bit `bit` of T: do k logits reach candidate?
                m.d.comb += scanning.eq(1)
                counted = count + (rd_valid & (offset >= candidate))
                m.d.sync += count.eq(counted)
                with m.If(last):
                    m.d.sync += [idx.eq(0), count.eq(0), bit.eq(bit - 1)]
                    with m.If(counted >= self.top_k):
                        m.d.sync += prefix.eq(candidate)
                    with m.If(bit == 0):
                        m.next = "GREATER"
            with m.State("GREATER"):                            # how many logits lie above T
                m.d.comb += scanning.eq(1)
                counted = count + (rd_valid & (offset > prefix))
                m.d.sync += count.eq(counted)
                with m.If(last):
                    m.d.sync += [idx.eq(0), ties_allowed.eq(self.top_k - counted)]
                    m.next = "SCALE"
            with m.State("SCALE"):                              # logit_mult * inv_temperature on the multiplier
                m.d.sync += [scale.eq(product), total.eq(0), written.eq(0)]
                m.next = "WEIGHTS"
            with m.State("WEIGHTS"):                            # a logit every other cycle
                m.d.comb += scanning.eq(~rd_valid)
                m.d.sync += [low_valid.eq(rd_valid), high.eq(low_valid), z_valid.eq(high)]
                with m.If(rd_valid):
                    m.d.sync += [gap.eq((top - logit)[:L]), member.eq(member_now)]
                    with m.If(offset == prefix):
                        m.d.sync += ties_seen.eq(ties_seen + 1)
                with m.If(low_valid):
                    m.d.sync += low.eq(product[dropped:])
                with m.If(high):
                    m.d.sync += z_in.eq(Mux(member & (z < self.clamp), z, self.clamp))
                with m.If(exp2.o.valid & (written == V - 1)):
                    m.d.sync += [idx.eq(0), low_valid.eq(0), high.eq(0), z_valid.eq(0)]
                    m.next = "DRAW"
            with m.State("DRAW"):                               # waits for a seed, if none was loaded yet
                m.d.sync += [remaining.eq(0), steps.eq(0)]
                with m.If(generator.o.valid):
                    m.next = "MULTIPLY"
            with m.State("MULTIPLY"):                           # (u * W) >> 32, LSB of u first; u, the next
                bit = generator.o.payload.bit_select(steps, 1)  # state, is held until taken at the last bit
                m.d.sync += [remaining.eq((remaining + Mux(bit, total, 0)) >> 1), steps.eq(steps + 1)]
                with m.If(steps == 31):
                    m.d.comb += generator.o.ready.eq(1)
                    m.next = "SEARCH"
            with m.State("SEARCH"):                             # the first token whose weight takes r below 0
                m.d.comb += scanning.eq(1)
                left = remaining - weight_read.data
                with m.If(rd_valid):
                    m.d.sync += remaining.eq(left)
                    with m.If(left < 0):
                        m.d.sync += [token.eq(rd_index), idx.eq(0)]
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.sync += idx.eq(0)
                m.d.comb += self.token.valid.eq(1)
                with m.If(self.token.ready):
                    m.next = "LOAD"
        return m
