"""The program's ``embed``: one token's residual row from the token and position tables."""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int, row_address, saturate
from .head_unit import TableReadSignature, lane_words

__all__ = ["EmbeddingUnit", "WPE_SOURCES", "MULTIPLIERS"]

#: Where the `EmbeddingUnit` gets a position's ``wpe`` row and requantiser: ``"rom"``, memories initialised by
#: the bitstream; ``"stream"``, bytes on its ``wpe`` port (`EmbeddingUnit.wpe_bytes`: the core streams them
#: from the SPI flash).
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
    (``mult``, ``shift``) into the residual grid. Per value, one product
    register forms the ``wte`` product, its rounding is held while the same
    register forms the ``wpe`` product, and the sum is rounded, saturated and
    offered. With ``multiplier="dsp"`` a product is one cycle (one
    ``table_bits x mult_bits`` multiplier: one SB_MAC16), 3 cycles a value;
    with ``"serial"`` it is shift-add over the table value's bits, LSB first
    (``table_bits`` cycles, the sign bit's partial product subtracted; no
    multiplier block), ``2 table_bits + 3`` cycles a value (`value_cycles`).

    Each table's requantisers are one memory of ``mult`` and ``shift -
    low`` side by side (``low``: the table's smallest shift; the rounding
    shifter covers only the range of shifts the tables use); when every
    ``mult`` has its top bit set (the compiler normalises them), that bit is
    wiring, not memory: one 16-bit EBR word per row for the default model.

    With ``wpe_source="stream"`` there is no ``wpe`` memory: a request takes
    `wpe_bytes` of its position on the ``wpe`` port, first the requantiser
    (``mult`` little-endian in ``ceil(mult_bits / 8)`` bytes, with the top bit
    when the others leave it out, then one byte ``shift - low``), then the
    ``d`` values, one signed byte each (the table must fit 8 bits).

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
                 wpe_source="rom", multiplier="dsp"):
        self._wte, self._wpe = _table("wte", wte), _table("wpe", wpe)
        if len(self._wte[0]) != len(self._wpe[0]):
            raise ValueError(f"wte rows have {len(self._wte[0])} values and wpe rows {len(self._wpe[0])}")
        self._res_bits = check_int("res_bits", res_bits, 4, 24)
        if wpe_source not in WPE_SOURCES:
            raise ValueError(f"wpe_source must be one of {', '.join(WPE_SOURCES)}, not {wpe_source!r}")
        if multiplier not in MULTIPLIERS:
            raise ValueError(f"multiplier must be one of {', '.join(MULTIPLIERS)}, not {multiplier!r}")
        self._wpe_source, self._multiplier = wpe_source, multiplier
        self._requant = {}
        for name, mult, shift, rows in (("wte", wte_mult, wte_shift, self._wte), ("wpe", wpe_mult, wpe_shift,
                                                                                  self._wpe)):
            mult, shift = [int(v) for v in mult], [int(v) for v in shift]
            if len(mult) != len(rows) or len(shift) != len(rows):
                raise ValueError(f"{name} has {len(rows)} rows but {len(mult)} multipliers and {len(shift)} shifts")
            if min(mult) < 0 or min(shift) < 0 or max(shift) > 62:
                raise ValueError(f"{name} multipliers must be non-negative and shifts from 0 to 62")
            self._requant[name] = (mult, shift)
        self._value_bits = {name: _width([v for row in rows for v in row])
                            for name, rows in (("wte", self._wte), ("wpe", self._wpe))}
        if wpe_source == "stream" and self._value_bits["wpe"] > 8:
            raise ValueError(f"a streamed wpe is one signed byte a value; this one needs {self._value_bits['wpe']} "
                             "bits")
        self._lanes = None if lanes is None else check_int("lanes", lanes, 1, self.d)
        layout = data.StructLayout({"token": range(self.vocab_size), "position": range(self.positions)})
        ports = {"i": In(stream.Signature(layout)), "o": Out(stream.Signature(signed(res_bits)))}
        if wpe_source == "stream":
            ports["wpe"] = In(stream.Signature(8))
        if self._lanes is not None:
            self._wte_words, self._wte_bits, self._chunk = lane_words(self._wte, self._lanes)
            self._value_bits["wte"] = self._wte_bits
            ports["wte_read"] = In(TableReadSignature(len(self._wte_words), self._lanes * self._wte_bits))
        super().__init__(ports)

    @property
    def vocab_size(self):
        return len(self._wte)

    @property
    def positions(self):
        return len(self._wpe)

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
    def memories(self):
        """``[(name, width, depth)]``: ``wte`` (in the head's layout with `lanes`), ``wte_mult`` (each row's
        mult and shift offset, `requantiser_words`), and with ``wpe_source="rom"`` ``wpe``, ``wpe_mult``."""
        rows = []
        for name, table in (("wte", self._wte), ("wpe", self._wpe)):
            if name == "wpe" and self._wpe_source == "stream":
                continue
            flat = [v for row in table for v in row]
            if name == "wte" and self._lanes is not None:
                rows.append((name, self._lanes * self._wte_bits, len(self._wte_words)))
            else:
                rows.append((name, _width(flat), len(flat)))
            words, kept, _, shift_bits, _ = self.requantiser_words(name)
            rows.append((name + "_mult", kept + shift_bits, len(words)))
        return rows

    @property
    def value_cycles(self):
        """Cycles per residual value with no stalls: 3 (``"dsp"``), ``2 table_bits + 3`` (``"serial"``)."""
        return 3 if self._multiplier == "dsp" else 2 * self._steps + 3

    @property
    def row_cycles(self):
        """Cycles from a request accepted to the row's last value offered, with no stalls (and, streamed, every
        byte there when wanted): ``d value_cycles + 2``; streamed, ``d value_cycles + 1 + wpe_header_bytes``."""
        return self.d * self.value_cycles + 1 + (self.wpe_header_bytes if self._wpe_source == "stream" else 1)

    @property
    def _steps(self):
        return max(self._value_bits.values())

    @property
    def wpe_header_bytes(self):
        """Bytes of a position's requantiser in `wpe_bytes`: the mult's, then one of the shift."""
        return -(-self._mult_bits("wpe") // 8) + 1

    def _mult_bits(self, name):
        words, kept, _, _, top = self.requantiser_words(name)
        return kept + (top is not None)

    def wpe_bytes(self, position):
        """What the ``wpe`` port carries for `position` (``wpe_source="stream"``): the row's requantiser
        (``mult`` little-endian, then ``shift - low``) and its ``d`` values, one signed byte each."""
        mult, shift = self._requant["wpe"]
        low = min(shift)
        header = int(mult[position]).to_bytes(self.wpe_header_bytes - 1, "little") + bytes([shift[position] - low])
        return header + bytes(v & 0xFF for v in self._wpe[position])

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

        # Each table's requantiser: (mult, shift) as values; the tables' values as read.
        requant, values = {}, {}
        words, kept, low, shift_bits, top = self.requantiser_words("wte")
        if self._lanes is not None:
            table = memory.Memory(shape=self._lanes * self._wte_bits, depth=len(self._wte_words),
                                  init=self._wte_words)
        else:
            flat = [v for row in self._wte for v in row]
            table = memory.Memory(shape=signed(_width(flat)), depth=len(flat), init=flat)
        m.submodules.wte = table
        m.submodules.wte_requant = requantisers = memory.Memory(shape=unsigned(kept + shift_bits),
                                                                depth=len(words), init=words)
        wte_read, port = table.read_port(), requantisers.read_port()
        m.d.comb += port.addr.eq(token)
        requant["wte"] = (port.data[:kept] if top is None else Cat(port.data[:kept], 1), port.data[kept:], low)
        # The reads of value `index`'s tables are addressed a cycle early: the next value's as `SUM` offers one.
        advancing = Signal()
        fetch = Mux(advancing, index + 1, index)
        if self._lanes is not None:                  # word token * chunk + index // lanes, field index % lanes
            L, T = self._lanes, self._wte_bits
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
            values["wte"] = Array(wte_read.data[T * k:T * (k + 1)].as_signed() for k in range(L))[lane1]
        else:
            m.d.comb += wte_read.addr.eq(row_address(token, d, fetch))
            values["wte"] = wte_read.data

        words, kept, low, shift_bits, top = self.requantiser_words("wpe")
        mult_bits = kept + (top is not None)
        if streamed:
            # The request's requantiser bytes shift in from the top: the mult's bytes, then the shift's.
            header = Signal(8 * self.wpe_header_bytes)
            requant["wpe"] = (header[:mult_bits], header[-8:][:shift_bits], low)
            values["wpe"] = self.wpe.payload.as_signed()
        else:
            flat = [v for row in self._wpe for v in row]
            m.submodules.wpe = wpe = memory.Memory(shape=signed(_width(flat)), depth=len(flat), init=flat)
            m.submodules.wpe_requant = wpe_requantisers = memory.Memory(shape=unsigned(kept + shift_bits),
                                                                        depth=len(words), init=words)
            wpe_read, port = wpe.read_port(), wpe_requantisers.read_port()
            m.d.comb += [port.addr.eq(position), wpe_read.addr.eq(row_address(position, d, fetch))]
            requant["wpe"] = (port.data[:kept] if top is None else Cat(port.data[:kept], 1), port.data[kept:], low)
            values["wpe"] = wpe_read.data

        # The product register: "dsp", value * mult in one cycle; "serial", {high, low} with the value's bits in
        # `low`, one shift-add step a cycle (the last, the sign bit's, subtracts).
        V = self._steps
        M = max(self._mult_bits("wte"), mult_bits)
        wpe_mult, wpe_shift = Signal(), Signal()     # the wpe row's requantiser (else wte's) to the datapath
        mult = Mux(wpe_mult, requant["wpe"][0], requant["wte"][0])
        # Each table's shift is held as `shift - low`; the rounding covers both tables' range from `least`.
        least = min(low for _, _, low in requant.values())
        offset = Mux(wpe_shift, *[offset + (low - least) if low > least else offset
                                  for name in ("wpe", "wte") for _, offset, low in [requant[name]]])
        span = max(max(s) for _, s in self._requant.values()) - least
        product = Signal(signed(V + M + 2))
        step = Signal(range(max(V, 1)))
        high = product[V:].as_signed()
        addend = Mux(product[0], mult, 0)
        stepped = Mux(step == V - 1, high - addend, high + addend)
        # round_shift(x, s) = (floor(2 x / 2**s) + 1) >> 1, also for s = 0; the constant part of s is wiring.
        partial = Cat(0, product).as_signed() >> least
        if span:
            partial = partial >> offset[:span.bit_length()]
        rounded = (partial + 1) >> 1
        first = Signal(signed(len(rounded)))         # the wte product, rounded

        def load(value):
            """Start a product of `value` (and `mult`): the whole product, or its first operand."""
            if serial:
                widened = Signal(signed(V))
                m.d.comb += widened.eq(value)
                m.d.sync += [product.eq(widened.as_unsigned()), step.eq(0)]
            else:
                m.d.sync += product.eq(value * mult)

        with m.If(self.o.ready):
            m.d.sync += self.o.valid.eq(0)
        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                if self._lanes is not None:          # the head's reads of the shared wte
                    m.d.comb += [wte_read.addr.eq(self.wte_read.addr), wte_read.en.eq(self.wte_read.en)]
                with m.If(self.i.valid):
                    m.d.sync += [token.eq(self.i.payload.token), position.eq(self.i.payload.position), index.eq(0),
                                 step.eq(0)]
                    m.next = "HEADER" if streamed else "READ"
            if not streamed:
                with m.State("READ"):                # the requantisers' and value 0's reads
                    m.next = "FIRST"
            if streamed:
                with m.State("HEADER"):              # the position's requantiser bytes
                    m.d.comb += self.wpe.ready.eq(1)
                    with m.If(self.wpe.valid):
                        m.d.sync += [header.eq(Cat(header[8:], self.wpe.payload)), step.eq(step + 1)]
                        with m.If(step == self.wpe_header_bytes - 1):
                            m.next = "FIRST"
            with m.State("FIRST"):                   # the table reads of value `index` are there
                load(values["wte"])
                m.next = "WTE" if serial else "SECOND"
            if serial:
                with m.State("WTE"):
                    m.d.sync += [product.eq(Cat(product[1:V], stepped)), step.eq(step + 1)]
                    with m.If(step == V - 1):
                        m.next = "SECOND"
            with m.State("SECOND"):
                m.d.comb += wpe_mult.eq(1)
                ready = self.wpe.valid if streamed else 1
                with m.If(ready):
                    if streamed:
                        m.d.comb += self.wpe.ready.eq(1)
                    m.d.sync += first.eq(rounded)
                    load(values["wpe"])
                    m.next = "WPE" if serial else "SUM"
            if serial:
                with m.State("WPE"):
                    m.d.comb += wpe_mult.eq(1)
                    m.d.sync += [product.eq(Cat(product[1:V], stepped)), step.eq(step + 1)]
                    with m.If(step == V - 1):
                        m.next = "SUM"
            with m.State("SUM"):                     # offer the value; the next one's reads are issued
                m.d.comb += wpe_shift.eq(1)
                with m.If(~self.o.valid | self.o.ready):
                    m.d.comb += advancing.eq(index != d - 1)
                    m.d.sync += [self.o.valid.eq(1), self.o.payload.eq(saturate(first + rounded, self._res_bits)),
                                 index.eq(index + 1)]
                    m.next = "IDLE" if d == 1 else "FIRST"
                    with m.If(index == d - 1):
                        m.next = "IDLE"
        return m
