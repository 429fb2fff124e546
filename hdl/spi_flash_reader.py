"""A byte stream from a quad-SPI flash (W25Q128JV): seek to an address, then read on from it."""

import math

from amaranth import Cat, Const, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPIFlashReader", "WAKE_SECONDS", "QUAD_ENABLE", "READ_DUMMY_CLOCKS"]

#: The flash's commands: release from power-down, write enable for the volatile status bits, write status
#: register 2, quad output fast read.
RELEASE_POWER_DOWN, VOLATILE_WRITE_ENABLE, WRITE_STATUS_2, QUAD_OUTPUT_READ = 0xAB, 0x50, 0x31, 0x6B
#: Status register 2 as written (volatile): QE (bit 1) set, everything else 0 (SRL, the OTP lock bits LB1-3
#: and CMP stay as they are: an OTP bit cannot be cleared, and 0 never sets one).
QUAD_ENABLE = 0x02
#: Dummy clocks between the address and the first data nibble of a quad output fast read (0x6B).
READ_DUMMY_CLOCKS = 8
#: The flash's tRES1 (W25Q128JV): after release from power-down, the time before it takes the next command.
WAKE_SECONDS = 3e-6
#: SCK pulses of one read before the first data nibble: command 8, address 24, dummy 8.
_READ_PULSES = 8 + 24 + READ_DUMMY_CLOCKS


class SPIFlashReader(wiring.Component):
    """Streams bytes of a quad-SPI flash from any address: a seek, then one byte after another.

    At reset it wakes the flash (release from power-down, 0xAB, then the
    flash's 3 µs, `WAKE_SECONDS`) and sets its quad enable bit in the
    volatile status register (0x50, then 0x31 with `QUAD_ENABLE`: lost at the
    next power cycle, so the flash's non-volatile bits are never written).
    Each seek then starts a quad output fast read (0x6B: command and 24-bit
    address on DQ0, 8 dummy clocks, data on DQ0-3, high nibble first) at
    ``offset + address``; the read continues for as long as bytes are taken,
    the flash's clock stopping while its byte is not taken.

    SCK runs at half the clock: a byte every 4 cycles while the consumer
    keeps up (`bytes_per_cycle`), the first byte ``2 + 2 * 40 + 3`` cycles
    after a seek (`first_byte_cycles`). SPI mode 0: every output is a
    flip-flop of this component and DQ0 changes only with SCK's falling
    edges; a data nibble is read from the pins no sooner than a whole cycle
    after the falling edge that launched it (the flash's clock-to-output time
    has the cycle), and the next falling edge comes only once it is read (the
    flash holds its output while SCK stands still), so the byte register is
    the reader's only buffer. `boards.forward_top` puts the pins on the
    iCEBreaker's flash (``spi_flash_4x``); `boards.spi_flash_model.SPIFlashModel`
    answers them in simulation.

    Contract (`FORWARD_INTERFACE.md` §5): after a seek is taken, the next byte
    offered on `data` is the byte at that address, then the following ones;
    no byte read before a seek is offered after it (nor in the cycle of a
    seek: `data.valid` is low while `seek.valid` is high). A seek is taken at
    any time once the flash is set up (`seek.ready` is low only during the
    set-up after reset), also while bytes are pending or a read is starting.

    Parameters
    ----------
    offset : int
        Flash byte address of image address 0 (added to every seek).
    clock_hz : float
        The clock, for the flash's wake-up time (`wake_cycles`).

    Members
    -------
    seek : In(stream.Signature(24))
        An image address to read from.
    data : Out(stream.Signature(8))
        The bytes from the last seek's address on.
    cs : Out(1)
        Chip select, high when the flash is selected (the pin is active low).
    sck : Out(1)
        The flash's clock (low when idle: SPI mode 0).
    dq_o : Out(4)
    dq_oe : Out(4)
        DQ0-3 driven by this side: DQ0 is the flash's DI, DQ2 and DQ3 its /WP and /HOLD (driven high until
        the data phase: /HOLD low would pause a flash whose quad bit is still clear).
    dq_i : In(4)
        DQ0-3 as the pins read (DQ1 is the flash's DO).

    Raises
    ------
    ValueError
        If `offset` is not an address of a 24-bit flash, or `clock_hz` not a positive frequency.
    """

    def __init__(self, *, offset=0, clock_hz):
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 1 << 24:
            raise ValueError(f"Offset must be a flash byte address from 0 to 0xFFFFFF, not {offset!r}")
        if isinstance(clock_hz, bool) or not isinstance(clock_hz, (int, float)) or not clock_hz > 0:
            raise ValueError(f"Clock must be a positive number of Hz, not {clock_hz!r}")
        self._offset = offset
        self._clock_hz = clock_hz
        super().__init__({
            "seek": In(stream.Signature(24)),
            "data": Out(stream.Signature(8)),
            "cs": Out(1), "sck": Out(1), "dq_o": Out(4), "dq_oe": Out(4), "dq_i": In(4),
        })

    @property
    def offset(self):
        return self._offset

    @property
    def clock_hz(self):
        return self._clock_hz

    @property
    def wake_cycles(self):
        """Cycles between the end of the release from power-down and the next command (`WAKE_SECONDS`)."""
        return math.ceil(WAKE_SECONDS * self._clock_hz) + 1

    @property
    def bytes_per_cycle(self):
        """Bytes per clock cycle while the consumer takes every byte at once: 4 bits per SCK, SCK at half
        the clock."""
        return 0.25

    @property
    def first_byte_cycles(self):
        """Cycles from a seek taken (with the flash set up) to its first byte valid: one with the flash
        deselected, one to select it, two per SCK pulse of command, address and dummy, two to the first
        byte's second nibble and one to the byte register."""
        return 2 + 2 * _READ_PULSES + 2 + 1

    def elaborate(self, platform):
        m = Module()

        # Command and address, MSB first on DQ0. The set-up's three commands are its reset value, sent one after
        # another from it (8, 8 and 16 bits), so the register loads nothing but a read's command and address.
        shift = Signal(32, init=(RELEASE_POWER_DOWN << 24) | (VOLATILE_WRITE_ENABLE << 16)
                       | (WRITE_STATUS_2 << 8) | QUAD_ENABLE)
        driving = Signal(init=1)            # DQ0, /WP and /HOLD are driven
        pulses = Signal(range(_READ_PULSES + 1))   # SCK pulses (rise then fall) since select, saturating
        timer = Signal(range(self.wake_cycles + 1))
        ready = Signal()                    # the flash is set up: seeks are taken

        launched = Signal()                 # an SCK fall launched a data nibble this cycle (the pins show it next)
        nibble = Signal()                   # `dq_i` holds a data nibble not yet taken
        low = Signal()                      # that nibble is a byte's low one
        byte = Signal(8)                    # the nibbles shift in from the bottom; a byte once `full`
        full = Signal()

        m.d.comb += [self.dq_o.eq(Cat(shift[31], 0, 1, 1)), self.dq_oe.eq(Cat(driving, 0, driving, driving)),
                     self.seek.ready.eq(ready), self.data.payload.eq(byte),
                     self.data.valid.eq(full & ~self.seek.valid)]
        taken = self.data.valid & self.data.ready
        with m.If(taken):
            m.d.sync += full.eq(0)

        # A data nibble is taken from the pins once the byte register is free (at full rate it is: the byte
        # goes in the cycle it is offered, before the next byte's high nibble is on the pins).
        take = nibble & (~full | taken)
        with m.If(take):
            m.d.sync += [nibble.eq(0), low.eq(~low), byte.eq(Cat(self.dq_i, byte[:4]))]
            with m.If(low):
                m.d.sync += full.eq(1)
        m.d.sync += launched.eq(0)
        with m.If(launched):
            m.d.sync += nibble.eq(1)

        def command(name, bits, after):
            """State `name`: select the flash, send the shift register's next `bits` bits on DQ0 (SPI mode 0),
            deselect."""
            with m.State(name):
                with m.If(~self.cs):
                    m.d.sync += [self.cs.eq(1), pulses.eq(0)]
                with m.Elif(~self.sck & (pulses == bits)):
                    m.d.sync += self.cs.eq(0)
                    m.next = after
                with m.Elif(~self.sck):
                    m.d.sync += self.sck.eq(1)
                with m.Else():
                    m.d.sync += [self.sck.eq(0), shift.eq(shift << 1), pulses.eq(pulses + 1)]

        def seek():
            """Take a seek (last in its state, so it overrides): deselect, drop every byte and nibble, and
            start a read at the new address."""
            m.d.comb += ready.eq(1)
            with m.If(self.seek.valid):
                address = (self.seek.payload + self._offset)[:24]
                m.d.sync += [self.cs.eq(0), self.sck.eq(0), shift.eq(Cat(address, Const(QUAD_OUTPUT_READ, 8))),
                             full.eq(0), nibble.eq(0), launched.eq(0), low.eq(0)]
                m.next = "Select"

        with m.FSM():
            command("Wake", 8, "Wait")
            with m.State("Wait"):
                m.d.sync += timer.eq(timer + 1)
                with m.If(timer == self.wake_cycles):
                    m.next = "Volatile-write-enable"
            command("Volatile-write-enable", 8, "Quad-enable")
            command("Quad-enable", 16, "Idle")
            with m.State("Idle"):
                seek()
            with m.State("Select"):
                # DQ0, /WP and /HOLD driven again a cycle after the deselect (the flash's outputs are off then).
                m.d.sync += [self.cs.eq(1), pulses.eq(0), driving.eq(1)]
                m.next = "Read"
                seek()
            with m.State("Read"):
                # The fall ending the last dummy pulse and every later one launches a data nibble: only once
                # the nibble on the pins is taken (the flash holds its output while SCK stands still).
                data_phase = pulses >= _READ_PULSES - 1
                with m.If(~self.sck):
                    m.d.sync += self.sck.eq(1)
                with m.Elif(~data_phase | ~nibble | take):
                    m.d.sync += [self.sck.eq(0), shift.eq(shift << 1), launched.eq(data_phase)]
                    with m.If(pulses != _READ_PULSES):
                        m.d.sync += pulses.eq(pulses + 1)
                    with m.If(pulses == 31):
                        m.d.sync += driving.eq(0)             # the address is out: DQ0-3 are the flash's
                seek()
        return m
