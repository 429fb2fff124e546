# amaranth: UnusedElaboratable=no
"""The program's linear engine against golden: every linear layer of tiny compiled models, one after another on
one array, with back-pressure."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.int_forward import IntegerForward
from golden.int_ops import saturate
from hdl.forward.program_linear import ProgramLinear, program_layers

from forward_cases import tiny_compiled


def run_layers(dut, jobs, seed=0, gap=0.2):
    """`jobs`: [(layer index, activations (K,), residual (N,) or None)]; returns the outputs of each job."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    results = []

    async def feed(ctx, port, values):
        for value in values:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(port.payload, int(value))
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)

    async def bench(ctx):
        for layer, a, x in jobs:
            ctx.set(dut.select, layer)
            n = dut.layers[layer].n
            await feed(ctx, dut.a, a)
            got, pending = [], list(x) if x is not None else None
            while len(got) < n:
                if pending is not None:
                    ctx.set(dut.x.payload, int(pending[0]))
                    ctx.set(dut.x.valid, 1)
                ready = rng.random() >= gap
                ctx.set(dut.o.ready, ready)
                await ctx.delay(1e-8)
                if ready and ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload))
                    if pending is not None:
                        pending.pop(0)
                await ctx.tick()
            ctx.set(dut.o.ready, 0)
            if pending is not None:
                ctx.set(dut.x.valid, 0)
            results.append(got)

    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("n_layer, rows, columns", [(1, 4, 3), (2, 3, 5)])
def test_every_layer(tmp_path, n_layer, rows, columns):
    """Every linear op of the program on golden's own inputs of two tokens, in program order, then again."""
    compiled = tiny_compiled(tmp_path / "model", n_layer=n_layer, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    f = compiled.formats
    forward = IntegerForward(compiled)
    layers = program_layers(compiled)
    dut = ProgramLinear(layers=layers, bits=compiled.bits, act_bits=f.act_bits, res_bits=f.res_bits, rows=rows,
                        columns=columns, mult_bits=f.mult_bits)
    assert dut.adds and dut.out_bits == f.res_bits and dut.channels == sum(x.n for x in layers)
    rng = np.random.default_rng(n_layer)
    jobs, want = [], []
    for token in range(2):
        for index, layer in enumerate(layers):
            a = rng.integers(-128, 128, layer.k)
            a[:3] = [-128, 127, 0]
            y = forward._linear_op(layer.name, a[None], "residual" if layer.add else "act")[0]
            x = None
            if layer.add:
                x = rng.integers(-(1 << 15), 1 << 15, layer.n)
                x[:2] = [-(1 << 15), (1 << 15) - 1]
                y = saturate(x + y, f.res_bits)
            jobs.append((index, a, x))
            want.append(y)
    got = run_layers(dut, jobs, seed=n_layer)
    for job, g, w in zip(jobs, got, want):
        np.testing.assert_array_equal(g, w, err_msg=layers[job[0]].name)
    assert any(np.abs(w).max() >= 127 for w, job in zip(want, jobs) if not layers[job[0]].add)  # saturated


def test_memories(tmp_path):
    compiled = tiny_compiled(tmp_path / "model", n_layer=1, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    dut = ProgramLinear(layers=program_layers(compiled), rows=4, columns=3)
    memories = dict((name, (width, depth)) for name, width, depth in dut.memories)
    # c_attn 16x48, c_proj 16x16, c_fc 16x64, c_proj 64x16: chunks 4, 4, 4, 16; tiles 16, 6, 22, 6
    assert memories["codes"] == (4 * 12, 16 * 4 + 6 * 4 + 22 * 4 + 6 * 16)
    assert memories["bias"][1] == 48 + 16 + 64 + 16 and memories["bank0"] == (8, 16)


def test_wrong():
    with pytest.raises(ValueError, match="at least one linear layer"):
        ProgramLinear(layers=[])
