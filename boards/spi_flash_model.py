"""The far end of the iCEBreaker's flash wires in simulation: a W25Q128JV holding an image, checking every command."""

import enum
import math

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hdl.spi_flash_reader import RETURN_CYCLES

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
    DESELECTED = 11     # an SCK pulse while the flash is not selected


class SPIFlashModel(wiring.Component):
    """A W25Q128JV as a reader of it must use it, holding `image` at `offset`, flagging every misuse.

    It answers the commands `hdl.spi_flash_reader.SPIFlashReader` sends: a
    release from power-down (0xAB; the flash starts powered down, as the
    iCE40 may leave it, and takes the next command only `release_cycles`
    later), a volatile write enable (0x50) followed by a write of status
    register 2 (0x31) with the quad enable bit alone, and quad output fast
    reads (0x6B, 24-bit address, 8 dummy clocks, then the bytes from that
    address on, high nibble first on DQ3-0; past the image's end, erased
    flash: 0xFF). Anything else (another command, a wrong length, a status
    byte but QE, a quad read before QE, a read outside the image, both sides
    driving a wire, an undriven DI, /HOLD low, a clock while deselected) sets
    `error` to a `FlashError` (the first one is kept), so a test fails rather
    than reading garbage.

    Signals are the reader's ports, a clock cycle at a time, as the reader
    defines them (SPI mode 0, SCK at the clock): ``cs``, ``dq_o`` and
    ``dq_oe`` hold for the cycle, and ``sck`` high is one SCK pulse in it
    (rising mid-cycle, where DI is sampled, falling at the cycle's end, where
    the flash launches its next data nibble). The board's pads delay every
    output alike, so the model takes them as they come; what it delays is
    its answer: the nibble a pulse's fall launches is on `dq_i`
    `return_cycles` cycles after that pulse's cycle (the reader's
    `hdl.spi_flash_reader.RETURN_CYCLES`: the output registers, the
    clock-to-output time within the next cycle, the input registers) and
    stays there until the next one. The flash drives DQ0-3 from the fall of
    the last dummy clock to the end of the cycle that deselects it.

    Parameters
    ----------
    image : bytes
        What the flash holds from `offset` on.
    offset : int
        Flash byte address of the image's first byte.
    release_cycles : int
        Clock cycles of tRES1 (`RELEASE_SECONDS` at the clock).
    return_cycles : int
        Cycles from a pulse to its nibble on `dq_i` (at least 1; default the reader's `RETURN_CYCLES`).

    Members
    -------
    cs, sck : In(1)
        Chip select (high: selected) and one SCK pulse in the cycle.
    dq_o, dq_oe : In(4)
        DQ0-3 as the host drives them.
    dq_i : Out(4)
        DQ0-3 as the host's input registers read them (0 where the flash does not drive).
    error : Out(FlashError)
        The first protocol error, sticky.
    """

    def __init__(self, *, image, offset, release_cycles, return_cycles=RETURN_CYCLES):
        if not isinstance(image, (bytes, bytearray)) or not image:
            raise ValueError(f"Image must be non-empty bytes, not {type(image).__name__} of {len(image or '')}")
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 1 << 24 \
                or offset + len(image) > 1 << 24:
            raise ValueError(f"Offset must place the image inside the 16 MiB flash, not {offset!r}")
        if isinstance(release_cycles, bool) or not isinstance(release_cycles, int) or release_cycles < 1:
            raise ValueError(f"Release cycles must be a positive integer, not {release_cycles!r}")
        if isinstance(return_cycles, bool) or not isinstance(return_cycles, int) or return_cycles < 1:
            raise ValueError(f"Return cycles must be a positive integer, not {return_cycles!r}")
        self._image, self._offset, self._release = bytes(image), offset, release_cycles
        self._return = return_cycles
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

    @property
    def return_cycles(self):
        return self._return

    def elaborate(self, platform):
        m = Module()
        m.submodules.image = image = memory.Memory(shape=8, depth=len(self._image), init=self._image)
        byte = image.read_port(domain="comb")

        last_cs = Signal()
        m.d.sync += last_cs.eq(self.cs)
        pulse = self.cs & self.sck
        select = self.cs & ~last_cs
        deselect = ~self.cs & last_cs

        clocks = Signal(range(READ_CLOCKS + 1))     # pulses since select, saturating (before this cycle's)
        bits = Signal(24)                           # DI as sampled, the last bit lowest
        command = Signal(8)                         # the selection's first byte (0 until it is in)
        awake, since_wake, write_enabled, quad = Signal(), Signal(range(self._release + 1)), Signal(), Signal()
        reading = Signal()                          # the command is 0x6B and the address is in
        driving = Signal()                          # the flash drives DQ0-3
        nibble = Signal(range(2 * (1 << 24)))       # the nibble on the wire: address * 2 + (1 for the low one)
        start = Signal(24)
        wire = Signal(4)                            # what the flash drives this cycle (0: nothing)

        def fail(code):
            with m.If(self.error == FlashError.NONE):
                m.d.sync += self.error.eq(code)

        # Pulses before this cycle's, in this selection (a cycle may select and pulse).
        count = Mux(select, 0, clocks)

        # The pulse's fall launches the next nibble: the high one at the read's start after the last dummy clock.
        launch = pulse & reading & (count >= READ_CLOCKS - 1)
        next_nibble = Mux(driving, nibble + 1, start * 2)
        address = (next_nibble >> 1) - self._offset
        m.d.comb += byte.addr.eq(address)
        value = Mux(address < len(self._image), byte.data, 0xFF)
        with m.If(launch):
            m.d.sync += [driving.eq(1), nibble.eq(next_nibble),
                         wire.eq(Mux(next_nibble[0], value[:4], value[4:]))]
        # The wire reaches `dq_i` through the rest of the return path.
        returned = wire
        for _ in range(self._return - 1):
            later = Signal(4)
            m.d.sync += later.eq(returned)
            returned = later
        m.d.comb += self.dq_i.eq(returned)

        with m.If(since_wake != self._release):
            m.d.sync += since_wake.eq(since_wake + 1)
        with m.If(self.cs & self.dq_oe[1] | driving & (self.dq_oe != 0)):
            fail(FlashError.CONTENTION)
        with m.If(self.cs & ~quad & ~(self.dq_oe[2] & self.dq_oe[3] & self.dq_o[2] & self.dq_o[3])):
            fail(FlashError.HOLD)
        with m.If(~self.cs & self.sck):
            fail(FlashError.DESELECTED)

        with m.If(select):
            m.d.sync += [clocks.eq(0), reading.eq(0), driving.eq(0), command.eq(0)]
            with m.If(awake & (since_wake != self._release)):
                fail(FlashError.EARLY)
        with m.If(deselect):
            # The flash lets go of DQ0-3 within the deselecting cycle (tSHQZ): the host may drive them after it.
            m.d.sync += [reading.eq(0), driving.eq(0), write_enabled.eq(0), wire.eq(0)]
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
        with m.If(pulse):
            with m.If(count != READ_CLOCKS):
                m.d.sync += clocks.eq(count + 1)
            with m.If(count < 32):
                with m.If(~self.dq_oe[0]):
                    fail(FlashError.UNDRIVEN)
                m.d.sync += bits.eq(Cat(self.dq_o[0], bits[:23]))
            with m.If(count == 7):
                m.d.sync += command.eq(command_in)
                with m.If(~awake & (command_in != 0xAB)):
                    fail(FlashError.ASLEEP)
                with m.Elif((command_in != 0xAB) & (command_in != 0x50) & (command_in != 0x31) & (command_in != 0x6B)):
                    fail(FlashError.COMMAND)
                with m.Elif((command_in == 0x6B) & ~quad):
                    fail(FlashError.NOT_QUAD)
            with m.If((count == 31) & (command == 0x6B)):
                m.d.sync += [reading.eq(1), start.eq(Cat(self.dq_o[0], bits[:23]))]
                first = Cat(self.dq_o[0], bits[:23])
                with m.If((first < self._offset) | (first >= self._offset + len(self._image))):
                    fail(FlashError.ADDRESS)
        return m
