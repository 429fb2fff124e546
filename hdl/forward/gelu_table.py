"""GELU of an activation: one read of a ``2**act_bits``-entry table (an EBR on iCE40)."""

import numpy as np
from amaranth import Cat, Module, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits

from .arith import saturate_limits

__all__ = ["GeluTable"]


class GeluTable(wiring.Component):
    """``golden.int_ops.gelu_lookup``: ``table[x + 2**(act_bits-1)]``, one value per cycle.

    The address is the activation with its sign bit inverted (no adder),
    below the layer index; the tables of every layer are one synchronous-read
    memory of ``n_layer * 2**act_bits`` entries, so on iCE40 one SB_RAM40_4K
    per layer for 8-bit activations (256 x 8), initialised by the bitstream.

    Parameters
    ----------
    table : sequence of int, or sequence of such sequences
        The compiled layer's ``mlp.gelu`` table (``2**act_bits`` signed
        ``act_bits`` values), or one such table per layer.
    act_bits : int
        Activation width (input and output, signed), 2 to 16.

    Members
    -------
    i : ``In(stream.Signature(signed(act_bits)))``
    o : ``Out(stream.Signature(signed(act_bits)))``
    layer : ``In(range(n_layer))``
        The table used, held while values pass.
    """

    def __init__(self, *, table, act_bits=8):
        self._act_bits = check_act_bits(act_bits)
        tables = [list(table)] if not len(table) or np.ndim(table[0]) == 0 else [list(t) for t in table]
        low, high = saturate_limits(act_bits)
        for entries in tables:
            if len(entries) != 1 << act_bits:
                raise ValueError(f"table must have {1 << act_bits} entries for {act_bits}-bit activations, "
                                 f"not {len(entries)}")
            bad = [v for v in entries if not low <= int(v) <= high]
            if bad:
                raise ValueError(f"table entry {bad[0]} does not fit {act_bits} signed bits ({low}..{high})")
        self._tables = tuple(tuple(int(v) for v in entries) for entries in tables)
        super().__init__({"i": In(stream.Signature(signed(act_bits))),
                          "o": Out(stream.Signature(signed(act_bits))),
                          "layer": In(range(len(tables)))})

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def table(self):
        """Layer 0's table, as a tuple of ints (entry ``j`` is the GELU of ``j - 2**(act_bits-1)``)."""
        return self._tables[0]

    @property
    def n_layer(self):
        return len(self._tables)

    @property
    def latency(self):
        """Cycles from an accepted input to its output being valid (1: the table read)."""
        return 1

    def elaborate(self, platform):
        m = Module()
        a = self._act_bits
        init = [v for entries in self._tables for v in entries]
        m.submodules.rom = rom = memory.Memory(shape=signed(a), depth=len(init), init=init)
        read = rom.read_port()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += [self.i.ready.eq(advance), read.en.eq(advance),
                     read.addr.eq(Cat(self.i.payload.as_unsigned() ^ (1 << (a - 1)), self.layer)),
                     self.o.payload.eq(read.data)]
        with m.If(advance):
            m.d.sync += self.o.valid.eq(self.i.valid)
        return m
