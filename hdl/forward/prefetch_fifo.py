"""The forward core's constant prefetch buffer: a first-word-fall-through FIFO in one block RAM."""

from amaranth import Module, Signal
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..read_port import NO_COLLISIONS, ReadPort
from .arith import check_int

__all__ = ["PrefetchFIFO"]


class PrefetchFIFO(wiring.Component):
    """`amaranth.lib.fifo.SyncFIFOBuffered` of ``depth + 1`` entries, cycle for cycle, without its level ports
    and its read-during-write logic.

    ``depth`` entries (a power of two) are a block RAM, read ahead into its
    output register (the ``+ 1``): a word written into an empty FIFO is
    offered two cycles later, as `SyncFIFOBuffered` does. The RAM is never
    read at an address written in the same cycle whose word is then used (a
    word is read only once it is stored), so it is made with
    `hdl.read_port.NO_COLLISIONS`: Yosys builds no bypass around it (about 25
    iCE40 logic cells for bytes). Its pointers carry a wrap bit, so empty and
    full are comparisons and no level counter is kept. Reset it
    (`amaranth.ResetInserter`) to empty it.

    Parameters
    ----------
    width : int
        Bits of a word.
    depth : int
        Words of the block RAM, a power of two (the FIFO holds one more).

    Members
    -------
    w : ``In(stream.Signature(width))``
    r : ``Out(stream.Signature(width))``
    """

    def __init__(self, *, width, depth):
        self._width = check_int("width", width, 1)
        self._depth = check_int("depth", depth, 1)
        if depth & (depth - 1):
            raise ValueError(f"depth must be a power of two, not {depth}")
        super().__init__({"w": In(stream.Signature(width)), "r": Out(stream.Signature(width))})

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        """Words held: the block RAM's and the output register's (``depth + 1``)."""
        return self._depth + 1

    def elaborate(self, platform):
        m = Module()
        depth = self._depth
        m.submodules.storage = storage = memory.Memory(shape=self._width, depth=depth, init=[], attrs=NO_COLLISIONS)
        write, read = storage.write_port(), ReadPort(m, storage, "storage_read")
        # Pointers with a wrap bit above the address: equal when empty, equal but for that bit when full.
        produce, consume = Signal(range(2 * depth)), Signal(range(2 * depth))
        same = produce[:-1] == consume[:-1]
        stored = ~same | (produce[-1] != consume[-1])
        do_write = self.w.valid & self.w.ready
        do_read = stored & (~self.r.valid | self.r.ready)
        m.d.comb += [self.w.ready.eq(~same | (produce[-1] == consume[-1])),
                     write.addr.eq(produce[:-1]), write.data.eq(self.w.payload), write.en.eq(do_write),
                     read.addr.eq(consume[:-1]), read.en.eq(do_read), self.r.payload.eq(read.data)]
        with m.If(do_write):
            m.d.sync += produce.eq(produce + 1)
        with m.If(do_read):
            m.d.sync += [consume.eq(consume + 1), self.r.valid.eq(1)]
        with m.Elif(self.r.ready):
            m.d.sync += self.r.valid.eq(0)
        return m
