# amaranth: UnusedElaboratable=no
"""The 8N1 UART against a bit-banged far end, both directions."""

import random

import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from boards.uart import UART
from uart_host import receive_bytes, send_bytes


def test_init():
    uart = UART(divisor=12)
    assert uart.divisor == 12
    assert uart.baud(36e6) == 3e6
    Fragment.get(uart, None)


@pytest.mark.parametrize("divisor", [3, 0, -12, 4.0, "12", True, None])
def test_divisor_wrong(divisor):
    with pytest.raises(ValueError, match=f"not {divisor!r}"):
        UART(divisor=divisor)


def run(dut, *testbenches, deadline=200_000):
    sim = Simulator(dut)
    sim.add_clock(1e-8)
    for tb in testbenches:
        sim.add_testbench(tb)
    sim.run_until(deadline * 1e-8)


@pytest.mark.parametrize("divisor", [4, 5, 12])
def test_sim_receive(divisor):
    """Bytes sent back to back arrive in order; each is held until taken."""
    dut = UART(divisor=divisor)
    data = bytes([0x00, 0xFF, 0x55, 0xAA, 0x01, 0x80]) + bytes(random.Random(divisor).randrange(256)
                                                                 for _ in range(20))
    got = []

    async def host(ctx):
        await send_bytes(ctx, dut.rx, data, divisor)

    async def consumer(ctx):
        ctx.set(dut.o_stream.ready, 1)
        while len(got) < len(data):
            await ctx.tick().until(dut.o_stream.valid)
            got.append(ctx.get(dut.o_stream.payload))
            assert not ctx.get(dut.overrun) and not ctx.get(dut.frame_error)

    run(dut, host, consumer)
    assert bytes(got) == data


@pytest.mark.parametrize("divisor", [4, 7, 12])
def test_sim_transmit(divisor):
    """Bytes offered back to back go out as 8N1 characters, in order."""
    dut = UART(divisor=divisor)
    data = bytes([0x00, 0xFF, 0x5A, 0xA5]) + bytes(random.Random(divisor).randrange(256) for _ in range(20))
    got = []

    async def producer(ctx):
        for byte in data:
            ctx.set(dut.i_stream.valid, 1)
            ctx.set(dut.i_stream.payload, byte)
            await ctx.tick().until(dut.i_stream.ready)
        ctx.set(dut.i_stream.valid, 0)

    async def host(ctx):
        got.extend(await receive_bytes(ctx, dut.tx, len(data), divisor))

    run(dut, producer, host)
    assert bytes(got) == data


def test_sim_overrun_and_frame_error():
    """A byte left untaken while the next completes is dropped with `overrun`; a 0 stop bit pulses `frame_error`."""
    divisor = 4
    dut = UART(divisor=divisor)
    flags = {"overrun": 0, "frame_error": 0}

    async def host(ctx):
        await send_bytes(ctx, dut.rx, b"\x11\x22", divisor)
        await send_bytes(ctx, dut.rx, b"\x33", divisor, bad_stop=True)
        await ctx.tick().repeat(5 * divisor)

    async def watcher(ctx):
        async for _, _, overrun, frame_error in ctx.tick().sample(dut.overrun, dut.frame_error):
            flags["overrun"] += overrun
            flags["frame_error"] += frame_error

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_process(watcher)
    sim.run_until(50 * divisor * 1e-8)
    assert flags == {"overrun": 1, "frame_error": 1}


def test_sim_glitch_is_not_a_start_bit():
    divisor = 8
    dut = UART(divisor=divisor)
    got = []

    async def host(ctx):
        ctx.set(dut.rx, 0)
        await ctx.tick()
        ctx.set(dut.rx, 1)
        await ctx.tick().repeat(3 * divisor)
        await send_bytes(ctx, dut.rx, b"\x42", divisor)

    async def consumer(ctx):
        ctx.set(dut.o_stream.ready, 1)
        await ctx.tick().until(dut.o_stream.valid)
        got.append(ctx.get(dut.o_stream.payload))

    run(dut, host, consumer, deadline=30 * divisor)
    assert got == [0x42]
