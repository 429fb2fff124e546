"""A synchronous block-RAM read port without Yosys's read-during-write logic."""

from amaranth import Signal

__all__ = ["NO_COLLISIONS", "ReadPort", "YOSYS_AFTER_READ"]

#: ``attrs`` of a `amaranth.lib.memory.Memory` whose `ReadPort` s never read, for data that is used, an address
#: written in the same cycle: Yosys then builds no read-during-write logic around its block RAM.
NO_COLLISIONS = {"no_rw_check": 1}

#: The attribute marking a `ReadPort`'s register.
_MARK = "potgen_read_data"

#: Yosys commands for every flow, right after reading the design: they drop the initial value Amaranth gives
#: each `ReadPort`'s register (0), which a block RAM's output register cannot have, so Yosys would rebuild it
#: from a flag and an AND gate per bit (about 17 iCE40 LUT4 for a 16-bit word). The word before the first read
#: is then undefined on the chip (0 in simulation): read it only after a read.
YOSYS_AFTER_READ = f"proc; setattr -unset init a:{_MARK}"


class ReadPort:
    """A synchronous read port of `mem` (made with ``attrs=NO_COLLISIONS``), built as an asynchronous port and
    a register.

    It behaves as ``mem.read_port()`` does in simulation (``data`` one cycle
    after ``addr``, held while ``en`` is low, the old word if the address is
    written in the same cycle), but Yosys honours a memory's ``no_rw_check``
    only when it merges such a register into the port itself: a synchronous
    port from Amaranth is taken to need its read-before-write behaviour,
    which Yosys builds around an iCE40 or ECP5 block RAM from a delayed copy
    of the write (address, data, enable: flip-flops no LUT feeds) and a bypass
    multiplexer, about 3 logic cells per bit of the word on the iCE40. The
    register is merged into the block RAM's own output register, so it costs
    nothing. On the chip a read of an address written in the same cycle
    returns an undefined word: use it only where such a word is never used.
    Synthesis runs `YOSYS_AFTER_READ` (`hdl.bench.synthesize`,
    `hdl.forward.resources`, the forward build), or the register's initial
    value costs a LUT4 per bit.

    Parameters
    ----------
    m : amaranth.Module
        The module the register goes in (its ``sync`` domain).
    mem : amaranth.lib.memory.Memory
        The memory, a submodule of `m` or of a module inside it.
    name : str
        Prefix of the port's signal names.

    Members
    -------
    addr : Signal
        The address read (the asynchronous port's).
    en : Signal, init 1
        Read enable: while low, ``data`` holds.
    data : Signal
        The word at the ``addr`` of the last cycle with ``en`` high (no reset: an undefined word on the chip until
        the first read).
    """

    def __init__(self, m, mem, name):
        self._port = mem.read_port(domain="comb")
        self.addr = self._port.addr
        self.en = Signal(init=1, name=f"{name}_en")
        self.data = Signal.like(self._port.data, name=f"{name}_data", reset_less=True,
                                attrs={_MARK: 1})
        with m.If(self.en):
            m.d.sync += self.data.eq(self._port.data)
