# amaranth: UnusedElaboratable=no
"""The LM head: one token's logits from an integer table on a few multiplier lanes."""

from amaranth import Module, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from golden.datapath import check_act_bits

from ..read_port import NO_COLLISIONS, ReadPort
from .arith import check_int, row_address
from .serial_requantizer import SerialRequantizer

__all__ = ["HeadUnit", "head_for", "head_tied", "lane_words", "TableReadSignature"]


def lane_words(table, lanes):
    """The head's table layout: ``(words, bits, chunk)``, word ``v chunk + j`` holding ``table[v, j lanes ..]``.

    Each of a word's `lanes` fields is ``bits`` wide (two's complement; the
    table's widest value and a sign), rows padded with zeros to ``chunk =
    ceil(d / lanes)`` words. The embedding builds its ``wte`` memory in the
    same layout when the head shares it.
    """
    table = np.asarray(table, np.int64)
    v, d = table.shape
    chunk = -(-d // lanes)
    bits = max(2, int(np.abs(table).max()).bit_length() + 1)
    padded = np.zeros((v, chunk * lanes), np.int64)
    padded[:, :d] = table
    mask = (1 << bits) - 1
    words = [sum((int(value) & mask) << (bits * lane) for lane, value in enumerate(row[j * lanes:(j + 1) * lanes]))
             for row in padded for j in range(chunk)]
    return words, bits, chunk


def TableReadSignature(depth, width):
    """A synchronous read of a table another unit holds, from the reader's side: ``addr`` and ``en`` out, the
    word at the last enabled address back on ``data`` the cycle after (a memory read port's timing)."""
    return wiring.Signature({"addr": Out(range(depth)), "en": Out(1), "data": In(width)})


class HeadUnit(wiring.Component):
    """``requantize(a . table[v], mult[v], shift[v], logit_bits)`` for ``v = 0 .. V-1``: the program's ``head``.

    The ``d`` activations of the token are loaded into `lanes` banks
    (activation ``i`` in bank ``i % lanes``); then each cycle one word of the
    table memory (``lanes`` integers of row ``v``, columns ``j lanes ..``)
    meets one entry of every bank: ``lanes`` signed products (integer
    multipliers: DSPs where the device has them), summed, accumulated over
    ``ceil(d / lanes)`` cycles per token ``v``, then requantised per row by
    a `SerialRequantizer` (one bit of ``mult`` per cycle and one bit of the
    shift, no multiplier: it works on one token's logit while the next
    token's dot product runs). A token's logits take ``d + V max(ceil(d /
    lanes), interval)`` cycles and a few of pipeline (``interval``: the
    requantiser's, ``max(shift) + 2`` for this model's shifts); the whole
    pipeline stalls while ``o`` is not taken.

    Memories: ``table`` (``lanes * table_bits`` wide, ``V ceil(d / lanes)``
    deep), ``mult`` and ``shift`` (``V`` deep; ``mult`` is marked for block
    RAM, ``ram_style="block"``, even when small), ``banks`` (``lanes *
    act_bits`` wide, ``ceil(d / lanes)`` deep, written a lane at a time).

    Parameters
    ----------
    table : int array (V, d)
        The head's integer table (``tables="int"``: ``wte.table`` when tied).
    mult, shift : int arrays (V,)
        The per-row requantisers (``head.mult``, ``head.shift``).
    act_bits, logit_bits, mult_bits : int
        ``IntFormats`` widths.
    lanes : int
        Multipliers working at once, 1 to ``d``.
    shared_table : bool
        The table is not held here but read through ``table`` from a unit that holds it in `lane_words`'s
        layout (the `EmbeddingUnit`'s ``wte`` when the head is tied to it).

    Members
    -------
    a : ``In(stream.Signature(signed(act_bits)))``
        The ``d`` activations (``ln_f``'s output).
    o : ``Out(stream.Signature(signed(logit_bits)))``
        The ``V`` logits, in token order.
    table : ``Out(TableReadSignature(V chunk, lanes table_bits))``
        With `shared_table` only: the table's reads.
    """

    def __init__(self, *, table, mult, shift, act_bits=8, logit_bits=16, mult_bits=16, lanes=4, shared_table=False):
        self._table = np.asarray(table, np.int64)
        if self._table.ndim != 2 or not self._table.size:
            raise ValueError(f"table must be a non-empty (V, d) array, not of shape {self._table.shape}")
        self._v, self._d = self._table.shape
        self._act_bits = check_act_bits(act_bits)
        self._logit_bits = check_int("logit_bits", logit_bits, 2, 32)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 32)
        self._lanes = check_int("lanes", lanes, 1, self._d)
        self._mult, self._shift = np.asarray(mult, np.int64), np.asarray(shift, np.int64)
        if self._mult.shape != (self._v,) or self._shift.shape != (self._v,):
            raise ValueError(f"mult and shift must have {self._v} values (one per token)")
        if self._mult.min() < 0 or self._mult.max() >= 1 << mult_bits or self._shift.min() < 0 \
                or self._shift.max() > 62:
            raise ValueError(f"mult must be {mult_bits}-bit unsigned and shift from 0 to 62")
        self._shared = bool(shared_table)
        self._words, self._table_bits, _ = lane_words(self._table, self._lanes)
        self._requantizer = SerialRequantizer(acc_bits=self.acc_bits, mult_bits=self._mult_bits,
                                              shift_range=self.shift_range, out_bits=self._logit_bits, held=True)
        ports = {"a": In(stream.Signature(signed(act_bits))), "o": Out(stream.Signature(signed(logit_bits)))}
        if self._shared:
            ports["table"] = Out(TableReadSignature(len(self._words), self._lanes * self._table_bits))
        super().__init__(ports)

    @property
    def vocab_size(self):
        return self._v

    @property
    def d(self):
        return self._d

    @property
    def lanes(self):
        return self._lanes

    @property
    def shared_table(self):
        return self._shared

    @property
    def table_bits(self):
        """Width of one table value in a word (`lane_words`)."""
        return self._table_bits

    @property
    def chunk(self):
        """Table words per token: ``ceil(d / lanes)``."""
        return -(-self._d // self._lanes)

    @property
    def acc_bits(self):
        """Signed width of ``a . table[v]``: exact for any activations."""
        return self._act_bits + self._table_bits + (self._d - 1).bit_length() + 1

    @property
    def shift_range(self):
        """The smallest and largest of the per-row shifts (the requantiser's shifter covers only these)."""
        return int(self._shift.min()), int(self._shift.max())

    @property
    def requantizer_interval(self):
        """Cycles the `SerialRequantizer` takes per logit at the largest shift (its ``interval``)."""
        return self._requantizer.interval

    @property
    def cycles(self):
        """Cycles of one token's logits with no stalls: load, ``V`` rows of ``max(chunk, requantizer_interval)``
        and the pipeline."""
        interval = self.requantizer_interval
        return self._d + self._v * max(self.chunk, interval) + interval + 6

    @property
    def memories(self):
        """``[(name, width, depth)]`` of the unit's memories (no ``head_table`` when it is shared)."""
        return [("head_table", self._lanes * self._table_bits, self._v * self.chunk)][self._shared:] + [
                ("head_mult", self._mult_bits, self._v),
                ("head_shift", max(1, self.shift_range[1].bit_length()), self._v),
                ("head_banks", self._lanes * self._act_bits, self.chunk)]

    def elaborate(self, platform):
        m = Module()
        V, L, chunk, A, T = self._v, self._lanes, self.chunk, self._act_bits, self._table_bits
        words = self._words
        if self._shared:
            table_read = self.table
        else:
            m.submodules.table = table = memory.Memory(shape=L * T, depth=len(words), init=words)
            table_read = table.read_port()
        # In block RAM: as logic, Yosys builds this V x 16 ROM from about 140 LUT4 on the iCE40.
        m.submodules.mult = mults = memory.Memory(shape=self._mult_bits, depth=V, init=self._mult.tolist(),
                                                  attrs={"ram_style": "block"})
        m.submodules.shift = shifts = memory.Memory(shape=max(1, self.shift_range[1].bit_length()), depth=V,
                                                    init=self._shift.tolist())
        mult_read, shift_read = mults.read_port(), shifts.read_port()
        # Written in LOAD, read in RUN (reads in LOAD feed no valid stage): no used read meets a write (`ReadPort`).
        m.submodules.banks = banks = memory.Memory(shape=L * A, depth=chunk, init=[], attrs=NO_COLLISIONS)
        bank_write, bank_read = banks.write_port(granularity=A), ReadPort(m, banks, "bank_read")
        m.submodules.requantizer = requant = self._requantizer
        wiring.connect(m, requant.o, wiring.flipped(self.o))

        # Loading: activation i -> bank i % L, entry i // L.
        lane, entry = Signal(range(L)), Signal(range(chunk))
        last_loaded = (entry == chunk - 1) & (lane == (self._d - 1) % L)     # activation d - 1
        # Issue (token v, word j) -> memories answer (stage 1) -> products summed (stage 2) -> accumulated.
        token, j = Signal(range(V + 1)), Signal(range(chunk))
        running, issuing = Signal(), Signal()
        # The requantiser reads the dot product from its input register until it takes it (`held`): the
        # pipeline waits only when the next dot product is due while the last is still held there.
        valid1, last1, valid2, last2 = Signal(), Signal(), Signal(), Signal()
        advance = ~(valid2 & last2 & requant.i.valid & ~requant.i.ready)
        token1, token2 = Signal(range(V)), Signal(range(V))
        # One lane: the product as it is, no reset, so that it is the DSP's own output register (an iCE40
        # SB_MAC16 cannot hold a register with a synchronous reset); more lanes: their sum.
        partial = Signal(signed(A + T + (L - 1).bit_length() + 1), reset_less=True) if L > 1 else \
            Signal(signed(A + T), reset_less=True)
        acc = Signal(signed(self.acc_bits))
        m.d.comb += [issuing.eq(running & (token < V)), table_read.addr.eq(row_address(token, chunk, j)),
                     table_read.en.eq(advance),
                     mult_read.addr.eq(token2), mult_read.en.eq(advance),
                     shift_read.addr.eq(token2), shift_read.en.eq(advance),
                     requant.i.payload.mult.eq(mult_read.data), requant.i.payload.shift.eq(shift_read.data)]
        products = []
        m.d.comb += [bank_write.addr.eq(entry), bank_read.addr.eq(j), bank_read.en.eq(advance)]
        for index in range(L):
            m.d.comb += [bank_write.data[A * index:A * (index + 1)].eq(self.a.payload),
                         bank_write.en[index].eq(self.a.valid & self.a.ready & (lane == index))]
            weight = table_read.data[T * index:T * (index + 1)].as_signed()
            products.append(bank_read.data[A * index:A * (index + 1)].as_signed() * weight)
        with m.If(requant.i.ready):
            m.d.sync += requant.i.valid.eq(0)
        with m.If(advance):
            m.d.sync += [valid1.eq(issuing), last1.eq(j == chunk - 1), token1.eq(token),
                         valid2.eq(valid1), last2.eq(last1), token2.eq(token1), partial.eq(sum(products))]
            with m.If(valid2):
                m.d.sync += acc.eq(acc + partial)
                with m.If(last2):
                    m.d.sync += [acc.eq(0), requant.i.payload.acc.eq(acc + partial), requant.i.valid.eq(1)]
            with m.If(issuing):
                m.d.sync += j.eq(j + 1)
                with m.If(j == chunk - 1):
                    m.d.sync += [j.eq(0), token.eq(token + 1)]

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += self.a.ready.eq(1)
                with m.If(self.a.valid):
                    m.d.sync += lane.eq(lane + 1)
                    with m.If(lane == L - 1):
                        m.d.sync += [lane.eq(0), entry.eq(entry + 1)]
                    with m.If(last_loaded):
                        m.d.sync += [lane.eq(0), entry.eq(0), token.eq(0), j.eq(0),
                                     running.eq(1)]
                        m.next = "RUN"
            with m.State("RUN"):
                with m.If(~issuing & ~valid1 & ~valid2 & ~requant.i.valid):
                    m.d.sync += running.eq(0)
                    m.next = "LOAD"
        return m


def head_for(compiled, *, lanes=4, shared_table=False):
    """The `HeadUnit` of `compiled`: its integer head table (``tables`` / ``head`` format ``"int"`` only).

    `shared_table`: read the table through the ``table`` port (only for a head tied to ``wte.table``).
    """
    t, f = compiled.tensors, compiled.formats
    name = next(op.get("table", "wte.table") for op in compiled.program if op["op"] == "head")
    kind = f.tables if name == "wte.table" else f.head
    if kind != "int":
        raise ValueError(f"the head unit multiplies an integer table; this artefact's head table {name!r} "
                         f"is {kind!r} (compile with head='int' and tables='int')")
    if shared_table and name != "wte.table":
        raise ValueError(f"the head's table {name!r} is its own, not the embedding's: it cannot be shared")
    return HeadUnit(table=t[name], mult=t["head.mult"], shift=t["head.shift"], act_bits=f.act_bits,
                    logit_bits=f.logit_bits, mult_bits=f.mult_bits, lanes=lanes, shared_table=shared_table)


def head_tied(compiled):
    """Whether `compiled`'s head multiplies the embedding's integer ``wte.table`` (golden.compile: "a tied head
    whose format is the embeddings' shares their table")."""
    name = next(op.get("table", "wte.table") for op in compiled.program if op["op"] == "head")
    return name == "wte.table" and compiled.formats.tables == "int"
