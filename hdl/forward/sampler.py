# amaranth: UnusedElaboratable=no
"""The next token from the head's integer logits: greedy, or temperature / top-k sampling with xorshift32."""

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int, round_shift
from .exp2_unit import Exp2Unit
from .xorshift32 import Xorshift32

__all__ = ["Sampler"]


class Sampler(wiring.Component):
    """``golden.int_ops.sample``, token for token and state for state.

    The ``V`` logits arrive as a stream and are stored (one memory) while
    their largest value and its first index are kept. Then, by passes over
    the stored logits, one per cycle:

    - greedy (``inv_temperature == 0``): the first index of the largest logit,
      the generator untouched;
    - top-k (``top_k < V``): the ``k``-th largest logit ``T`` by a bitwise
      search, ``logit_bits`` counting passes (the largest ``T`` with at least
      ``k`` logits ``>= T``), then one pass counting the logits above ``T``;
      ties at ``T`` are admitted in index order, as golden's stable sort does;
    - one pass of weights: ``z = round_shift((m - l) * (logit_mult *
      inv_temperature), logit_shift + 8)`` (one product per logit),
      ``w = exp2(z)`` by an `Exp2Unit` (a logit outside the top k is sent
      as the largest ``z``, which gives 0), stored, and summed to ``W``;
    - the generator steps (`Xorshift32`), ``r = (u * W) >> 32`` by a 32-cycle
      serial multiply; one pass of running sums finds the first token whose
      running sum exceeds ``r``.

    So a sampled token takes about ``(logit_bits + 3) V + 40`` cycles with
    top-k, ``2 V + 40`` without (``V + 5`` greedy).

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
    mult_bits : int
        Width of the ``logit_mult`` port (``IntFormats.mult_bits``).

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
    logit_mult : ``In(mult_bits)``, logit_shift : ``In(6)``
        The artefact's ``sampler.logit`` requantiser.
    """

    def __init__(self, *, vocab_size, logit_bits=16, table, exp_frac_bits=8, exp_bits=16, mult_bits=16):
        self._vocab_size = check_int("vocab_size", vocab_size, 2, 1 << 16)
        self._logit_bits = check_int("logit_bits", logit_bits, 2, 24)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 24)
        self._exp2 = Exp2Unit(table=table, frac_bits=exp_frac_bits, exp_bits=exp_bits,
                              z_bits=logit_bits + mult_bits + 16)
        if vocab_size << (exp_bits - 1) >= 1 << 32:
            raise ValueError(f"{vocab_size} weights of {exp_bits} bits may sum past 32 bits")
        super().__init__({
            "logits": In(stream.Signature(signed(logit_bits))),
            "seed": In(stream.Signature(32)),
            "token": Out(stream.Signature(range(vocab_size))),
            "inv_temperature": In(16),
            "top_k": In(range(vocab_size + 1)),
            "logit_mult": In(mult_bits),
            "logit_shift": In(6),
        })

    @property
    def vocab_size(self):
        return self._vocab_size

    @property
    def logit_bits(self):
        return self._logit_bits

    @property
    def max_cycles(self):
        """Cycles from the last logit to the token at most, with top-k and no stalls."""
        return (self._logit_bits + 3) * (self._vocab_size + 2) + 32 + 16

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

        # Sequential passes over the stored rows: address idx, data one cycle later at rd_index.
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
        scale = Signal(self._mult_bits + 16)                    # logit_mult * inv_temperature
        total = Signal(32)                                      # W
        written = Signal(range(V + 1))
        draw = Signal(32)
        product = Signal(64)
        steps = Signal(range(33))
        running = Signal(33)
        token = Signal(range(V))
        m.d.comb += self.token.payload.eq(token)

        # The weights pipeline: z (registered) -> Exp2Unit -> stored and summed.
        z = Signal(exp2.z_bits)
        z_valid = Signal()
        member = everyone | (offset > prefix) | ((offset == prefix) & (ties_seen < ties_allowed))
        gap = round_shift(((top - logit).as_unsigned() * scale).as_signed(), self.logit_shift + 8)
        m.d.comb += [exp2.i.valid.eq(z_valid), exp2.i.payload.eq(z), exp2.o.ready.eq(1),
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
                                     everyone.eq(self.top_k >= V), ties_allowed.eq(0)]
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
            with m.State("SCALE"):
                m.d.sync += [scale.eq(self.logit_mult * self.inv_temperature), total.eq(0), written.eq(0)]
                m.next = "WEIGHTS"
            with m.State("WEIGHTS"):
                m.d.comb += scanning.eq(1)
                m.d.sync += [z_valid.eq(rd_valid), z.eq(Mux(member, gap, (1 << exp2.z_bits) - 1))]
                with m.If(rd_valid & (offset == prefix)):
                    m.d.sync += ties_seen.eq(ties_seen + 1)
                with m.If(exp2.o.valid & (written == V - 1)):
                    m.d.sync += idx.eq(0)
                    m.next = "DRAW"
            with m.State("DRAW"):                               # waits for a seed, if none was loaded yet
                m.d.comb += generator.o.ready.eq(1)
                m.d.sync += [draw.eq(generator.o.payload), product.eq(0), steps.eq(32)]
                with m.If(generator.o.valid):
                    m.next = "MULTIPLY"
            with m.State("MULTIPLY"):                           # u * W, MSB of u first
                m.d.sync += [product.eq((product << 1) + Mux(draw[-1], total, 0)), draw.eq(draw << 1),
                             steps.eq(steps - 1), running.eq(0)]
                with m.If(steps == 1):
                    m.next = "SEARCH"
            with m.State("SEARCH"):                             # the first running sum above r = (u * W) >> 32
                m.d.comb += scanning.eq(1)
                summed = running + weight_read.data
                with m.If(rd_valid):
                    m.d.sync += running.eq(summed)
                    with m.If(summed > product[32:]):
                        m.d.sync += [token.eq(rd_index), idx.eq(0)]
                        m.next = "OUT"
            with m.State("OUT"):
                m.d.sync += [idx.eq(0), z_valid.eq(0)]
                m.d.comb += self.token.valid.eq(1)
                with m.If(self.token.ready):
                    m.next = "LOAD"
        return m
