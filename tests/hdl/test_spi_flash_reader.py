# amaranth: UnusedElaboratable=no
"""The quad-SPI flash reader against the flash model: every byte read is the image's, whatever the seeks and
stalls; the model flags a reader that misuses the flash."""

import random

import pytest
from amaranth import Module
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from boards.spi_flash_model import FlashError, SPIFlashModel
from hdl.spi_flash_reader import SPIFlashReader

OFFSET = 0x100000
CLOCK_HZ = 36e6


def test_init():
    reader = SPIFlashReader(offset=OFFSET, clock_hz=CLOCK_HZ)
    assert reader.offset == OFFSET and reader.clock_hz == CLOCK_HZ
    assert reader.wake_cycles >= SPIFlashModel.release_cycles_at(CLOCK_HZ)
    assert reader.bytes_per_cycle == 0.25
    Fragment.get(reader, None)


@pytest.mark.parametrize("offset", [-1, 1 << 24, 1.0, True, "0"])
def test_offset_wrong(offset):
    with pytest.raises(ValueError, match=f"not {offset!r}"):
        SPIFlashReader(offset=offset, clock_hz=CLOCK_HZ)


@pytest.mark.parametrize("clock_hz", [0, -1, True, "36e6", None])
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
    4 cycles (`bytes_per_cycle`), across the image's end into erased flash."""
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
    """A testbench's own SPI host, to show the model flags what a reader must not do."""

    def __init__(self, ctx, model):
        self.ctx, self.model = ctx, model
        ctx.set(model.dq_oe, 0b1101)
        ctx.set(model.dq_o, 0b1100)

    async def command(self, value, bits, *, gap=200):
        ctx, model = self.ctx, self.model
        await ctx.tick().repeat(gap)
        ctx.set(model.cs, 1)
        for i in reversed(range(bits)):
            ctx.set(model.dq_o, 0b1100 | (value >> i) & 1)
            await ctx.tick()
            ctx.set(model.sck, 1)
            await ctx.tick()
            ctx.set(model.sck, 0)
        await ctx.tick()
        ctx.set(model.cs, 0)
        await ctx.tick()
        return FlashError(ctx.get(model.error))


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


def test_sim_model_flags_early_command():
    model = SPIFlashModel(image=b"\x12\x34", offset=OFFSET, release_cycles=100)
    seen = []

    async def testbench(ctx):
        host = BitBang(ctx, model)
        seen.append(await host.command(0xAB, 8))
        seen.append(await host.command(0x50, 8, gap=20))

    run(model, testbench, 10_000)
    assert seen == [FlashError.NONE, FlashError.EARLY]
