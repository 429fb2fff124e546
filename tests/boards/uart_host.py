"""The far end of a UART in an Amaranth testbench: bit-banged bytes on the pins."""

import struct

__all__ = ["send_bytes", "receive_bytes", "LinkHost"]


async def send_bytes(ctx, pin, data, divisor, *, stop_bits=1, bad_stop=False):
    """Drive 8N1 characters of `data` onto `pin` at `divisor` cycles per bit."""
    for byte in data:
        bits = [0] + [(byte >> i) & 1 for i in range(8)] + [0 if bad_stop else 1] + [1] * (stop_bits - 1)
        for bit in bits:
            ctx.set(pin, bit)
            await ctx.tick().repeat(divisor)
        if bad_stop:
            ctx.set(pin, 1)
            await ctx.tick().repeat(divisor)


async def receive_bytes(ctx, pin, count, divisor, *, limit=None):
    """Sample `count` 8N1 characters from `pin`; returns bytes (fewer if `limit` cycles pass first)."""
    out = bytearray()
    waited = 0
    while len(out) < count:
        if ctx.get(pin):
            await ctx.tick()
            waited += 1
            if limit is not None and waited > limit:
                break
            continue
        waited = 0
        await ctx.tick().repeat(divisor // 2)       # middle of the start bit
        assert ctx.get(pin) == 0, "start bit too short"
        byte = 0
        for i in range(8):
            await ctx.tick().repeat(divisor)
            byte |= ctx.get(pin) << i
        await ctx.tick().repeat(divisor)
        assert ctx.get(pin) == 1, "stop bit is not 1"
        out.append(byte)
    return bytes(out)


class LinkHost:
    """The host's end of a board link in an Amaranth testbench: whole requests and responses.

    With `pins` (rx, tx) the bytes go over those UART pins at `divisor` cycles per bit; without,
    they go straight into the link's ``rx`` stream and out of its ``tx`` stream (a byte a cycle at
    most), which is what most protocol tests need and much faster. A receive gives up after
    `limit` cycles without a byte.
    """

    def __init__(self, ctx, link, *, divisor, limit, pins=None):
        self.ctx, self.link, self.divisor, self.limit, self.pins = ctx, link, divisor, limit, pins

    async def send(self, data, **kwargs):
        if self.pins:
            return await send_bytes(self.ctx, self.pins[0], data, self.divisor, **kwargs)
        link = self.link
        for byte in data:
            self.ctx.set(link.rx.valid, 1)
            self.ctx.set(link.rx.payload, byte)
            await self.ctx.tick().until(link.rx.ready)
        self.ctx.set(link.rx.valid, 0)

    async def receive(self, count, limit=None):
        limit = self.limit if limit is None else limit
        if self.pins:
            return await receive_bytes(self.ctx, self.pins[1], count, self.divisor, limit=limit)
        link = self.link
        out = bytearray()
        self.ctx.set(link.tx.ready, 1)
        waited = 0
        while len(out) < count and waited < limit:
            _, _, valid, payload = await self.ctx.tick().sample(link.tx.valid, link.tx.payload)
            if valid:
                out.append(payload)
                waited = 0
            else:
                waited += 1
        self.ctx.set(link.tx.ready, 0)
        return bytes(out)

    async def response(self):
        from boards.protocol import Status
        header = await self.receive(3)
        assert len(header) == 3, f"no response header (got {header!r})"
        status, length = struct.unpack("<BH", header)
        return Status(status), await self.receive(length)

    async def request(self, command, payload=b""):
        from boards.protocol import encode_request
        await self.send(encode_request(command, payload))
        return await self.response()


def run_link(bench, link, script, device, *, uart, divisor, limit, cycles):
    """Simulate `bench` holding `link`: `script(ctx, host)` is the host (a `LinkHost`, over the pins `bench.rx`
    and `bench.tx` with `uart`, else on the link's streams) and `device(ctx, done)` plays the link's far side,
    polling every cycle until ``done()`` (the script has ended); fails if the script takes over `cycles`."""
    from amaranth.sim import Simulator

    state = {"done": False}

    async def host(ctx):
        await script(ctx, LinkHost(ctx, link, divisor=divisor, limit=limit, pins=(bench.rx, bench.tx) if uart else None))
        state["done"] = True
        await ctx.tick().repeat(2)          # let the device and the watchdog see it and end

    async def far_side(ctx):
        await device(ctx, lambda: state["done"])

    async def watchdog(ctx):
        for _ in range(cycles):
            if state["done"]:
                return
            await ctx.tick()
        raise AssertionError(f"the host script did not finish in {cycles} cycles")

    sim = Simulator(bench)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.add_process(far_side)
    sim.add_process(watchdog)
    sim.run()
    assert state["done"]
