# amaranth: UnusedElaboratable=no
"""SinglePortMemory: a plain memory off the chip, SPRAM blocks (side by side, stacked, nibble-masked) on the
iCE40; both read back what was written, lane by lane."""

import numpy as np
import pytest
from amaranth import Elaboratable, Module
from amaranth.back import rtlil
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform

from hdl.single_port_memory import SinglePortMemory, spram_blocks


class _Top(Elaboratable):
    def __init__(self, memory, granularity):
        self.memory = memory
        self.write = memory.write_port(granularity=granularity)
        self.read = memory.read_port()

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = self.memory
        return m


@pytest.mark.parametrize("spram", [False, True])
def test_reads_what_was_written(spram):
    """Random lane writes and reads against a model; 20,000 x 24 bits is 2 x 2 SPRAM blocks (one stacked)."""
    width, depth, lane = 24, 20_000, 8
    top = _Top(SinglePortMemory(shape=width, depth=depth, spram=spram), lane)
    assert top.memory.sprams == spram_blocks(width, depth) == 4
    rng = np.random.default_rng(1)
    addresses = np.concatenate([[0, depth - 1, 16383, 16384], rng.integers(0, depth, 60)])
    model = {}
    seen = []

    async def bench(ctx):
        for address in addresses:
            lanes = int(rng.integers(1, 8))
            value = int(rng.integers(0, 1 << width))
            ctx.set(top.write.addr, int(address))
            ctx.set(top.write.data, value)
            ctx.set(top.write.en, lanes)
            ctx.set(top.read.addr, int(rng.integers(0, depth)))     # ignored: the write's address is used
            await ctx.tick()
            old = model.get(int(address), 0)
            mask = sum(0xFF << (8 * i) for i in range(3) if lanes >> i & 1)
            model[int(address)] = (old & ~mask) | (value & mask)
        ctx.set(top.write.en, 0)
        for address in rng.permutation(addresses):
            ctx.set(top.read.addr, int(address))
            ctx.set(top.read.en, 1)
            await ctx.tick()
            seen.append((int(address), ctx.get(top.read.data)))
        ctx.set(top.read.en, 0)
        ctx.set(top.read.addr, 5)
        await ctx.tick()
        seen.append((int(addresses[-1]), ctx.get(top.read.data)))       # held: en low

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen[-1][1] == seen[-2][1]
    for address, value in seen[:-1]:
        assert value == model[address], address


def _rtlil(platform):
    top = _Top(SinglePortMemory(shape=16, depth=16384), None)
    ports = [top.write.addr, top.write.data, top.write.en, top.read.addr, top.read.en, top.read.data]
    return rtlil.convert(top, ports=ports, platform=platform)


def test_spram_on_the_ice40():
    assert _rtlil(ICEBreakerPlatform()).count("SB_SPRAM256KA") == 1
    assert "SB_SPRAM256KA" not in _rtlil(None)


def test_wrong():
    with pytest.raises(ValueError, match="depth must be a positive integer, not 0"):
        SinglePortMemory(shape=8, depth=0)
    memory = SinglePortMemory(shape=8, depth=4)
    with pytest.raises(ValueError, match="granularity must divide the width 8, not 3"):
        memory.write_port(granularity=3)
    memory.read_port()
    with pytest.raises(ValueError, match="one read port"):
        memory.read_port()
