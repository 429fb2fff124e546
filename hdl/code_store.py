"""The code ROM of a group of array columns: one block-RAM-friendly Memory."""

import numpy as np
from amaranth import Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from golden.rom_layout import RomLayout

from .bram_patch import PatchableContents

__all__ = ["CodeStore", "MAX_WORD_BITS", "check_layout"]

#: Widest code word (golden packs words into 64-bit integers).
MAX_WORD_BITS = 64


def check_layout(layout):
    if not isinstance(layout, RomLayout):
        raise TypeError(f"Layout must be a golden.rom_layout.RomLayout, not {layout!r}")
    return layout


def check_columns_per_word(columns_per_word, code_bits):
    if isinstance(columns_per_word, bool) or not isinstance(columns_per_word, int) or columns_per_word < 1:
        raise ValueError(f"Columns per word must be a positive integer, not {columns_per_word!r}")
    if columns_per_word * code_bits > MAX_WORD_BITS:
        raise ValueError(f"Columns per word must keep a word within {MAX_WORD_BITS} bits; "
                         f"{columns_per_word} columns of {code_bits}-bit codes do not")
    return columns_per_word


class CodeStore(PatchableContents, wiring.Component):
    """The codes of columns ``first_column .. first_column + columns_per_word - 1``, one word per address.

    Word ``a`` holds entry ``a`` of each column of the group, little-endian
    (column `first_column` in the low `code_bits`), exactly
    `golden.rom_layout.RomLayout.group_words`. The memory is an
    ``amaranth.lib.memory.Memory`` initialised with those words, so it maps to
    block RAM; `use_placeholder` elaborates it with other words instead, for a
    bitstream whose codes icebram swaps in afterwards (`hdl.patch_build`).

    Reads are synchronous: ``read.data`` shows the word at ``read.addr`` one
    cycle after a cycle with ``read.en`` high, and holds while ``read.en`` is
    low. With ``writable=True`` a write port lets a board load codes at run
    time; a read of the address being written returns the old word.

    Parameters
    ----------
    layout : RomLayout
    first_column : int
        A multiple of `columns_per_word`, below ``layout.columns``.
    columns_per_word : int
        Columns per word (default 1: one memory per column); the word is
        ``columns_per_word * layout.code_bits`` bits, at most 64.
    writable : bool

    Members
    -------
    read : ``Out(memory.ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(word_width)))``
    write : ``Out(memory.WritePort.Signature(...))``
        Only with ``writable=True``.

    Raises
    ------
    TypeError, ValueError
        On a parameter of the wrong type or out of range; the message repeats it.
    """

    def __init__(self, *, layout, first_column=0, columns_per_word=1, writable=False):
        self._layout = check_layout(layout)
        self._columns_per_word = check_columns_per_word(columns_per_word, layout.code_bits)
        if (isinstance(first_column, bool) or not isinstance(first_column, int)
                or not 0 <= first_column < layout.columns or first_column % columns_per_word):
            raise ValueError(f"First column must be a multiple of {columns_per_word} below {layout.columns}, "
                             f"not {first_column!r}")
        if not isinstance(writable, bool):
            raise TypeError(f"Writable must be a bool, not {writable!r}")
        self._first_column = first_column
        self._writable = writable
        self._words = [int(w) for w in np.asarray(layout.group_words(first_column, columns_per_word))]
        members = {"read": Out(memory.ReadPort.Signature(addr_width=self.addr_width,
                                                         shape=unsigned(self.word_width)))}
        if writable:
            members["write"] = Out(memory.WritePort.Signature(addr_width=self.addr_width,
                                                              shape=unsigned(self.word_width)))
        super().__init__(members)

    @property
    def layout(self):
        return self._layout

    @property
    def first_column(self):
        return self._first_column

    @property
    def columns_per_word(self):
        return self._columns_per_word

    @property
    def code_bits(self):
        return self._layout.code_bits

    @property
    def word_width(self):
        return self._columns_per_word * self._layout.code_bits

    @property
    def depth(self):
        return len(self._words)

    @property
    def addr_width(self):
        return ceil_log2(self.depth)

    @property
    def words(self):
        """The initial contents, one int per address."""
        return list(self._words)

    @property
    def writable(self):
        return self._writable

    @property
    def memory_width(self):
        return self.word_width

    @property
    def latency(self):
        """Read latency in cycles (1)."""
        return 1

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = mem = self._memory()
        port = mem.read_port()
        m.d.comb += [port.addr.eq(self.read.addr), port.en.eq(self.read.en), self.read.data.eq(port.data)]
        if self._writable:
            write = mem.write_port()
            m.d.comb += [write.addr.eq(self.write.addr), write.data.eq(self.write.data),
                         write.en.eq(self.write.en)]
        return m
