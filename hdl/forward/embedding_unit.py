"""The program's ``embed``: one token's residual row from the token and position tables."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed, unsigned

import numpy as np

from golden.int_ops import round_shift
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int, row_address, saturate
from .head_unit import TableReadSignature, lane_words

__all__ = ["EmbeddingUnit", "WPE_SOURCES", "MULTIPLIERS"]

#: Where the `EmbeddingUnit` gets a position's requantised ``wpe`` row (`EmbeddingUnit.wpe_terms`): ``"rom"``,
#: a memory initialised by the bitstream; ``"stream"``, bytes on its ``wpe`` port (`EmbeddingUnit.wpe_bytes`:
#: the core streams them from the SPI flash).
WPE_SOURCES = ("rom", "stream")
#: How it multiplies: ``"dsp"``, one product a cycle (a multiplier block); ``"serial"``, shift-add, one bit of
#: the table value a cycle (no multiplier block).
MULTIPLIERS = ("dsp", "serial")


def _table(name, values):
    rows = [[int(v) for v in row] for row in values]
    if not rows or not rows[0] or any(len(row) != len(rows[0]) for row in rows):
        raise ValueError(f"{name} must be a non-empty (rows, d) table of integers")
    return rows


def _width(values, signed_=True):
    low, high = min(values), max(values)
    bits = max(low.bit_length() if low < 0 else 0, high.bit_length()) + (1 if signed_ else 0)
    return max(bits, 1)


class EmbeddingUnit(wiring.Component):
    """``x = saturate(round_shift(wte[t] * wte.mult[t], wte.shift[t]) + round_shift(wpe[p] * ..., ...), res_bits)``.

    That is :class:`golden.int_forward.IntegerForward`'s ``embed`` for one
    token ``t`` at position ``p``: each table row has its own requantiser
    (``mult``, ``shift``) into the residual grid. The position's term
    ``round_shift(wpe[p] * wpe.mult[p], wpe.shift[p])`` depends on nothing the
    unit computes, so it is precomputed (`wpe_terms`, exact) and held or
    streamed as it is: one product a value, the token's. With
    ``multiplier="dsp"`` the product is one cycle (one ``table_bits x
    mult_bits`` multiplier: one SB_MAC16), 2 cycles a value; with
    ``"serial"`` it is shift-add over the table value's bits, LSB first
    (``table_bits`` cycles, the sign bit's partial product subtracted; no
    multiplier block), ``table_bits + 2`` cycles a value (`value_cycles`).

    The token table's requantisers are one memory of ``mult`` and ``shift -
    low`` side by side (``low``: the smallest shift; the rounding shifter
    covers only the range of shifts the table uses); when every ``mult`` has
    its top bit set (the compiler normalises them), that bit is wiring, not
    memory: one 16-bit EBR word per row for the default model.

    With ``wpe_source="stream"`` there is no ``wpe`` memory: a request takes
    `wpe_bytes` of its position on the ``wpe`` port, each term little-endian
    two's complement in `wpe_term_bytes` bytes, while it multiplies (a term
    ahead at most).

    Parameters
    ----------
    wte, wpe : int array (V, d), (P, d)
        The compiled integer tables (``tables="int"``).
    wte_mult, wte_shift, wpe_mult, wpe_shift : int array (V,), (P,)
        Their per-row requantisers.
    res_bits : int
        Width of the signed residual, 4 to 24.
    lanes : int or None
        Hold ``wte`` in the `HeadUnit`'s layout of `lanes` values a word (`head_unit.lane_words`) and serve
        the tied head's reads of it on ``wte_read`` (one table for both, as golden's compiler shares it).
    wpe_source : str
        ``"rom"`` or ``"stream"`` (`WPE_SOURCES`).
    multiplier : str
        ``"dsp"`` or ``"serial"`` (`MULTIPLIERS`).
    split_table : bool
        With `lanes`: hold the ``wte`` words below the largest power of two under their count in one memory
        (``wte``) and the rest, followed by the requantiser words, in a second (``wte_rest``), read one cycle
        more per request. On the iCE40 that saves logic: a 2,048 x 16 table is 8 block RAMs with no output
        multiplexer (2,080 x 16: 9 and about 130 LUT4), and the requantisers are a block RAM's spare words,
        not a ROM in LUTs.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"token", "position"})))``
    o : ``Out(stream.Signature(signed(res_bits)))``
        The ``d`` residual values of the row, in channel order.
    wpe : ``In(stream.Signature(8))``
        With ``wpe_source="stream"`` only: `wpe_bytes` of each request's position, taken after the request.
    wte_read : ``In(TableReadSignature(V ceil(d / lanes), lanes table_bits))``
        With `lanes` only: reads of the ``wte`` words by the head, served while no request is in progress
        (the core never runs the two at once).
    """

    def __init__(self, *, wte, wpe, wte_mult, wte_shift, wpe_mult, wpe_shift, res_bits=16, lanes=None,
                 wpe_source="rom", multiplier="dsp", split_table=False):
        self._wte, wpe = _table("wte", wte), _table("wpe", wpe)
        if len(self._wte[0]) != len(wpe[0]):
            raise ValueError(f"wte rows have {len(self._wte[0])} values and wpe rows {len(wpe[0])}")
        self._res_bits = check_int("res_bits", res_bits, 4, 24)
        if wpe_source not in WPE_SOURCES:
            raise ValueError(f"wpe_source must be one of {', '.join(WPE_SOURCES)}, not {wpe_source!r}")
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be one of {', '.join(MULTIPLIERS)}, not {multiplier!r}")
        self._wpe_source, self._multiplier = wpe_source, multiplier
        self._requant = {}
        for name, mult, shift, rows in (("wte", wte_mult, wte_shift, self._wte), ("wpe", wpe_mult, wpe_shift, wpe)):
            mult, shift = [int(v) for v in mult], [int(v) for v in shift]
            if len(mult) != len(rows) or len(shift) != len(rows):
                raise ValueError(f"{name} has {len(rows)} rows but {len(mult)} multipliers and {len(shift)} shifts")
            if min(mult) < 0 or min(shift) < 0 or max(shift) > 62:
                raise ValueError(f"{name} multipliers must be non-negative and shifts from 0 to 62")
            self._requant[name] = (mult, shift)
        mult, shift = self._requant["wpe"]
        self._terms = [[int(v) for v in round_shift(np.array(row, np.int64) * m, s)]
                       for row, m, s in zip(wpe, mult, shift)]
        self._term_bits = _width([v for row in self._terms for v in row])
        self._value_bits = _width([v for row in self._wte for v in row])
        self._lanes = None if lanes is None else check_int("lanes", lanes, 1, self.d)
        layout = data.StructLayout({"token": range(self.vocab_size), "position": range(self.positions)})
        ports = {"i": In(stream.Signature(layout)), "o": Out(stream.Signature(signed(res_bits)))}
        if wpe_source == "stream":
            ports["wpe"] = In(stream.Signature(8))
        if self._lanes is not None:
            self._wte_words, self._value_bits, self._chunk = lane_words(self._wte, self._lanes)
            ports["wte_read"] = In(TableReadSignature(len(self._wte_words), self._lanes * self._value_bits))
        self._split = None
        if split_table:
            if self._lanes is None:
                raise ValueError("split_table needs lanes (the head's layout of wte)")
            self._split = 1 << (len(self._wte_words) - 1).bit_length() - 1
            words, _, _, _, _ = self.requantiser_words("wte")
            if len(self._wte_words) - self._split + len(words) > self._split:
                raise ValueError(f"split_table: {len(self._wte_words)} words and {len(words)} requantisers do not "
                                 "split at a power of two")
        super().__init__(ports)

    @property
    def vocab_size(self):
        return len(self._wte)

    @property
    def positions(self):
        return len(self._terms)

    @property
    def d(self):
        return len(self._wte[0])

    @property
    def res_bits(self):
        return self._res_bits

    @property
    def lanes(self):
        return self._lanes

    @property
    def wpe_source(self):
        return self._wpe_source

    @property
    def multiplier(self):
        return self._multiplier

    @property
    def split_table(self):
        """With ``split_table``: the words of ``wte`` in its first memory (a power of two); else None."""
        return self._split

    @property
    def wpe_terms(self):
        """``round_shift(wpe[p] * wpe.mult[p], wpe.shift[p])`` per position and channel: golden's wpe term."""
        return [list(row) for row in self._terms]

    @property
    def wpe_term_bits(self):
        """Width of the signed wpe terms."""
        return self._term_bits

    @property
    def wpe_term_bytes(self):
        """Bytes of a streamed wpe term."""
        return -(-self._term_bits // 8)

    @property
    def memories(self):
        """``[(name, width, depth)]``: ``wte`` (in the head's layout with `lanes`), ``wte_mult`` (each row's
        mult and shift offset, `requantiser_words`), and with ``wpe_source="rom"`` ``wpe`` (`wpe_terms`)."""
        words, kept, _, shift_bits, _ = self.requantiser_words("wte")
        if self._split is not None:
            width = self._lanes * self._value_bits
            rows = [("wte", width, self._split),
                    ("wte_rest", max(width, kept + shift_bits), len(self._wte_words) - self._split + len(words))]
        elif self._lanes is not None:
            rows = [("wte", self._lanes * self._value_bits, len(self._wte_words)),
                    ("wte_mult", kept + shift_bits, len(words))]
        else:
            rows = [("wte", _width([v for row in self._wte for v in row]), self.vocab_size * self.d),
                    ("wte_mult", kept + shift_bits, len(words))]
        if self._wpe_source == "rom":
            rows.append(("wpe", self._term_bits, self.positions * self.d))
        return rows

    @property
    def value_cycles(self):
        """Cycles per residual value with no stalls: 2 (``"dsp"``), ``table_bits + 2`` (``"serial"``)."""
        return 2 if self._multiplier == "dsp" else self._value_bits + 2

    @property
    def row_cycles(self):
        """Cycles from a request accepted to the row's last value offered, with no stalls (and, streamed, every
        byte there when wanted): ``d value_cycles + 2`` (+ 1 with ``split_table``: the requantiser's read)."""
        return self.d * self.value_cycles + 2 + (self._split is not None)

    def wpe_bytes(self, position):
        """What the ``wpe`` port carries for `position` (``wpe_source="stream"``): its `wpe_terms`, each
        little-endian two's complement in `wpe_term_bytes` bytes."""
        size = self.wpe_term_bytes
        return b"".join(int(v).to_bytes(size, "little", signed=True) for v in self._terms[position])

    def requantiser_words(self, name):
        """``(words, mult_bits, shift_low, shift_bits, top)`` of table `name`'s requantiser memory: each word
        ``mult | (shift - shift_low) << mult_bits``, with the top bit ``top`` of every ``mult`` left out
        (None when the mults do not all have it)."""
        mult, shift = self._requant[name]
        bits = _width(mult, False)
        top = bits - 1 if bits > 1 and min(mult) >> (bits - 1) else None
        kept = bits if top is None else bits - 1
        low = min(shift)
        words = [(m & ((1 << kept) - 1)) | ((s - low) << kept) for m, s in zip(mult, shift)]
        return words, kept, low, max(1, (max(shift) - low).bit_length()), top

    def elaborate(self, platform):
        m = Module()
        d, streamed, serial = self.d, self._wpe_source == "stream", self._multiplier == "serial"
        token = Signal(range(self.vocab_size))
        position = Signal(range(self.positions))
        index = Signal(range(d + 1))

        words, kept, low, shift_bits, top = self.requantiser_words("wte")
        split = self._split
        if split is not None:
            # The first `split` words alone (on the iCE40 a power-of-two depth needs no multiplexer behind its
            # block RAMs); the rest with the requantisers after them, read into `requantiser` as a request begins.
            rest = self._wte_words[split:]
            m.submodules.wte = table = memory.Memory(shape=self._lanes * self._value_bits, depth=split,
                                                     init=self._wte_words[:split])
            m.submodules.wte_rest = rest_table = memory.Memory(
                shape=max(self._lanes * self._value_bits, kept + shift_bits), depth=len(rest) + len(words),
                init=rest + words)
            wte_read = wiring.Signature({"addr": Out(range(len(self._wte_words))), "en": Out(1),
                                         "data": In(self._lanes * self._value_bits)}).create()
            m.d.comb += wte_read.en.eq(1)
            low_read, rest_read = table.read_port(), rest_table.read_port()
            high, requantiser = Signal(), Signal(kept + shift_bits)
            m.d.comb += [low_read.addr.eq(wte_read.addr), low_read.en.eq(wte_read.en),
                         rest_read.addr.eq(wte_read.addr[:len(rest_read.addr)]), rest_read.en.eq(wte_read.en),
                         wte_read.data.eq(Mux(high, rest_read.data, low_read.data))]
            with m.If(wte_read.en):
                m.d.sync += high.eq(wte_read.addr >= split)
            mult, offset = (requantiser[:kept] if top is None else Cat(requantiser[:kept], 1)), requantiser[kept:]
        else:
            if self._lanes is not None:
                table = memory.Memory(shape=self._lanes * self._value_bits, depth=len(self._wte_words),
                                      init=self._wte_words)
            else:
                flat = [v for row in self._wte for v in row]
                table = memory.Memory(shape=signed(_width(flat)), depth=len(flat), init=flat)
            m.submodules.wte = table
            m.submodules.wte_requant = requantisers = memory.Memory(shape=unsigned(kept + shift_bits),
                                                                    depth=len(words), init=words)
            wte_read, port = table.read_port(), requantisers.read_port()
            m.d.comb += port.addr.eq(token)
            mult, offset = (port.data[:kept] if top is None else Cat(port.data[:kept], 1)), port.data[kept:]
        # The reads of value `index` are addressed a cycle early: the next value's as `SUM` offers one.
        advancing = Signal()
        fetch = Mux(advancing, index + 1, index)
        if self._lanes is not None:                  # word token * chunk + index // lanes, field index % lanes
            L, T = self._lanes, self._value_bits
            lane1 = Signal(range(L))
            if L & (L - 1):                          # counters; a power of two splits the index instead
                word, lane = Signal(range(self._chunk + 1)), Signal(range(L))
                wrap = lane == L - 1
                with m.If(advancing):
                    m.d.sync += [lane.eq(Mux(wrap, 0, lane + 1)), word.eq(word + wrap)]
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += [lane.eq(0), word.eq(0)]
                lane, word = Mux(advancing, Mux(wrap, 0, lane + 1), lane), Mux(advancing, word + wrap, word)
            else:
                lane, word = fetch[:(L - 1).bit_length()], fetch[(L - 1).bit_length():]
            m.d.comb += [wte_read.addr.eq(row_address(token, self._chunk, word)),
                         self.wte_read.data.eq(wte_read.data)]
            m.d.sync += lane1.eq(lane)
            value = Array(wte_read.data[T * k:T * (k + 1)].as_signed() for k in range(L))[lane1]
        else:
            m.d.comb += wte_read.addr.eq(row_address(token, d, fetch))
            value = wte_read.data

        # The position's term: read, or its bytes shifted in from the top of `term` while the product forms.
        if streamed:
            size = self.wpe_term_bytes
            term_bytes, have = Signal(8 * size), Signal(range(size + 1))
            term = term_bytes.as_signed()
            taking = Signal()                        # within a request
            m.d.comb += self.wpe.ready.eq(taking & (have != size))
            with m.If(self.wpe.valid & self.wpe.ready):
                m.d.sync += [term_bytes.eq(Cat(term_bytes[8:], self.wpe.payload)), have.eq(have + 1)]
            term_ready = have == size
        else:
            flat = [v for row in self._terms for v in row]
            m.submodules.wpe = wpe = memory.Memory(shape=signed(self._term_bits), depth=len(flat), init=flat)
            wpe_read = wpe.read_port()
            m.d.comb += wpe_read.addr.eq(row_address(position, d, fetch))
            term, term_ready = wpe_read.data, 1

        # The product: "dsp", value * mult in one cycle; "serial", {high, low} with the value's bits in `low`,
        # one shift-add step a cycle (the last, the sign bit's, subtracts: B inverted, the carry in riding
        # below bit 0 of the one adder).
        V, M = self._value_bits, len(mult)
        product = Signal(signed(V + M + 2))
        step = Signal(range(max(V, 1)))
        high = product[V:].as_signed()
        last = step == V - 1
        addend, widened_high = Signal(M + 3), Signal(signed(M + 3))
        m.d.comb += [addend.eq(Mux(product[0], mult, 0) ^ Mux(last, -1, 0)), widened_high.eq(high)]
        stepped = (Cat(last, widened_high) + Cat(last, addend))[1:M + 4]
        widened = Signal(signed(V))
        m.d.comb += widened.eq(value)
        # round_shift(x, s) = (floor(2 x / 2**s) + 1) >> 1, also for s = 0; the constant part of s is wiring.
        partial = Cat(0, product)[low:].as_signed()
        if shift_bits and max(self._requant["wte"][1]) > low:
            partial = partial >> offset
        # The rounded value plus the term in one adder: ((partial + 1) >> 1) + term = (partial + 2 term + 1) >> 1.
        total = Signal(signed(max(len(partial), len(term) + 1)))
        m.d.comb += total.eq((partial + Cat(Const(1, 1), term).as_signed())[1:].as_signed())

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM() as fsm:
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                if self._lanes is not None:          # the head's reads of the shared wte
                    m.d.comb += [wte_read.addr.eq(self.wte_read.addr), wte_read.en.eq(self.wte_read.en)]
                with m.If(self.i.valid):
                    m.d.sync += [token.eq(self.i.payload.token), position.eq(self.i.payload.position), index.eq(0)]
                    m.next = "READ" if split is None else "REQUANTISER"
            if split is not None:
                with m.State("REQUANTISER"):         # the token's requantiser word, after the rest's words
                    m.d.comb += rest_read.addr.eq(len(rest) + token)
                    m.next = "READ"
            with m.State("READ"):                    # the requantiser's and value 0's reads
                if split is not None:
                    m.d.sync += requantiser.eq(rest_read.data)
                m.next = "FIRST"
            with m.State("FIRST"):                   # value `index`'s reads are there
                if serial:
                    m.d.sync += [product.eq(widened.as_unsigned()), step.eq(0)]
                else:
                    m.d.sync += product.eq(widened * mult)
                m.next = "STEPS" if serial else "SUM"
            if serial:
                with m.State("STEPS"):
                    m.d.sync += [product.eq(Cat(product[1:V], stepped)), step.eq(step + 1)]
                    with m.If(last):
                        m.next = "SUM"
            with m.State("SUM"):                     # offer the value; the next one's reads are issued
                with m.If((~self.o.valid | self.o.ready) & term_ready):
                    m.d.comb += advancing.eq(index != d - 1)
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(saturate(total, self._res_bits)),
                                 index.eq(index + 1)]
                    if streamed:
                        m.d.sync += have.eq(0)
                    m.next = "FIRST"
                    with m.If(index == d - 1):
                        m.next = "IDLE"
        if streamed:
            m.d.comb += taking.eq(~fsm.ongoing("IDLE"))
        return m
