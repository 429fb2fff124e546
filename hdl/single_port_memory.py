"""A memory with one address: iCE40UP SPRAMs on the iCE40, a plain `Memory` anywhere else."""

from amaranth import Cat, Const, Elaboratable, Module, Mux, Signal
from amaranth.lib import memory
from amaranth.utils import ceil_log2
from amaranth.vendor import SiliconBluePlatform

from .ice40_spram import ICE40SPRAM

__all__ = ["SinglePortMemory", "spram_blocks"]


def spram_blocks(width, depth):
    """SB_SPRAM256KA blocks a ``width x depth`` `SinglePortMemory` takes on the iCE40: ``ceil(width / 16)``
    side by side, ``ceil(depth / 16384)`` deep (a block is never shared between memories)."""
    return -(-width // ICE40SPRAM.WIDTH) * -(-depth // ICE40SPRAM.DEPTH)


class SinglePortMemory(Elaboratable):
    """An uninitialised memory whose write and read never happen in the same cycle: what SPRAM can hold.

    It has `amaranth.lib.memory.Memory`'s ``write_port`` and ``read_port``
    (one of each, synchronous read, ``en`` on both), so a component swaps it
    in for a `Memory` in one line. Its users keep the single-port rule: in a
    cycle with any write enable high the read port's ``en`` is ignored and
    its ``data`` afterwards is undefined (on the chip; here it is the old
    word); otherwise the read port's address is the memory's. The write and
    read addresses may differ (the address is the write's while writing,
    else the read's).

    On an iCE40 platform (`amaranth.vendor.SiliconBluePlatform`) it is
    `spram_blocks` SPRAMs (16 bits x 16,384 each; a write granularity is a
    multiple of 4 bits, the SPRAM's nibble mask); their contents are
    undefined until written, so nothing here has an ``init``. Anywhere else
    (simulation, ECP5) it is a plain `Memory` starting at zero.

    Parameters
    ----------
    shape : int
        Bits per word (unsigned).
    depth : int
        Words.
    spram : bool, optional
        Build it of `ICE40SPRAM` blocks whatever the platform (off the chip they simulate as plain memories,
        so a test runs the SPRAM arrangement); default: on an iCE40 platform only.
    """

    def __init__(self, *, shape, depth, spram=None):
        for name, value in (("shape", shape), ("depth", depth)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")
        self._width, self._depth, self._spram = shape, depth, spram
        self._write = self._read = None
        self._granularity = None

    @property
    def shape(self):
        return self._width

    @property
    def depth(self):
        return self._depth

    @property
    def sprams(self):
        """SPRAM blocks it takes on the iCE40 (`spram_blocks`)."""
        return spram_blocks(self._width, self._depth)

    @property
    def addr_width(self):
        return max(1, ceil_log2(self._depth))

    def write_port(self, *, granularity=None):
        """The write port (once): ``addr``, ``data``, ``en`` (one bit per `granularity` bits)."""
        if self._write is not None:
            raise ValueError("a single-port memory has one write port")
        if granularity is not None and (granularity < 1 or self._width % granularity):
            raise ValueError(f"granularity must divide the width {self._width}, not {granularity!r}")
        self._granularity = granularity or self._width
        self._write = memory.WritePort.Signature(addr_width=self.addr_width, shape=self._width,
                                                 granularity=granularity).create()
        return self._write

    def read_port(self):
        """The read port (once): ``addr``, ``en``, ``data`` (one cycle after ``en``, held otherwise)."""
        if self._read is not None:
            raise ValueError("a single-port memory has one read port")
        self._read = memory.ReadPort.Signature(addr_width=self.addr_width, shape=self._width).create()
        return self._read

    def elaborate(self, platform):
        m = Module()
        write, read = self._write, self._read
        if write is None:                                 # read-only use: nothing is ever written
            write = memory.WritePort.Signature(addr_width=self.addr_width, shape=self._width).create()
            self._granularity = self._width
        if read is None:
            read = memory.ReadPort.Signature(addr_width=self.addr_width, shape=self._width).create()
        writing = write.en.any()
        spram = isinstance(platform, SiliconBluePlatform) if self._spram is None else self._spram
        if not spram:
            m.submodules.memory = mem = memory.Memory(shape=self._width, depth=self._depth, init=[])
            w = mem.write_port(granularity=None if self._granularity == self._width else self._granularity)
            r = mem.read_port()
            m.d.comb += [w.addr.eq(write.addr), w.data.eq(write.data), w.en.eq(write.en),
                         r.addr.eq(read.addr), r.en.eq(read.en & ~writing), read.data.eq(r.data)]
            return m

        if self._granularity % 4:
            raise ValueError(f"on SPRAM a write granularity is a multiple of 4 bits, not {self._granularity}")
        W, D = ICE40SPRAM.WIDTH, ICE40SPRAM.DEPTH
        columns, banks = -(-self._width // W), -(-self._depth // D)
        low = ceil_log2(D)
        address = Signal(self.addr_width)
        m.d.comb += address.eq(Mux(writing, write.addr, read.addr))
        padded = Cat(write.data, Const(0, columns * W - self._width))
        # Nibble i of the padded word belongs to granule 4 i // granularity (past the width: never written).
        granules = [write.en[4 * i // self._granularity] if 4 * i < self._width else Const(0)
                    for i in range(columns * W // 4)]
        chosen = Signal(range(banks))                     # the bank the last read came from
        outputs = []
        for b in range(banks):
            here = (address[low:] == b) if banks > 1 else Const(1)
            words = []
            for c in range(columns):
                m.submodules[f"spram_{b}_{c}"] = spram = ICE40SPRAM()
                m.d.comb += [spram.addr.eq(address[:low]), spram.w_data.eq(padded[c * W:(c + 1) * W]),
                             spram.w_en.eq(writing & here), spram.w_mask.eq(Cat(*granules[4 * c:4 * c + 4])),
                             spram.en.eq(read.en & here)]
                words.append(spram.r_data)
            outputs.append(Cat(*words)[:self._width])
        if banks > 1:
            with m.If(read.en & ~writing):
                m.d.sync += chosen.eq(address[low:])
            for b in range(banks):
                with m.If(chosen == b):
                    m.d.comb += read.data.eq(outputs[b])
        else:
            m.d.comb += read.data.eq(outputs[0])
        return m
