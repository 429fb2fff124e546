"""A code store in iCE40UP SPRAM, loaded by the host at run time."""

from amaranth import Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from hdl.ice40_spram import ICE40SPRAM
from hdl.single_port_memory import SinglePortMemory, spram_blocks

__all__ = ["SPRAMCodeStore", "SPRAMCodeBanks"]


class SPRAMCodeStore(wiring.Component):
    """The code words of one group of array columns in SPRAM: the engine reads, the host link writes.

    It has the read port of `hdl.code_store.CodeStore` (synchronous, one cycle;
    ``read.data`` holds while ``read.en`` is low) and its write port, but no
    initial contents: SPRAM starts undefined, and the host loads the words
    (`golden.rom_layout.RomLayout.group_words`) over the link before a run.
    It is a `hdl.single_port_memory.SinglePortMemory` of SPRAM blocks
    (``ceil(depth / 16384)`` stacked for a deeper store). A write wins over a
    read in the same cycle (one port); the host link writes only while the
    engine is idle.

    Parameters
    ----------
    first_column : int
        The group's first column (kept for reports).
    columns_per_word : int
    depth : int
        Words (the layout's code depth).
    word_width : int
        Bits per word, at most 16.

    Members
    -------
    read : ``Out(memory.ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(word_width)))``
    write : ``Out(memory.WritePort.Signature(addr_width=ceil_log2(depth), shape=unsigned(word_width)))``
    """

    def __init__(self, *, first_column, columns_per_word, depth, word_width):
        for name, value in (("First column", first_column), ("Columns per word", columns_per_word),
                            ("Depth", depth), ("Word width", word_width)):
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "First column" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'First column' else 'positive'} "
                                 f"integer, not {value!r}")
        if word_width > ICE40SPRAM.WIDTH:
            raise ValueError(f"An SPRAM word holds at most {ICE40SPRAM.WIDTH} bits, not {word_width}")
        self._first_column = first_column
        self._columns_per_word = columns_per_word
        self._depth = depth
        self._word_width = word_width
        shape = dict(addr_width=self.addr_width, shape=unsigned(word_width))
        super().__init__({"read": Out(memory.ReadPort.Signature(**shape)),
                          "write": Out(memory.WritePort.Signature(**shape))})

    @property
    def first_column(self):
        return self._first_column

    @property
    def columns_per_word(self):
        return self._columns_per_word

    @property
    def depth(self):
        return self._depth

    @property
    def word_width(self):
        return self._word_width

    @property
    def addr_width(self):
        return max(1, ceil_log2(self._depth))

    @property
    def sprams(self):
        """SPRAM blocks used."""
        return spram_blocks(self._word_width, self._depth)

    @property
    def latency(self):
        return 1

    def elaborate(self, platform):
        m = Module()
        # SPRAM blocks whatever the platform (off the chip they simulate as plain memories, as they behave).
        m.submodules.spram = spram = SinglePortMemory(shape=self._word_width, depth=self._depth, spram=True)
        write, read = spram.write_port(), spram.read_port()
        m.d.comb += [write.addr.eq(self.write.addr), write.data.eq(self.write.data), write.en.eq(self.write.en),
                     read.addr.eq(self.read.addr), read.en.eq(self.read.en), self.read.data.eq(read.data)]
        return m


class SPRAMCodeBanks:
    """The `code_store` factory handed to `hdl.engine.Engine`: makes one `SPRAMCodeStore`
    per column group and keeps them, in column order, for the board top to wire the host
    link's writes to."""

    def __init__(self):
        self.stores = []

    def __call__(self, first_column, columns_per_word, words, word_width):
        depth = words if isinstance(words, int) else len(words)
        store = SPRAMCodeStore(first_column=first_column, columns_per_word=columns_per_word,
                               depth=depth, word_width=word_width)
        self.stores.append(store)
        self.stores.sort(key=lambda s: s.first_column)
        return store

    @property
    def sprams(self):
        return sum(store.sprams for store in self.stores)
