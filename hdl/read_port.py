"""A synchronous block-RAM read port without Yosys's read-during-write logic."""

from amaranth import Signal

__all__ = ["NO_COLLISIONS", "ReadPort"]

#: ``attrs`` of a `amaranth.lib.memory.Memory` whose `ReadPort` s never read, for data that is used, an address
#: written in the same cycle: Yosys then builds no read-during-write logic around its block RAM.
NO_COLLISIONS = {"no_rw_check": 1}


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
        The word at the ``addr`` of the last cycle with ``en`` high (no reset: an undefined word until then).
    """

    def __init__(self, m, mem, name):
        self._port = mem.read_port(domain="comb")
        self.addr = self._port.addr
        self.en = Signal(init=1, name=f"{name}_en")
        self.data = Signal.like(self._port.data, name=f"{name}_data", reset_less=True)
        with m.If(self.en):
            m.d.sync += self.data.eq(self._port.data)
