"""GELU of an activation: one read of a ``2**act_bits``-entry table (an EBR on iCE40)."""

from amaranth import Module, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits

from .arith import saturate_limits

__all__ = ["GeluTable"]


class GeluTable(wiring.Component):
    """``golden.int_ops.gelu_lookup``: ``table[x + 2**(act_bits-1)]``, one value per cycle.

    The address is the activation with its sign bit inverted (no adder); the
    table is a synchronous-read memory, so on iCE40 it is one SB_RAM40_4K for
    8-bit activations (256 x 8), initialised by the bitstream.

    Parameters
    ----------
    table : sequence of int
        The compiled layer's ``mlp.gelu`` table: ``2**act_bits`` signed ``act_bits`` values.
    act_bits : int
        Activation width (input and output, signed), 2 to 16.

    Members
    -------
    i : ``In(stream.Signature(signed(act_bits)))``
    o : ``Out(stream.Signature(signed(act_bits)))``
    """

    def __init__(self, *, table, act_bits=8):
        self._act_bits = check_act_bits(act_bits)
        table = [int(v) for v in table]
        low, high = saturate_limits(act_bits)
        if len(table) != 1 << act_bits:
            raise ValueError(f"table must have {1 << act_bits} entries for {act_bits}-bit activations, "
                             f"not {len(table)}")
        bad = [v for v in table if not low <= v <= high]
        if bad:
            raise ValueError(f"table entry {bad[0]} does not fit {act_bits} signed bits ({low}..{high})")
        self._table = tuple(table)
        super().__init__({"i": In(stream.Signature(signed(act_bits))),
                          "o": Out(stream.Signature(signed(act_bits)))})

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def table(self):
        """The table, as a tuple of ints (entry ``j`` is the GELU of ``j - 2**(act_bits-1)``)."""
        return self._table

    @property
    def latency(self):
        """Cycles from an accepted input to its output being valid (1: the table read)."""
        return 1

    def elaborate(self, platform):
        m = Module()
        a = self._act_bits
        m.submodules.rom = rom = memory.Memory(shape=signed(a), depth=1 << a, init=self._table)
        read = rom.read_port()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), read.en.eq(advance),
                     read.addr.eq(self.i.payload.as_unsigned() ^ (1 << (a - 1))),
                     self.o.payload.eq(read.data)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid)
        return m
