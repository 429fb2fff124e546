# amaranth: UnusedElaboratable=no
"""The quad-SPI flash reader against the flash model: every byte read is the image's, whatever the seeks and
stalls, at a byte every 2 cycles; the model answers a pulse's nibble `RETURN_CYCLES` later and flags a reader that
misuses the flash; the reader's pins are the iCE40's IO registers, SCK a DDR one."""

import random
import re

import pytest
from amaranth import Module
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from boards.spi_flash_model import FlashError, SPIFlashModel
from hdl.spi_flash_reader import MAX_CLOCK_HZ, RETURN_CYCLES, SPIFlashReader

OFFSET = 0x100000
CLOCK_HZ = 36e6


def test_init():
    reader = SPIFlashReader(offset=OFFSET, clock_hz=CLOCK_HZ)
    assert reader.offset == OFFSET and reader.clock_hz == CLOCK_HZ
    assert reader.wake_cycles >= SPIFlashModel.release_cycles_at(CLOCK_HZ)
    assert reader.bytes_per_cycle == 0.5 and reader.first_byte_cycles == 45
    Fragment.get(reader, None)


@pytest.mark.parametrize("offset", [-1, 1 << 24, 1.0, True, "0"])
def test_offset_wrong(offset):
    with pytest.raises(ValueError, match=f"not {offset!r}"):
        SPIFlashReader(offset=offset, clock_hz=CLOCK_HZ)


@pytest.mark.parametrize("clock_hz", [0, -1, True, "36e6", None, 70e6])
def test_clock_hz_wrong(clock_hz):
    with pytest.raises(ValueError, match=f"not {clock_hz!r}"):
        SPIFlashReader(offset=0, clock_hz=clock_hz)


def test_model_wrong():
    with pytest.raises(ValueError, match="Image"):
        SPIFlashModel(image=b"", offset=0, release_cycles=4)
    with pytest.raises(ValueError, match="not 16777215"):
        SPIFlashModel(image=b"ab", offset=(1 << 24) - 1, release_cycles=4)
    with pytest.raises(ValueError, match="not 0"):
        SPIFlashModel(image=b"ab", offset=0, release_cycles=0)
    with pytest.raises(ValueError, match="Return cycles .* not 0"):
        SPIFlashModel(image=b"ab", offset=0, release_cycles=4, return_cycles=0)


def test_budget():
    """The read path's budget leaves the clock's period room: 36 MHz, the iCEBreaker's, is well inside it."""
    assert 60e6 < MAX_CLOCK_HZ < 70e6
    SPIFlashReader(clock_hz=MAX_CLOCK_HZ)


def wired(image):
    """Reader and model, pin to pin."""
    reader = SPIFlashReader(offset=OFFSET, clock_hz=CLOCK_HZ)
    model = SPIFlashModel(image=image, offset=OFFSET, release_cycles=SPIFlashModel.release_cycles_at(CLOCK_HZ))
    m = Module()
    m.submodules.reader, m.submodules.model = reader, model
    m.d.comb += [model.cs.eq(reader.cs), model.sck.eq(reader.sck), model.dq_o.eq(reader.dq_o),
                 model.dq_oe.eq(reader.dq_oe), reader.dq_i.eq(model.dq_i)]
    return m, reader, model


async def seek_once(ctx, reader, address):
    """Seek to `address` once the reader takes seeks; returns after the edge that took it."""
    await ctx.tick().until(reader.seek.ready)
    ctx.set(reader.seek.payload, address)
    ctx.set(reader.seek.valid, 1)
    await ctx.tick()
    ctx.set(reader.seek.valid, 0)


def expected(image, address, count):
    return bytes(image[a] if a < len(image) else 0xFF for a in range(address, address + count))


def run(m, testbench, cycles):
    sim = Simulator(m)
    sim.add_clock(1e-8)
    sim.add_testbench(testbench)
    sim.run_until(cycles * 1e-8)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_sim_random_seeks_and_stalls(seed):
    """Seeks at random times (during the set-up, a read's command, with bytes pending, in a stall) and a
    consumer that stalls at random: every byte taken is the image's from the last seek on, and the flash never
    sees a protocol error."""
    rng = random.Random(seed)
    image = bytes(rng.randrange(256) for _ in range(1500))
    m, reader, model = wired(image)
    log = {"bytes": 0, "seeks": 0}

    async def testbench(ctx):
        address = None
        for _ in range(60):
            # Seek, perhaps while a seek is refused (set-up) or bytes are pending.
            target = rng.choice([rng.randrange(len(image)), len(image) - rng.randrange(1, 8), 0])
            ctx.set(reader.seek.payload, target)
            ctx.set(reader.seek.valid, 1)
            await ctx.tick().until(reader.seek.ready)
            ctx.set(reader.seek.valid, 0)
            address = target
            log["seeks"] += 1
            for _ in range(rng.choice([0, 1, 3, 12, 40, 100])):
                stall = rng.choice([0, 0, 0, 1, 2, 5, 30, 200])
                ctx.set(reader.data.ready, 0)
                await ctx.tick().repeat(stall) if stall else None
                if rng.random() < 0.03:
                    break                               # seek again with a byte pending
                ctx.set(reader.data.ready, 1)
                payload, = await ctx.tick().sample(reader.data.payload).until(reader.data.valid)
                assert payload == expected(image, address, 1)[0], f"byte at {address:#x}"
                address += 1
                log["bytes"] += 1
                ctx.set(reader.data.ready, 0)
            assert ctx.get(model.error) == FlashError.NONE, FlashError(ctx.get(model.error)).name
        ctx.set(reader.data.ready, 0)
        log["done"] = True

    run(m, testbench, 400_000)
    assert log.get("done") and log["bytes"] > 300, log


def test_sim_rate_and_latency():
    """With the consumer always ready: the first byte `first_byte_cycles` after the seek, then one byte every
    2 cycles (`bytes_per_cycle`: SCK never stops), across the image's end into erased flash."""
    image = bytes(random.Random(7).randrange(256) for _ in range(300))
    m, reader, model = wired(image)
    times, got = [], []

    async def testbench(ctx):
        await seek_once(ctx, reader, 200)
        ctx.set(reader.data.ready, 1)
        cycle = 0                                   # cycles since the edge that took the seek
        while len(got) < 120:
            if ctx.get(reader.data.valid):
                got.append(ctx.get(reader.data.payload))
                times.append(cycle)
            await ctx.tick()
            cycle += 1
        assert ctx.get(model.error) == FlashError.NONE

    run(m, testbench, 20_000)
    assert bytes(got) == expected(image, 200, 120)
    assert times[0] == reader.first_byte_cycles
    assert {b - a for a, b in zip(times, times[1:])} == {round(1 / reader.bytes_per_cycle)}


class BitBang:
    """A testbench's own SPI host, on the ports as the reader drives them (a pulse a cycle), to show what the
    model answers and that it flags what a reader must not do."""

    def __init__(self, ctx, model):
        self.ctx, self.model = ctx, model
        ctx.set(model.dq_oe, 0b1101)
        ctx.set(model.dq_o, 0b1100)

    async def command(self, value, bits, *, gap=200, keep=False):
        """Select, `bits` bits of `value` on DQ0 a pulse a cycle (select with the first), deselect a cycle after
        the last, unless `keep`."""
        ctx, model = self.ctx, self.model
        await ctx.tick().repeat(gap)
        ctx.set(model.cs, 1)
        for i in reversed(range(bits)):
            ctx.set(model.dq_o, 0b1100 | (value >> i) & 1)
            ctx.set(model.sck, 1)
            await ctx.tick()
        ctx.set(model.sck, 0)
        if not keep:
            await ctx.tick()
            ctx.set(model.cs, 0)
            await ctx.tick()
        return FlashError(ctx.get(model.error))

    async def set_up(self):
        for value, bits in [(0xAB, 8), (0x50, 8), (0x31 << 8 | 0x02, 16)]:
            assert await self.command(value, bits) == FlashError.NONE

    async def read(self, address, count):
        """A quad output read of `count` bytes, a pulse a cycle, each nibble taken `return_cycles` after its
        pulse; leaves the flash selected."""
        ctx, model = self.ctx, self.model
        await self.command(0x6B << 24 | address, 32, keep=True)
        ctx.set(model.dq_oe, 0)
        ctx.set(model.sck, 1)
        await ctx.tick().repeat(7)                  # dummy clocks 1-7; the 8th launches the first nibble
        nibbles = []
        for cycle in range(2 * count + model.return_cycles):
            ctx.set(model.sck, int(cycle < 2 * count))
            if cycle >= model.return_cycles:
                nibbles.append(ctx.get(model.dq_i))
            await ctx.tick()
        return bytes(high << 4 | low for high, low in zip(nibbles[::2], nibbles[1::2]))


@pytest.mark.parametrize("commands, error", [
    ([(0x6B << 24 | OFFSET, 32)], FlashError.ASLEEP),
    ([(0xAB, 8), (0x6B << 24 | OFFSET, 32)], FlashError.NOT_QUAD),
    ([(0xAB, 8), (0x50, 8), (0x31 << 8 | 0x42, 16)], FlashError.STATUS),
    ([(0xAB, 8), (0x31 << 8 | 0x02, 16)], FlashError.STATUS),
    ([(0xAB, 8), (0x50, 8), (0x31 << 8 | 0x02, 16), (0x6B << 24 | OFFSET - 1, 32)], FlashError.ADDRESS),
    ([(0xAB, 8), (0x50, 8), (0x31 << 8 | 0x02, 16), (0xEB << 24 | OFFSET, 32)], FlashError.COMMAND),
    ([(0xAB, 8), (0x50 << 1, 9)], FlashError.LENGTH),
    ([(0xAB, 8), (0x06, 8)], FlashError.COMMAND),
])
def test_sim_model_flags(commands, error):
    model = SPIFlashModel(image=b"\x12\x34", offset=OFFSET, release_cycles=100)
    seen = []

    async def testbench(ctx):
        host = BitBang(ctx, model)
        for value, bits in commands:
            seen.append(await host.command(value, bits))

    run(model, testbench, 10_000)
    assert seen[:-1] == [FlashError.NONE] * (len(seen) - 1) and seen[-1] == error


@pytest.mark.parametrize("misuse, error", [("early", FlashError.EARLY), ("deselected", FlashError.DESELECTED)])
def test_sim_model_flags_after_wake(misuse, error):
    """After a good release from power-down: a command sooner than tRES1, or an SCK pulse with /CS high."""
    model = SPIFlashModel(image=b"\x12\x34", offset=OFFSET, release_cycles=100)
    seen = []

    async def testbench(ctx):
        host = BitBang(ctx, model)
        seen.append(await host.command(0xAB, 8))
        if misuse == "early":
            seen.append(await host.command(0x50, 8, gap=20))
        else:
            ctx.set(model.sck, 1)
            await ctx.tick()
            seen.append(FlashError(ctx.get(model.error)))

    run(model, testbench, 10_000)
    assert seen == [FlashError.NONE, error]


@pytest.mark.parametrize("return_cycles", [1, RETURN_CYCLES])
def test_sim_model_read_and_turnaround(return_cycles):
    """A read a pulse a cycle: each nibble is on `dq_i` `return_cycles` after its pulse, the bytes from the
    address on, erased flash past the image; the flash drives DQ0-3 until the end of the deselecting cycle, so
    a host driving DQ0 in that cycle is flagged."""
    image = bytes(random.Random(3).randrange(256) for _ in range(40))
    model = SPIFlashModel(image=image, offset=OFFSET, release_cycles=100, return_cycles=return_cycles)
    seen = {}

    async def testbench(ctx):
        host = BitBang(ctx, model)
        await host.set_up()
        seen["bytes"] = await host.read(OFFSET + 30, 16)
        seen["read"] = FlashError(ctx.get(model.error))
        ctx.set(model.cs, 0)
        ctx.set(model.dq_oe, 0b0001)
        await ctx.tick()
        seen["turnaround"] = FlashError(ctx.get(model.error))

    run(model, testbench, 10_000)
    assert seen == {"bytes": expected(image, 30, 16), "read": FlashError.NONE, "turnaround": FlashError.CONTENTION}


def test_pin_buffers_ice40():
    """On the iCEBreaker every flash pin is an IO register of its pad, SCK a DDR output (the reader's timing
    budget counts on both): the SB_IOs' PIN_TYPEs in the design Amaranth hands to Yosys."""
    from amaranth import Elaboratable
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    class Top(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.reader = reader = SPIFlashReader(offset=OFFSET, clock_hz=CLOCK_HZ)
            m.submodules.pins = reader.pin_buffers(platform.request("spi_flash_4x", 0, dir="-"))
            return m

    rtlil = ICEBreakerPlatform().prepare(Top()).files["top.il"]
    cells = re.findall(r"cell \\SB_IO (\S+)\n(.*?)\n  end", rtlil, re.S)
    pin_types = {}
    for name, body in cells:
        pin = re.search(r"connect \\PACKAGE_PIN \\?(\S+)", body).group(1)
        pin_types[pin] = re.search(r"parameter \\PIN_TYPE 6'([01]{6})", body).group(1)
    # Output DDR (0b1100) for SCK, output and its enable registered (0b1101) for /CS and DQ0-3 (named by slice),
    # input registered (0b00) for DQ0-3, plain input (0b01) where nothing is read.
    assert pin_types.pop("spi_flash_4x_0__clk__io") == "110001", pin_types
    assert pin_types.pop("spi_flash_4x_0__cs__io") == "110101", pin_types
    assert sorted(pin_types.values()) == ["110100"] * 4, pin_types
