"""The far end of the iCEBreaker's flash wires in simulation: a W25Q128JV holding an image, checking every command."""

import enum
import math

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPIFlashModel", "FlashError"]

#: The W25Q128JV's tRES1: after a release from power-down (0xAB), the time before it takes another command.
RELEASE_SECONDS = 3e-6
#: Clocks of a quad output fast read (0x6B) before its data: command 8, address 24, dummy 8.
READ_CLOCKS = 40


class FlashError(enum.IntEnum):
    """What `SPIFlashModel.error` holds: the first protocol error seen (0: none)."""

    NONE = 0
    ASLEEP = 1          # a command other than 0xAB while the flash is powered down
    EARLY = 2           # selected again sooner than tRES1 after the 0xAB
    COMMAND = 3         # a command this flash's reader must not send
    LENGTH = 4          # deselected after a number of clocks the command does not have
    STATUS = 5          # 0x31 without 0x50 just before it, or a status byte other than QE alone (0x02)
    NOT_QUAD = 6        # 0x6B while the quad enable bit is clear (DQ2/DQ3 are still /WP and /HOLD)
    ADDRESS = 7         # a read starting outside the image
    CONTENTION = 8      # the host drives DQ1 (the flash's DO) or any DQ while the flash drives them
    HOLD = 9            # /WP or /HOLD not driven high while selected and quad is off
    UNDRIVEN = 10       # DI (DQ0) not driven on a rising edge of a command, address or status byte
    SETUP = 11          # DI changed on the rising edge that samples it


class SPIFlashModel(wiring.Component):
    """A W25Q128JV as a reader of it must use it, holding `image` at `offset`, flagging every misuse.

    It answers the commands `hdl.spi_flash_reader.SPIFlashReader` sends: a
    release from power-down (0xAB; the flash starts powered down, as the
    iCE40 may leave it, and takes the next command only `release_cycles`
    later), a volatile write enable (0x50) followed by a write of status
    register 2 (0x31) with the quad enable bit alone, and quad output fast
    reads (0x6B, 24-bit address, 8 dummy clocks, then the bytes from that
    address on, high nibble first on DQ3-0; past the image's end, erased
    flash: 0xFF). SPI mode 0: DI is sampled on SCK's rising edges, data goes
    out on its falling edges. Anything else (another command, a wrong
    length, a status byte but QE, a quad read before QE, a read outside the
    image, both sides driving a wire, an undriven or changing DI, /HOLD low)
    sets `error` to a `FlashError` (the first one is kept), so a test fails
    rather than reading garbage.

    Signals are the reader's pins, seen a clock cycle at a time: an SCK edge
    is a cycle whose ``sck`` differs from the last; the nibble a falling edge
    launches is on `dq_i` in that same cycle (the flash's clock-to-output time
    is within the cycle), and stays there until the next falling edge.

    Parameters
    ----------
    image : bytes
        What the flash holds from `offset` on.
    offset : int
        Flash byte address of the image's first byte.
    release_cycles : int
        Clock cycles of tRES1 (`RELEASE_SECONDS` at the clock).

    Members
    -------
    cs, sck : In(1)
        Chip select (high: selected) and clock.
    dq_o, dq_oe : In(4)
        DQ0-3 as the host drives them.
    dq_i : Out(4)
        DQ0-3 as the flash drives them (0 where it does not).
    error : Out(FlashError)
        The first protocol error, sticky.
    """

    def __init__(self, *, image, offset, release_cycles):
        if not isinstance(image, (bytes, bytearray)) or not image:
            raise ValueError(f"Image must be non-empty bytes, not {type(image).__name__} of {len(image or '')}")
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 1 << 24 \
                or offset + len(image) > 1 << 24:
            raise ValueError(f"Offset must place the image inside the 16 MiB flash, not {offset!r}")
        if isinstance(release_cycles, bool) or not isinstance(release_cycles, int) or release_cycles < 1:
            raise ValueError(f"Release cycles must be a positive integer, not {release_cycles!r}")
        self._image, self._offset, self._release = bytes(image), offset, release_cycles
        super().__init__({"cs": In(1), "sck": In(1), "dq_o": In(4), "dq_oe": In(4), "dq_i": Out(4),
                          "error": Out(FlashError)})

    @staticmethod
    def release_cycles_at(clock_hz):
        """tRES1 in whole cycles of `clock_hz`."""
        return math.ceil(RELEASE_SECONDS * clock_hz)

    @property
    def image(self):
        return self._image

    @property
    def offset(self):
        return self._offset

    def elaborate(self, platform):
        m = Module()
        m.submodules.image = image = memory.Memory(shape=8, depth=len(self._image), init=self._image)
        byte = image.read_port(domain="comb")

        last_sck, last_cs, last_di = Signal(), Signal(), Signal()
        m.d.sync += [last_sck.eq(self.sck), last_cs.eq(self.cs), last_di.eq(self.dq_o[0])]
        rise = self.cs & last_cs & ~last_sck & self.sck
        fall = self.cs & last_cs & last_sck & ~self.sck
        select = self.cs & ~last_cs
        deselect = ~self.cs & last_cs

        clocks = Signal(range(READ_CLOCKS + 1))     # rising edges since select, saturating
        bits = Signal(24)                           # DI as sampled, the last bit lowest
        command = Signal(8)                         # the selection's first byte
        awake, since_wake, write_enabled, quad = Signal(), Signal(range(self._release + 1)), Signal(), Signal()
        reading = Signal()                          # the command is 0x6B and the address is in
        driving = Signal()                          # the flash drives DQ0-3
        nibble = Signal(range(2 * (1 << 24)))       # the nibble on the wire: address * 2 + (1 for the low one)
        start = Signal(24)

        def fail(code):
            with m.If(self.error == FlashError.NONE):
                m.d.sync += self.error.eq(code)

        next_nibble = Mux(driving, nibble + 1, start * 2)
        wire = Mux(fall & reading & (clocks == READ_CLOCKS), next_nibble, nibble)
        address = (wire >> 1) - self._offset
        m.d.comb += byte.addr.eq(address)
        value = Mux(address < len(self._image), byte.data, 0xFF)
        m.d.comb += self.dq_i.eq(Mux(driving | fall & reading & (clocks == READ_CLOCKS),
                                     Mux(wire[0], value[:4], value[4:]), 0))

        with m.If(since_wake != self._release):
            m.d.sync += since_wake.eq(since_wake + 1)
        with m.If(self.cs & self.dq_oe[1] | driving & (self.dq_oe != 0)):
            fail(FlashError.CONTENTION)
        with m.If(self.cs & ~quad & ~(self.dq_oe[2] & self.dq_oe[3] & self.dq_o[2] & self.dq_o[3])):
            fail(FlashError.HOLD)

        with m.If(select):
            m.d.sync += [clocks.eq(0), reading.eq(0), driving.eq(0)]
            with m.If(awake & (since_wake != self._release)):
                fail(FlashError.EARLY)
        with m.If(deselect):
            m.d.sync += [reading.eq(0), driving.eq(0), write_enabled.eq(0)]
            with m.If(clocks != 0):
                with m.Switch(command):
                    with m.Case(0xAB):
                        with m.If(clocks == 8):
                            m.d.sync += [awake.eq(1), since_wake.eq(1)]
                        with m.Else():
                            fail(FlashError.LENGTH)
                    with m.Case(0x50):
                        with m.If(clocks == 8):
                            m.d.sync += write_enabled.eq(1)
                        with m.Else():
                            fail(FlashError.LENGTH)
                    with m.Case(0x31):
                        with m.If(clocks != 16):
                            fail(FlashError.LENGTH)
                        with m.Elif(~write_enabled | (bits[:8] != 0x02)):
                            fail(FlashError.STATUS)
                        with m.Else():
                            m.d.sync += quad.eq(1)
        # The command is decoded as its 8th bit arrives.
        command_in = Cat(self.dq_o[0], bits[:7])
        with m.If(rise):
            with m.If(clocks != READ_CLOCKS):
                m.d.sync += clocks.eq(clocks + 1)
            with m.If(clocks < 32):
                with m.If(~self.dq_oe[0]):
                    fail(FlashError.UNDRIVEN)
                with m.If(self.dq_o[0] != last_di):
                    fail(FlashError.SETUP)
                m.d.sync += bits.eq(Cat(self.dq_o[0], bits[:23]))
            with m.If(clocks == 7):
                m.d.sync += command.eq(command_in)
                with m.If(~awake & (command_in != 0xAB)):
                    fail(FlashError.ASLEEP)
                with m.Elif((command_in != 0xAB) & (command_in != 0x50) & (command_in != 0x31) & (command_in != 0x6B)):
                    fail(FlashError.COMMAND)
                with m.Elif((command_in == 0x6B) & ~quad):
                    fail(FlashError.NOT_QUAD)
            with m.If((clocks == 31) & (command == 0x6B)):
                m.d.sync += [reading.eq(1), start.eq(Cat(self.dq_o[0], bits[:23]))]
                first = Cat(self.dq_o[0], bits[:23])
                with m.If((first < self._offset) | (first >= self._offset + len(self._image))):
                    fail(FlashError.ADDRESS)
        with m.If(fall & reading & (clocks == READ_CLOCKS)):
            m.d.sync += [driving.eq(1), nibble.eq(next_nibble)]
        return m
