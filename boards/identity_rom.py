"""The board's answer to IDENTIFY, held in a block-RAM-friendly memory so a bitstream patch can change it."""

from amaranth import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from hdl.bram_patch import PatchableContents

from .forward_protocol import ForwardIdentity
from .protocol import Identity

__all__ = ["IdentityRom", "ServesIdentity"]


class IdentityRom(PatchableContents, wiring.Component):
    """The packed `Identity` (or `ForwardIdentity`), read a byte at a time with one cycle of latency.

    The identity ends in a digest of the model the bitstream holds. It lives in a
    memory rather than in logic so that `hdl.patch_build` can swap it along with
    the biases and codes it describes: a patched board then names the model it
    now runs, and `boards.host` accepts that model and no other. The memory is
    16 bits wide, byte ``i`` the low (even ``i``) or high (odd ``i``) half of word
    ``i // 2``, so that with `use_placeholder` it is one 256 x 16 block RAM, the
    shape icebram patches.

    Parameters
    ----------
    identity : Identity or ForwardIdentity
        What the memory holds.

    Attributes
    ----------
    addr : Signal(range(identity.SIZE)), in
        Byte address, sampled every cycle.
    data : Signal(8), out
        The byte at the address of the previous cycle.
    """

    memory_width = 16

    def __init__(self, identity):
        if not isinstance(identity, (Identity, ForwardIdentity)):
            raise TypeError(f"Identity must be a boards.protocol.Identity or a boards.forward_protocol."
                            f"ForwardIdentity, not {identity!r}")
        self._identity = identity
        self._words = self.identity_words(identity)
        super().__init__({"addr": In(range(identity.SIZE)), "data": Out(8)})

    @staticmethod
    def identity_words(identity):
        """The memory's contents for `identity`: 16-bit words, little-endian byte pairs."""
        packed = identity.pack()
        return [int.from_bytes(packed[i:i + 2], "little") for i in range(0, len(packed), 2)]

    @property
    def identity(self):
        return self._identity

    @property
    def depth(self):
        return len(self._words)

    @property
    def words(self):
        return list(self._words)

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = mem = self._memory()
        port = mem.read_port()
        high = Signal()
        m.d.comb += port.addr.eq(self.addr[1:])
        m.d.sync += high.eq(self.addr[0])
        m.d.comb += self.data.eq(port.data.word_select(high, 8))
        return m


class ServesIdentity:
    """For a link that answers IDENTIFY (`boards.host_link.HostLink`, `boards.forward_link.ForwardLink`):
    its `identity` (``self._identity``) and the `IdentityRom` it is answered from, made on first use
    (an unused one would be an unused elaboratable)."""

    _identity_rom = None

    @property
    def identity(self):
        return self._identity

    @property
    def identity_rom(self):
        """The memory IDENTIFY is answered from (`IdentityRom`), which a bitstream patch can rewrite."""
        if self._identity_rom is None:
            self._identity_rom = IdentityRom(self._identity)
        return self._identity_rom
