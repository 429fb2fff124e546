"""A block RAM read port that Yosys maps with no read-during-write logic around it."""

from amaranth import Signal

__all__ = ["NO_COLLISIONS", "RegisteredReadPort"]

#: Attributes of a memory whose reads never need the word written in the same cycle (Yosys's ``no_rw_check``).
NO_COLLISIONS = {"no_rw_check": 1}


class RegisteredReadPort:
    """A synchronous read port of `memory` built as an asynchronous port and a register (`data`).

    It behaves as ``memory.read_port()`` does: `data` is the word at `addr`
    one cycle later, held while `en` is low. A synchronous port from Amaranth
    is taken to need the old word when its address is written in the same
    cycle, and Yosys builds that around an iCE40 or ECP5 block RAM from a
    delayed copy of the write (address, data, enable) and a bypass
    multiplexer: about 2.5 logic cells a bit of the word (40 for a 16-bit
    word). Yosys honours the memory's ``no_rw_check`` (`NO_COLLISIONS`) only
    when it merges such a register into the port itself, where it costs
    nothing. The caller guarantees that a word read in the cycle it is written
    is never used (`hdl.engine` does the same for its buffers).

    Parameters
    ----------
    m : Module
        The module the port and its register are added to (``sync`` domain).
    memory : amaranth.lib.memory.Memory
        Made with ``attrs=NO_COLLISIONS``.
    name : str
        Prefix of the register's and enable's names.
    """

    def __init__(self, m, memory, *, name):
        port = memory.read_port(domain="comb")
        self.addr = port.addr
        self.en = Signal(init=1, name=f"{name}_en")
        self.data = Signal.like(port.data, name=f"{name}_data", reset_less=True)
        with m.If(self.en):
            m.d.sync += self.data.eq(port.data)
