"""The program's ``embed``: one token's residual row from the token and position tables."""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int, round_shift, saturate

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
    rows' requantisers (one cycle), then streams the ``d`` residual values
    through a three-stage pipeline (table reads; two products; round, add,
    saturate). The tables are memories initialised from the compiled
    artefact (on the iCEBreaker they belong in SPRAM: the default model's
    are 33 + 66 Kbit).

    Parameters
    ----------
    wte, wpe : int array (V, d), (P, d)
        The compiled integer tables (``tables="int"``).
    wte_mult, wte_shift, wpe_mult, wpe_shift : int array (V,), (P,)
        Their per-row requantisers.
    res_bits : int
        Width of the signed residual, 4 to 24.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"token", "position"})))``
    o : ``Out(stream.Signature(signed(res_bits)))``
        The ``d`` residual values of the row, in channel order.
    """

    def __init__(self, *, wte, wpe, wte_mult, wte_shift, wpe_mult, wpe_shift, res_bits=16):
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
        layout = data.StructLayout({"token": range(self.vocab_size), "position": range(self.positions)})
        super().__init__({"i": In(stream.Signature(layout)), "o": Out(stream.Signature(signed(res_bits)))})

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
    def row_cycles(self):
        """Cycles from a request accepted to the row's last value, with no stalls: ``d + 4``."""
        return self.d + 4

    def elaborate(self, platform):
        m = Module()
        d = self.d
        memories = {}
        for name, rows in (("wte", self._wte), ("wpe", self._wpe)):
            flat = [v for row in rows for v in row]
            mult, shift = self._requant[name]
            table = memory.Memory(shape=signed(_width(flat)), depth=len(flat), init=flat)
            mults = memory.Memory(shape=unsigned(_width(mult, False)), depth=len(mult), init=mult)
            shifts = memory.Memory(shape=unsigned(6), depth=len(shift), init=shift)
            m.submodules[name] = table
            m.submodules[name + "_mult"] = mults
            m.submodules[name + "_shift"] = shifts
            memories[name] = (table.read_port(), mults.read_port(), shifts.read_port())

        token = Signal(range(self.vocab_size))
        position = Signal(range(self.positions))
        index = Signal(range(d + 1))
        advance = ~self.o.valid | self.o.ready
        v0, v1 = Signal(), Signal()
        taking = Signal()
        products = {}
        for name, select in (("wte", token), ("wpe", position)):
            table, mult, shift = memories[name]
            m.d.comb += [mult.addr.eq(select), shift.addr.eq(select), table.addr.eq(select * d + index),
                         table.en.eq(advance)]
            product = Signal(signed(len(table.data) + len(mult.data) + 1), name=name + "_product")
            shift1 = Signal(6, name=name + "_shift1")
            with m.If(advance):
                m.d.sync += [product.eq(table.data * mult.data), shift1.eq(shift.data)]
            products[name] = round_shift(product, shift1)
        with m.If(advance):
            m.d.sync += [v0.eq(taking), v1.eq(v0), self.o.valid.eq(v1),
                         self.o.payload.eq(saturate(products["wte"] + products["wpe"], self._res_bits))]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.i.ready.eq(1)
                with m.If(self.i.valid):
                    m.d.sync += [token.eq(self.i.payload.token), position.eq(self.i.payload.position), index.eq(0)]
                    m.next = "REQUANTISERS"
            with m.State("REQUANTISERS"):            # the mult / shift reads of the two rows
                m.next = "ROW"
            with m.State("ROW"):
                m.d.comb += taking.eq(1)
                with m.If(advance):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~v0 & ~v1 & ~self.o.valid):
                    m.next = "IDLE"
        return m
