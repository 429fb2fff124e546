# amaranth: UnusedElaboratable=no
"""The sweep's engine-alone top: what it feeds the engine is a real batch of layer 0, every result it
takes is the golden one, and its pin is the parity of all of them."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.datapath import pot_accumulate
from golden.pot_format import PotFormat
from golden.rom_layout import RomLayout
from hdl.engine import Engine
from hdl.sweep_top import EngineHarness

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def make_harness(rows=2, columns=3, k=5, n=4, seed=0):
    rng = np.random.default_rng(seed)
    codes = rng.integers(0, 16, size=(k, n))
    codes[0, 0] = PotFormat(4).zero_code
    bias = rng.integers(-50, 50, size=n)
    layout = RomLayout([("a", codes, bias), ("b", codes[:2], bias)], columns=columns, bits=4)
    engine = Engine(layout=layout, rows=rows)
    return EngineHarness(engine=engine), codes, bias


def test_init():
    harness, _, _ = make_harness()
    assert harness.engine.rows == 2 and harness.frequency is None
    assert set(harness.signature.members) == {"seed", "out"}


def test_engine_wrong():
    with pytest.raises(TypeError, match="Engine must be an hdl.engine.Engine, not 'engine'"):
        EngineHarness(engine="engine")


def test_sim_batches_match_golden():
    harness, codes, bias = make_harness()
    engine = harness.engine
    fed, got, parity = [], [], []

    async def watch(ctx):
        async for clk_edge, rst, a_valid, a_ready, a_data, a_last, r_valid, r_data, r_last, out in ctx.tick().sample(
                engine.activations.valid, engine.activations.ready, engine.activations.p.data,
                engine.activations.p.last, engine.results.valid, engine.results.p.data, engine.results.p.last,
                harness.out):
            if a_valid and a_ready:
                fed.append((a_data, a_last))
            if r_valid:
                got.append((r_data, r_last))
            parity.append(out)

    async def bench(ctx):
        ctx.set(harness.seed, 1)
        await ctx.tick().repeat(300)

    sim = Simulator(harness)
    sim.add_clock(1e-8)
    sim.add_process(watch)
    sim.add_testbench(bench)
    sim.run()

    k, n, rows = codes.shape[0], codes.shape[1], engine.rows
    assert len(got) >= 3 * rows * n
    batches = len(got) // (rows * n)
    x = np.array([value for value, _ in fed[:batches * rows * k]]).reshape(batches * rows, k)
    assert [last for _, last in fed[:batches * rows * k]] == ([0] * (rows * k - 1) + [1]) * batches
    expected = pot_accumulate(x, codes, bias, 4, engine.act_bits, engine.acc_bits)
    assert np.array_equal(np.array([value for value, _ in got[:batches * rows * n]]), expected.reshape(-1))
    assert len(set(x.reshape(-1).tolist())) > 20                        # the LFSR varies the activations
    folded = 0
    for value, last in got[:-1]:
        folded ^= bin(value & ((1 << engine.acc_bits) - 1)).count("1") & 1 ^ last
    assert parity[-1] in (folded, folded ^ (bin(got[-1][0] & ((1 << engine.acc_bits) - 1)).count("1") & 1
                                            ^ got[-1][1]))
