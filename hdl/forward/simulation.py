"""Driving the forward's stream units in Amaranth's simulator: payloads in, payloads out, cycles counted.

Used by the unit tests (with seeded random gaps on both sides, so every test
also exercises back-pressure) and by ``benchmarks/bench_forward_units.py``
(without gaps, for cycle counts).
"""

import numpy as np
from amaranth.sim import Simulator

__all__ = ["set_payload", "run_streams"]


def set_payload(ctx, payload, value):
    """Set a stream payload from an int or a dict of field -> int (nested dicts for nested structs)."""
    if isinstance(value, dict):
        for name, item in value.items():
            set_payload(ctx, getattr(payload, name), item)
    else:
        ctx.set(payload, int(value))


def run_streams(dut, inputs, output, count, *, seed=0, gap=0.0, setup=None, max_cycles=2_000_000):
    """Send ``inputs`` (``{stream name: [payload, ...]}``); return (`count` payloads of stream `output`, cycles).

    Each input stream gets its own producer; the consumer holds ``ready`` low
    on a fraction `gap` of cycles and producers idle as often (seeded by
    `seed`). `setup(ctx)` runs first (configuration ports). Payloads of a
    struct output are returned as dicts of ints, others as ints. ``cycles``
    counts from the first cycle inputs may be offered to the cycle the last
    output is taken.
    """
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    got = []
    started = []
    cycles = [0]

    def producer(name, items, rng):
        async def bench(ctx):
            port = getattr(dut, name)
            while not started:
                await ctx.tick()
            for item in items:
                while gap and rng.random() < gap:
                    await ctx.tick()
                set_payload(ctx, port.payload, item)
                ctx.set(port.valid, 1)
                await ctx.tick().until(port.ready)
                ctx.set(port.valid, 0)
        return bench

    async def consumer(ctx):
        if setup is not None:
            setup(ctx)
        started.append(True)
        await ctx.tick()
        port = getattr(dut, output)
        rng = np.random.default_rng(seed + 1)
        while len(got) < count:
            ready = not gap or rng.random() >= gap
            ctx.set(port.ready, ready)
            await ctx.delay(1e-8)
            if ready and ctx.get(port.valid):
                got.append(_value(ctx.get(port.payload)))
            await ctx.tick()
            cycles[0] += 1
            if cycles[0] >= max_cycles:
                raise RuntimeError(f"{len(got)} of {count} outputs after {cycles[0]} cycles")
        ctx.set(port.ready, 0)

    for index, (name, items) in enumerate(inputs.items()):
        sim.add_testbench(producer(name, list(items), np.random.default_rng(seed + 2 + index)))
    sim.add_testbench(consumer)
    sim.run()
    return got, cycles[0]


def _value(payload):
    if isinstance(payload, int):
        return payload
    return {name: _value(getattr(payload, name)) for name, _ in payload.shape()}
