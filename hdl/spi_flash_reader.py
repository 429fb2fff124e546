"""A byte stream from a quad-SPI flash (W25Q128JV): seek to an address, then read on from it, SCK at the clock."""

import math

from amaranth import Cat, Const, Module, Mux, Signal
from amaranth.lib import io, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["SPIFlashReader", "WAKE_SECONDS", "QUAD_ENABLE", "READ_DUMMY_CLOCKS", "RETURN_CYCLES", "MAX_CLOCK_HZ"]

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
#: Cycles from a pulse on `sck` to the nibble its falling edge launches being on `dq_i`: the pads' output
#: registers (1), the flash's clock-to-output time, sampled at the clock edge after the fall (1), the pads'
#: input registers (1). See the timing budget in `SPIFlashReader`.
RETURN_CYCLES = 3
#: The read path's budget in ns, from SCK's falling edge launched by a clock edge to the nibble's set-up at the
#: input register of the next edge (the same global clock at every pad): SB_IO output register to the pad
#: (icestorm ``timings_up5k``: PRE_IO ``posedge:OUTPUTCLK -> PADOUT`` 1.152, IO_PAD ``DIN -> PACKAGEPIN``
#: 2.353, the larger edge), the board's wire to the flash and back (0.5 each way, allowed), the W25Q128JV's
#: tCLQV (7, the larger of the datasheet's figures), the input pad and the input register's set-up (IO_PAD
#: ``PACKAGEPIN -> DOUT`` 0.59, PRE_IO ``setup PADIN -> INPUTCLK`` 3.158).
READ_PATH_NS = (1.152 + 2.353) + 0.5 + 7.0 + 0.5 + (0.59 + 3.158)
#: The fastest clock whose period covers `READ_PATH_NS` (about 65.5 MHz; the flash's SCK limit for 0x6B,
#: fR = 133 MHz, is above it).
MAX_CLOCK_HZ = 1e9 / READ_PATH_NS
#: Data nibbles a read may have launched and not yet delivered: the byte offered on `data` (2), a spare byte (2)
#: and a byte's high nibble (1). With every byte taken at once a high nibble is held for `RETURN_CYCLES` + 2
#: cycles, its low one 1 less: 4 would stop SCK now and then, 6 would overrun the spare byte.
_HELD = 2 + 2 + 1


class SPIFlashReader(wiring.Component):
    """Streams bytes of a quad-SPI flash from any address: a seek, then one byte after another.

    At reset it wakes the flash (release from power-down, 0xAB, then the
    flash's 3 µs, `WAKE_SECONDS`) and sets its quad enable bit in the
    volatile status register (0x50, then 0x31 with `QUAD_ENABLE`: lost at the
    next power cycle, so the flash's non-volatile bits are never written).
    Each seek then starts a quad output fast read (0x6B: command and 24-bit
    address on DQ0, 8 dummy clocks, data on DQ0-3, high nibble first) at
    ``offset + address``; the read continues for as long as bytes are taken,
    the flash's clock stopping while they are not.

    SCK runs at the clock: a pulse a cycle, a nibble a cycle, a byte every 2
    cycles while the consumer keeps up (`bytes_per_cycle`), the first byte
    ``1 + 40 + 3 + 1`` cycles after a seek (`first_byte_cycles`).

    The ports, a cycle at a time (SPI mode 0). `cs`, `dq_o` and `dq_oe` hold
    for the whole cycle; ``sck`` high asks for one SCK pulse in the cycle, low
    in its first half and high in its second (it rises mid-cycle, where the
    flash samples DQ0, and falls at the cycle's end, where DQ0 may change and
    the flash launches its next nibble). `pin_buffers` puts every one of them
    in the iCE40's IO registers, SCK as a DDR output, so on the pins they all
    come a cycle later, together. A read's data nibble is on `dq_i`
    `RETURN_CYCLES` (3) cycles after the cycle of the pulse whose fall
    launched it: up to 3 nibbles are on the way when the consumer stops, so
    the reader holds a byte, a waiting byte and a high nibble (5 nibbles) and
    pulses in the data phase only while fewer than 5 are launched and not
    yet taken. `boards.spi_flash_model.SPIFlashModel` answers the ports in
    simulation with that same return time.

    Timing budget at 36 MHz (27.8 ns a cycle; W25Q128JV datasheet: SCK up to
    133 MHz for 0x6B, tCLQV <= 7 ns, tCLQX >= 1.5 ns, tDVCH >= 2 ns,
    tCHDX >= 5 ns, tSLCH and tCHSH >= 5 ns, tSHSL >= 10 ns, tSHQZ <= 7 ns,
    SCK high and low >= 45 % of the period; iCE40UP5K pads from icestorm's
    ``timings_up5k``, the same global clock at every pad, edges at 0 ns):

    - Read: SCK falls at the pad 3.5 ns after a clock edge (output register
      1.15 + pad 2.35), the flash's nibble is at the FPGA's pin by
      3.5 + 0.5 wire + 7 tCLQV + 0.5 wire = 11.5 ns, and the input register
      needs it 3.75 ns (pad 0.59 + set-up 3.16) before the next edge, at
      27.8: **12.5 ns of slack**, so the nibble is sampled at the first edge
      after the fall (`RETURN_CYCLES` = 1 + this 1 + 1). Hold: the next
      nibble leaves the flash tCLQX after the next fall, which that same edge
      launches: it reaches the pin no sooner than 3.36 + 1.5 = 4.9 ns after
      it, and the register needs the old one only until -0.59 ns: 5.4 ns of
      slack (3.9 with tCLQX = 0), at any clock. The half-cycle edge between
      (13.9 ns) would miss set-up by 0.9 ns. The budget holds up to
      `MAX_CLOCK_HZ` (a 15.3 ns path, about 65 MHz).
    - Command and address: DQ0 changes 3.5 ns after an edge, SCK rises
      3.3 ns after the half-cycle edge: 13.7 ns of set-up (tDVCH 2) and
      13.8 ns of hold (tCHDX 5). /CS falls with the cycle of the first
      pulse and rises no sooner than the edge that ends the last: 13.7 ns to
      the first rise (tSLCH 5), at least 13.9 ns after the last (tCHSH 5);
      it stays high at least a cycle (27.8 ns, tSHSL 10), and DQ0 is driven
      again only a cycle after a read's deselect (the flash lets go within
      tSHQZ, 7 ns).
    - SCK's high time is the half period within 0.16 ns (49 %; tCLH 45 %).

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
        The clock, for the flash's wake-up time (`wake_cycles`); at most `MAX_CLOCK_HZ`, where the read's
        timing budget holds.

    Members
    -------
    seek : In(stream.Signature(24))
        An image address to read from.
    data : Out(stream.Signature(8))
        The bytes from the last seek's address on.
    cs : Out(1)
        Chip select, high when the flash is selected (the pin is active low).
    sck : Out(1)
        One SCK pulse in this cycle (low, then high; the pin is low when idle: SPI mode 0). Not a level to put
        on the pin as it is: `pin_buffers` makes it the pin through a DDR output register.
    dq_o : Out(4)
    dq_oe : Out(4)
        DQ0-3 driven by this side: DQ0 is the flash's DI, DQ2 and DQ3 its /WP and /HOLD (driven high until
        the data phase: /HOLD low would pause a flash whose quad bit is still clear).
    dq_i : In(4)
        DQ0-3 as the pins' input registers read them (DQ1 is the flash's DO).

    Raises
    ------
    ValueError
        If `offset` is not an address of a 24-bit flash, or `clock_hz` not a frequency up to `MAX_CLOCK_HZ`.
    """

    def __init__(self, *, offset=0, clock_hz):
        if isinstance(offset, bool) or not isinstance(offset, int) or not 0 <= offset < 1 << 24:
            raise ValueError(f"Offset must be a flash byte address from 0 to 0xFFFFFF, not {offset!r}")
        if isinstance(clock_hz, bool) or not isinstance(clock_hz, (int, float)) or not 0 < clock_hz <= MAX_CLOCK_HZ:
            raise ValueError(f"Clock must be a positive number of Hz up to {MAX_CLOCK_HZ:.4g} (the read's timing "
                             f"budget), not {clock_hz!r}")
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
        """Bytes per clock cycle while the consumer takes every byte at once: 4 bits per SCK, SCK at the
        clock."""
        return 0.5

    @property
    def first_byte_cycles(self):
        """Cycles from a seek taken (with the flash set up) to its first byte valid: one with the flash
        deselected, one per SCK pulse of command, address and dummy (the last launches the first nibble), one
        to launch the second nibble, `RETURN_CYCLES` less one for it to reach `dq_i`, one to the byte
        register."""
        return 1 + _READ_PULSES + 1 + RETURN_CYCLES - 1 + 1

    def pin_buffers(self, pins):
        """The iCE40 pads of the flash's `pins` (``platform.request("spi_flash_4x", 0, dir="-")``) wired to
        this reader's ports, as its timing budget takes them: /CS and DQ0-3 in the pads' output, output
        enable and input registers (`io.FFBuffer`), SCK from a DDR output register (`io.DDRBuffer`: low for
        the first half of a cycle, `sck` for the second). Add it beside the reader:
        ``m.submodules.flash_pins = reader.pin_buffers(pins)``."""
        m = Module()
        m.submodules.cs = cs = io.FFBuffer("o", pins.cs)
        m.submodules.clk = clk = io.DDRBuffer("o", pins.clk)
        m.d.comb += [cs.o.eq(self.cs), clk.o[0].eq(0), clk.o[1].eq(self.sck)]
        for i in range(4):
            m.submodules[f"dq{i}"] = dq = io.FFBuffer("io", pins.dq[i])
            m.d.comb += [dq.o.eq(self.dq_o[i]), dq.oe.eq(self.dq_oe[i]), self.dq_i[i].eq(dq.i)]
        return m

    def elaborate(self, platform):
        m = Module()

        # Command and address, MSB first on DQ0. The set-up's three commands are its reset value, sent one after
        # another from it (8, 8 and 16 bits), so the register loads nothing but a read's command and address.
        shift = Signal(32, init=(RELEASE_POWER_DOWN << 24) | (VOLATILE_WRITE_ENABLE << 16)
                       | (WRITE_STATUS_2 << 8) | QUAD_ENABLE)
        driving = Signal(init=1)            # DQ0, /WP and /HOLD are driven
        pulses = Signal(range(_READ_PULSES))   # SCK pulses since select, saturating at the first data pulse's
        timer = Signal(range(self.wake_cycles + 1))
        ready = Signal()                    # the flash is set up: seeks are taken
        pulse = Signal()                    # an SCK pulse this cycle
        launch = Signal()                   # ... whose fall launches a data nibble

        on_way = Signal(RETURN_CYCLES)      # bit i: the pulse i + 1 cycles ago launched a data nibble
        high = Signal(4)                    # a byte's high nibble, waiting for its low one
        low = Signal()                      # the next nibble is a byte's low one
        byte, full = Signal(8), Signal()    # the byte offered on `data`
        spare, spare_full = Signal(8), Signal()     # a byte waiting for it

        m.d.comb += [self.dq_o.eq(Cat(shift[31], 0, 1, 1)), self.dq_oe.eq(Cat(driving, 0, driving, driving)),
                     self.sck.eq(pulse), self.seek.ready.eq(ready), self.data.payload.eq(byte),
                     self.data.valid.eq(full & ~self.seek.valid)]
        taken = self.data.valid & self.data.ready

        # A pulse shifts DQ0's next bit out; a seek taken loads a read's command and address.
        sought = ready & self.seek.valid
        with m.If(pulse | sought):
            m.d.sync += shift.eq(Mux(sought, Cat((self.seek.payload + self._offset)[:24],
                                                 Const(QUAD_OUTPUT_READ, 8)), shift << 1))
        with m.If(pulse):
            with m.If(pulses != _READ_PULSES - 1):
                m.d.sync += pulses.eq(pulses + 1)
        m.d.comb += launch.eq(pulse & (pulses == _READ_PULSES - 1))
        m.d.sync += on_way.eq(Cat(launch, on_way[:-1]))
        # Data nibbles launched and not yet taken: on the way, or stored (a high nibble, a byte, a spare byte).
        held = sum(on_way) + low + 2 * full + 2 * spare_full

        # A nibble arriving on `dq_i` is a byte's high one (kept) or its low one: the byte goes to `byte` if that
        # is free (or taken now) and no byte waits, else it waits in `spare` (which `held` keeps free for it).
        arrived = on_way[-1]
        whole = arrived & low
        with m.If(arrived):
            m.d.sync += [low.eq(~low), high.eq(self.dq_i)]
        free = ~full | taken
        with m.If(free):
            m.d.sync += [full.eq(spare_full | whole), byte.eq(Mux(spare_full, spare, Cat(self.dq_i, high)))]
        with m.If(whole & (spare_full | ~free)):
            m.d.sync += [spare.eq(Cat(self.dq_i, high)), spare_full.eq(1)]
        with m.Elif(free):
            m.d.sync += spare_full.eq(0)

        def command(name, bits, after):
            """State `name`: select the flash, send the shift register's next `bits` bits on DQ0 (SPI mode 0), a
            pulse a cycle, deselect."""
            with m.State(name):
                with m.If(~self.cs):
                    m.d.sync += [self.cs.eq(1), pulses.eq(0)]
                with m.Elif(pulses == bits):
                    m.d.sync += self.cs.eq(0)
                    m.next = after
                with m.Else():
                    m.d.comb += pulse.eq(1)

        def seek():
            """Take a seek (last in its state, so it overrides): deselect, drop every byte and nibble (those
            still on the way too), and start a read (`sought` loads its command and address)."""
            m.d.comb += ready.eq(1)
            with m.If(self.seek.valid):
                m.d.sync += [self.cs.eq(0), full.eq(0), spare_full.eq(0), low.eq(0), on_way.eq(0)]
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
                # Command, address and dummy pulses one a cycle; then a pulse (a nibble) only while fewer than
                # `_HELD` nibbles are launched and not taken (the spare byte has room for what is on the way).
                m.d.comb += pulse.eq((pulses != _READ_PULSES - 1) | (held != _HELD) | taken)
                with m.If(pulse & (pulses == 31)):
                    m.d.sync += driving.eq(0)             # the address is out: DQ0-3 are the flash's
                seek()
        return m
