"""The bias ROM of the array: every column's biases in one block-RAM-friendly Memory."""

import numpy as np
from amaranth import Module, unsigned
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out
from amaranth.utils import ceil_log2

from golden.datapath import check_acc_bits
from golden.pot_format import PotFormat

from .bram_patch import PatchableContents
from .code_store import check_layout

__all__ = ["BiasStore", "bias_memory_words", "negative_counts", "stored_biases"]


def _signed_width(value):
    """Bits of the narrowest two's-complement integer holding `value`."""
    value = int(value)
    return (value if value >= 0 else -value - 1).bit_length() + 1


def negative_counts(layout):
    """Per bias entry ``(c, a)`` of `layout` (the shape of ``layout.bias_images``), the number of
    negative non-zero codes of that channel: what a PoT array of ones'-complement terms
    (`hdl.pot_pe.PotPE` with ``exact_negation=False``) leaves out of the channel's sum. All zero
    for an INT8 layout."""
    counts = np.zeros(layout.bias_images.shape, np.int64)
    if layout.bits is None:
        return counts
    fmt = PotFormat(layout.bits)
    codes = layout.code_images.astype(np.int64)
    negative = ((codes >> fmt.exponent_bits) & 1) & ((codes & ((1 << fmt.exponent_bits) - 1)) != fmt.zero_code)
    for p in layout.layers:
        image = negative[:, p.code_base:p.code_base + p.code_depth].reshape(layout.columns, p.slots, p.k)
        counts[:, p.bias_base:p.bias_base + p.slots] = image.sum(axis=2)
    return counts


def stored_biases(layout):
    """The values the bias memory holds, (C, bias_depth) Python ints: each bias plus its channel's
    `negative_counts`, which the engine's array leaves out of the sum it adds the bias to."""
    return [[int(b) + int(n) for b, n in zip(biases, counts)]
            for biases, counts in zip(layout.bias_images, negative_counts(layout))]


def bias_memory_words(layout, width):
    """The bias memory's contents for `layout` at `width` bits: entry ``a * C + c`` is
    column ``c``'s ``stored_biases`` entry ``a`` as a `width`-bit two's-complement word
    (one list of ints, address order)."""
    mask = (1 << width) - 1
    columns = stored_biases(layout)
    return [columns[c][a] & mask for a in range(layout.bias_depth) for c in range(layout.columns)]


class BiasStore(PatchableContents, wiring.Component):
    """The biases of a layout, channel after channel: address ``bias_base * C + n`` holds
    the bias of output channel ``n`` of the layer whose first bias entry is ``bias_base``,
    plus, for PoT codes, the channel's `negative_counts` (the engine's array sums
    ones'-complement terms and leaves those out).

    That is entry ``a * C + c`` = column ``c``'s `stored_biases` entry ``a``: the bias ROM
    of column ``c`` (one word per slot) interleaved with the others. The engine
    reads biases one channel at a time as results leave, so one memory serves
    every column with no C:1 multiplexer and, on an FPGA, one block RAM rather
    than one per column.

    Words are ``width``-bit two's complement; read them with ``.as_signed()``.
    The default width is the narrowest that holds every stored value exactly, capped at
    `acc_bits` (a narrower accumulator keeps biases modulo ``2**acc_bits``,
    which is all a wrapping sum needs); a writable store is `acc_bits` wide.

    Reads are synchronous (one cycle; ``read.data`` holds while ``read.en`` is low).

    `use_placeholder` makes a store for a bitstream whose biases are swapped in
    afterwards with icebram (`hdl.bram_patch`): the memory is then elaborated
    with the given random words, padded to a multiple of 256 entries.

    Parameters
    ----------
    layout : RomLayout
    acc_bits : int
    writable : bool
        Add a write port so a board can load biases at run time.

    Members
    -------
    read : ``Out(memory.ReadPort.Signature(addr_width=ceil_log2(depth), shape=unsigned(width)))``
    write : ``Out(memory.WritePort.Signature(...))``
        Only with ``writable=True``.

    Raises
    ------
    TypeError, ValueError
        On a parameter of the wrong type or out of range; the message repeats it.
    """

    def __init__(self, *, layout, acc_bits, writable=False):
        self._layout = check_layout(layout)
        self._acc_bits = check_acc_bits(acc_bits)
        if not isinstance(writable, bool):
            raise TypeError(f"Writable must be a bool, not {writable!r}")
        self._writable = writable
        needed = max([2] + [_signed_width(b) for column in stored_biases(layout) for b in column])
        self._width = self._acc_bits if writable else min(self._acc_bits, needed)
        self._words = bias_memory_words(layout, self._width)
        members = {"read": Out(memory.ReadPort.Signature(addr_width=self.addr_width, shape=unsigned(self._width)))}
        if writable:
            members["write"] = Out(memory.WritePort.Signature(addr_width=self.addr_width,
                                                              shape=unsigned(self._width)))
        super().__init__(members)

    @property
    def layout(self):
        return self._layout

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def width(self):
        return self._width

    @property
    def depth(self):
        return len(self._words)

    @property
    def addr_width(self):
        return ceil_log2(self.depth)

    @property
    def words(self):
        return list(self._words)

    @property
    def writable(self):
        return self._writable

    @property
    def latency(self):
        return 1

    @property
    def memory_width(self):
        return self._width

    def use_placeholder(self, words):
        """Elaborate the memory with `words` (ints of `width` bits, a multiple of 256 of them, at least
        `depth`) instead of the biases, for a bitstream that icebram patches afterwards. Entries past
        `depth` are never read. Call before elaboration; the biases stay in `words`."""
        if self._writable:
            raise ValueError("A writable bias store is loaded at run time; it needs no placeholder")
        super().use_placeholder(words)

    def address(self, layer, channel):
        """The address of channel `channel` of the layer named `layer`."""
        placement = self._layout.layer(layer)
        if not 0 <= channel < placement.n:
            raise ValueError(f"Channel must be from 0 to {placement.n - 1}, not {channel!r}")
        return placement.bias_base * self._layout.columns + channel

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
