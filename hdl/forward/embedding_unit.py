"""The program's ``embed``: one token's residual row from the token and position tables."""

from amaranth import Array, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int, round_shift_within, row_address, saturate
from .head_unit import TableReadSignature, lane_words

__all__ = ["EmbeddingUnit"]


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
    (``mult``, ``shift``) into the residual grid. A request reads the two
    rows' requantisers (one cycle), then streams the ``d`` residual values,
    one every two cycles, through one multiplier (``table_bits x mult_bits``:
    one SB_MAC16) that forms the ``wte`` product on even cycles and the
    ``wpe`` product on odd ones; then round, add, saturate. The tables are
    memories initialised from the compiled artefact (on the iCEBreaker they
    belong in SPRAM: the default model's are 33 + 66 Kbit).

    Each table's requantisers are one memory of ``mult`` and ``shift -
    low`` side by side (``low``: the table's smallest shift; the rounding
    shifter covers only the table's range of shifts); when every ``mult``
    has its top bit set (the compiler normalises them), that bit is wiring,
    not memory: one 16-bit EBR word per row for the default model.

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

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"token", "position"})))``
    o : ``Out(stream.Signature(signed(res_bits)))``
        The ``d`` residual values of the row, in channel order.
    wte_read : ``In(TableReadSignature(V ceil(d / lanes), lanes table_bits))``
        With `lanes` only: reads of the ``wte`` words by the head, served while no request is in progress
        (the core never runs the two at once).
    """

    def __init__(self, *, wte, wpe, wte_mult, wte_shift, wpe_mult, wpe_shift, res_bits=16, lanes=None):
        self._wte, self._wpe = _table("wte", wte), _table("wpe", wpe)
        if len(self._wte[0]) != len(self._wpe[0]):
            raise ValueError(f"wte rows have {len(self._wte[0])} values and wpe rows {len(self._wpe[0])}")
        self._res_bits = check_int("res_bits", res_bits, 4, 24)
        self._requant = {}
        for name, mult, shift, rows in (("wte", wte_mult, wte_shift, self._wte), ("wpe", wpe_mult, wpe_shift,
                                                                                  self._wpe)):
            mult, shift = [int(v) for v in mult], [int(v) for v in shift]
            if len(mult) != len(rows) or len(shift) != len(rows):
                raise ValueError(f"{name} has {len(rows)} rows but {len(mult)} multipliers and {len(shift)} shifts")
            if min(mult) < 0 or min(shift) < 0 or max(shift) > 62:
                raise ValueError(f"{name} multipliers must be non-negative and shifts from 0 to 62")
            self._requant[name] = (mult, shift)
        self._lanes = None if lanes is None else check_int("lanes", lanes, 1, self.d)
        layout = data.StructLayout({"token": range(self.vocab_size), "position": range(self.positions)})
        ports = {"i": In(stream.Signature(layout)), "o": Out(stream.Signature(signed(res_bits)))}
        if self._lanes is not None:
            self._wte_words, self._wte_bits, self._chunk = lane_words(self._wte, self._lanes)
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
    def memories(self):
        """``[(name, width, depth)]``: ``wte`` (in the head's layout with `lanes`), ``wte_mult`` (each row's
        mult and shift offset, `requantiser_words`), ``wpe``, ``wpe_mult``."""
        rows = []
        for name, table in (("wte", self._wte), ("wpe", self._wpe)):
            flat = [v for row in table for v in row]
            if name == "wte" and self._lanes is not None:
                rows.append((name, self._lanes * self._wte_bits, len(self._wte_words)))
            else:
                rows.append((name, _width(flat), len(flat)))
            words, kept, _, shift_bits, _ = self.requantiser_words(name)
            rows.append((name + "_mult", kept + shift_bits, len(words)))
        return rows

    @property
    def row_cycles(self):
        """Cycles from a request accepted to the row's last value, with no stalls: ``2 d + 6``."""
        return 2 * self.d + 6

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
        d = self.d
        reads, requant = {}, {}
        for name, rows in (("wte", self._wte), ("wpe", self._wpe)):
            flat = [v for row in rows for v in row]
            words, kept, low, shift_bits, top = self.requantiser_words(name)
            if name == "wte" and self._lanes is not None:
                table = memory.Memory(shape=self._lanes * self._wte_bits, depth=len(self._wte_words),
                                      init=self._wte_words)
            else:
                table = memory.Memory(shape=signed(_width(flat)), depth=len(flat), init=flat)
            requantisers = memory.Memory(shape=unsigned(kept + shift_bits), depth=len(words), init=words)
            m.submodules[name] = table
            m.submodules[name + "_requant"] = requantisers
            reads[name] = table.read_port()
            port = requantisers.read_port()
            mult = port.data[:kept] if top is None else Cat(port.data[:kept], 1)
            requant[name] = (port, mult, port.data[kept:], low, low + (1 << shift_bits) - 1)

        token = Signal(range(self.vocab_size))
        position = Signal(range(self.positions))
        index = Signal(range(d + 1))
        # Two cycles per value: phase 0, the wte product; phase 1 (tick), the wpe product; stages advance on ticks.
        phase = Signal()
        m.d.sync += phase.eq(~phase)
        advance = ~self.o.valid | self.o.ready
        tick = phase & advance
        v0, v1 = Signal(), Signal()
        taking = Signal()
        for name, select in (("wte", token), ("wpe", position)):
            port = requant[name][0]
            m.d.comb += [port.addr.eq(select), reads[name].addr.eq(row_address(select, d, index)),
                         reads[name].en.eq(tick)]
        wte_value = reads["wte"].data
        if self._lanes is not None:                  # word token * chunk + index // lanes, field index % lanes
            L, T = self._lanes, self._wte_bits
            lane1 = Signal(range(L))
            if L & (L - 1):                          # counters; a power of two splits the index instead
                word, lane = Signal(range(self._chunk)), Signal(range(L))
                with m.If(tick & taking):
                    m.d.sync += [lane.eq(Mux(lane == L - 1, 0, lane + 1)), word.eq(word + (lane == L - 1))]
                with m.If(self.i.valid & self.i.ready):
                    m.d.sync += [lane.eq(0), word.eq(0)]
            else:
                lane, word = index[:(L - 1).bit_length()], index[(L - 1).bit_length():]
            m.d.comb += [reads["wte"].addr.eq(row_address(token, self._chunk, word)),
                         self.wte_read.data.eq(reads["wte"].data)]
            with m.If(tick):
                m.d.sync += lane1.eq(lane)
            wte_value = Array(reads["wte"].data[T * k:T * (k + 1)].as_signed() for k in range(L))[lane1]
        product = Mux(phase, reads["wpe"].data, wte_value) * Mux(phase, requant["wpe"][1], requant["wte"][1])
        wte_product = Signal(signed(len(product)))
        wpe_product = Signal(signed(len(product)))
        wte_rounded = Signal(signed(len(product)))

        def rounded(name, value):
            _, _, offset, low, high = requant[name]
            return round_shift_within(value, offset + low, low, high)

        with m.If(~phase):
            m.d.sync += wte_product.eq(product)
        with m.If(tick):
            m.d.sync += [v0.eq(taking), v1.eq(v0), wpe_product.eq(product),
                         wte_rounded.eq(rounded("wte", wte_product)), self.o.valid.eq(v1),
                         self.o.payload.eq(saturate(wte_rounded + rounded("wpe", wpe_product), self._res_bits))]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                if self._lanes is not None:          # the head's reads of the shared wte
                    m.d.comb += [reads["wte"].addr.eq(self.wte_read.addr), reads["wte"].en.eq(self.wte_read.en)]
                with m.If(self.i.valid):
                    m.d.sync += [token.eq(self.i.payload.token), position.eq(self.i.payload.position), index.eq(0)]
                    m.next = "REQUANTISERS"
            with m.State("REQUANTISERS"):            # the requantiser reads of the two rows
                m.next = "ROW"
            with m.State("ROW"):
                m.d.comb += taking.eq(1)
                with m.If(tick):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~v0 & ~v1 & ~self.o.valid):
                    m.next = "IDLE"
        return m
