"""Shared test data and simulation helpers for tests/hdl.

`cases()` mixes edge values (zero code of either sign, the largest shift,
the most negative activation ``-2**(A-1)``, accumulators that wrap) with random
ones, so every differential test sees them.
"""

import numpy as np
from amaranth.sim import Simulator

from golden.pot_format import PotFormat
from golden.rom_layout import RomLayout

__all__ = ["ICEBREAKER_LINEAR", "activations", "codes", "int8_weights", "biases", "cases", "layout_of", "run",
           "drive_pe"]


#: `python -m hdl.build` arguments for the linear design on the iCEBreaker (its default build is the whole
#: forward).
ICEBREAKER_LINEAR = ("--board", "icebreaker", "--design", "linear")


def activations(rng, act_bits, shape, edge=0.25):
    """Signed `act_bits` integers; a fraction `edge` of them are -2**(A-1), 2**(A-1)-1, 0 or -1."""
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    x = rng.integers(lo, hi + 1, size=shape, dtype=np.int64)
    pick = rng.random(shape) < edge
    x[pick] = rng.choice([lo, hi, 0, -1, lo], size=int(pick.sum()))
    return x


def codes(rng, bits, shape, edge=0.3):
    """PoT codes, with extra zero codes (both signs) and largest/smallest shifts."""
    fmt = PotFormat(bits)
    c = rng.integers(0, 1 << bits, size=shape, dtype=np.int64)
    pick = rng.random(shape) < edge
    specials = [fmt.zero_code, fmt.zero_code | fmt.sign_bit, 0, fmt.sign_bit, fmt.emax, fmt.emax | fmt.sign_bit]
    c[pick] = rng.choice(specials, size=int(pick.sum()))
    return c.astype(np.uint8)


def int8_weights(rng, shape, edge=0.2):
    w = rng.integers(-128, 128, size=shape, dtype=np.int64)
    pick = rng.random(shape) < edge
    w[pick] = rng.choice([-128, 127, 0, -1], size=int(pick.sum()))
    return w.astype(np.int8)


def biases(rng, n, magnitude):
    b = rng.integers(-magnitude, magnitude + 1, size=n, dtype=np.int64)
    if n:
        b[0] = -magnitude
    return b


def cases(rng, bits, act_bits, shapes, bias_magnitude=1000):
    """Layers ``(name, codes (K, N), bias (N,))`` of the given ``(K, N)`` shapes.

    The first layer of every call has one all-extreme column: the most negative
    activation times the largest shift in every row, which is what makes a
    narrow accumulator wrap. `bits` None gives INT8 weights.
    """
    layers = []
    for i, (k, n) in enumerate(shapes):
        if bits is None:
            w = int8_weights(rng, (k, n))
            if i == 0:
                w[:, 0] = -128
        else:
            w = codes(rng, bits, (k, n))
            if i == 0:
                w[:, 0] = 0                         # sign 0, exponent 0: the largest shift
        layers.append((f"layer{i}", w, biases(rng, n, bias_magnitude)))
    return layers


def layout_of(layers, columns, bits):
    return RomLayout(layers, columns=columns, bits=bits)


def run(dut, *testbenches, vcd=None):
    """Simulate `dut` with a 1 MHz clock and the given async testbenches (a VCD file if `vcd`)."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    for tb in testbenches:
        sim.add_testbench(tb)
    if vcd is None:
        sim.run()
    else:
        with sim.write_vcd(vcd):
            sim.run()


def drive_pe(pe, tiles, gaps):
    """Feed a PE tiles (x (K,), weights (K,)), `gaps` idle beats after each drain; return the drained sums."""
    zero = PotFormat(pe.bits).zero_code if pe.bits is not None else 0
    beats = []
    for (x, w), gap in zip(tiles, gaps):
        beats += [(int(a), int(b), 0) for a, b in zip(x, w)]
        beats.append((-1, 1, 1))                    # a drain beat's own term is ignored
        beats += [(-1, zero, 0)] * gap
    beats += [(0, zero, 0)] * 3
    got, passed = [], []

    async def bench(ctx):
        for x, w, d in beats:
            ctx.set(pe.x_in, x)
            ctx.set(pe.w_in, w)
            ctx.set(pe.drain_in, d)
            await ctx.tick()
            passed.append((ctx.get(pe.x_out), ctx.get(pe.w_out), ctx.get(pe.drain_out)))
            if ctx.get(pe.valid):
                got.append(ctx.get(pe.acc))

    run(pe, bench)
    w_mask = (1 << pe.weight_bits) - 1
    assert [(x, w & w_mask, d) for x, w, d in passed] == [(x, w & w_mask, d) for x, w, d in beats]
    return got


def expected_results(engine, batches):
    """Golden (data, last) pairs for `batches` of (layer index, activations (T, K)) on `engine`'s layout."""
    from golden.datapath import int8_accumulate, pot_accumulate
    layout = engine.layout
    want = []
    for index, x in batches:
        name, codes_, bias = engine.test_layers[index]
        if engine.pe == "int8":
            acc = int8_accumulate(x, codes_, bias, engine.act_bits, engine.acc_bits)
        else:
            acc = pot_accumulate(x, codes_, bias, layout.bits, engine.act_bits, engine.acc_bits)
        flat = [int(v) for v in np.asarray(acc).reshape(-1)]
        want += [(v, int(i == len(flat) - 1)) for i, v in enumerate(flat)]
    return want


def simulate_engine(engine, batches, *, seed=0, in_stall=0.0, out_stall=0.0, max_cycles=200_000,
                    layer_noise=True, vcd=None):
    """Stream `batches` (layer index, activations (T, K)) through `engine`; return (results, cycles, busy trace).

    `in_stall` / `out_stall` are the probabilities of a cycle without valid / ready.
    With `layer_noise`, `layer` takes random values except when a batch's first value is offered.
    """
    rng = np.random.default_rng(seed)
    acts, res = engine.activations, engine.results
    total = sum(x.size // x.shape[-1] * engine.layout.layers[i].n for i, x in batches)
    got, busy, cycles = [], [], [0]

    async def driver(ctx):
        for index, x in batches:
            flat = x.reshape(-1)
            for i, value in enumerate(flat):
                while in_stall and rng.random() < in_stall:
                    ctx.set(acts.valid, 0)
                    await ctx.tick()
                noise = int(rng.integers(0, 1 << engine.layer.shape().width))   # any value, even out of range
                ctx.set(engine.layer, index if i == 0 or not layer_noise else noise)
                ctx.set(acts.payload, {"data": int(value), "last": int(i == flat.size - 1)})
                ctx.set(acts.valid, 1)
                await ctx.tick().until(acts.ready)
            ctx.set(acts.valid, 0)

    async def monitor(ctx):
        while len(got) < total:
            ctx.set(res.ready, int(not (out_stall and rng.random() < out_stall)))
            _, _, valid, ready, payload, b = await ctx.tick().sample(res.valid, res.ready, res.payload, engine.busy)
            busy.append(b)
            cycles[0] += 1
            if valid and ready:
                got.append((payload.data, payload.last))
            assert cycles[0] < max_cycles, f"engine stalled: {len(got)} of {total} results after {max_cycles} cycles"
        ctx.set(res.ready, 1)
        for _ in range(4):
            _, _, valid, b = await ctx.tick().sample(res.valid, engine.busy)
            assert not valid, "engine produced more results than expected"
            busy.append(b)

    run(engine, driver, monitor, vcd=vcd)
    return got, cycles[0], busy


def tiny_checkpoint(path, seed=0, n_embd=8, n_layer=1, vocab_size=11, n_positions=16):
    """Write a small random GPT-2 checkpoint (Hugging Face layout, with token splits) at `path`; return `path`."""
    from tiny_checkpoints import write_tiny_checkpoint
    return write_tiny_checkpoint(path, seed=seed, n_embd=n_embd, n_layer=n_layer, n_head=2, vocab_size=vocab_size,
                                 n_positions=n_positions, tokens=600)
