"""The far end of a UART in an Amaranth testbench: bit-banged bytes on the pins."""

__all__ = ["send_bytes", "receive_bytes"]


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
