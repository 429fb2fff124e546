# amaranth: UnusedElaboratable=no
"""The table units: GELU (exhaustive over every 8-bit activation), exp2 (exhaustive over 13-bit gaps, 16 slow), xorshift32."""

import numpy as np
import pytest

from golden.int_ops import XORSHIFT_SEED_MAX, exp2, exp2_table, gelu_lookup, seed_state, xorshift32
from hdl.forward.exp2_unit import Exp2Unit
from hdl.forward.gelu_table import GeluTable
from hdl.forward.xorshift32 import Xorshift32

from forward_cases import stream_through


@pytest.fixture(scope="module")
def gelu_tables(compiled_default):
    return [compiled_default.tensors[f"h.{i}.mlp.gelu"] for i in range(compiled_default.config.n_layer)]


def test_gelu_exhaustive(gelu_tables):
    """Every 8-bit activation through the default model's layer-0 and last-layer tables."""
    x = np.arange(-128, 128)
    for table in (gelu_tables[0], gelu_tables[-1]):
        got = stream_through(GeluTable(table=table, act_bits=8), {"i": x}, "o", x.size)
        assert got == gelu_lookup(x, table, 8).tolist()


def test_gelu_random_table():
    rng = np.random.default_rng(5)
    table = rng.integers(-8, 8, 16)
    x = np.arange(-8, 8).repeat(3)
    got = stream_through(GeluTable(table=table, act_bits=4), {"i": x}, "o", x.size, gap=0.5)
    assert got == gelu_lookup(x, table, 4).tolist()


@pytest.mark.parametrize("kwargs, match", [({"table": [0] * 255}, "256 entries"), ({"table": [128] * 256}, "128"),
                                           ({"table": [0] * 256, "act_bits": 1}, "Activation bits")])
def test_gelu_wrong(kwargs, match):
    with pytest.raises((TypeError, ValueError), match=match):
        GeluTable(**kwargs)


@pytest.mark.parametrize("multiplier", [False, True])
@pytest.mark.parametrize("z_bits", [13, pytest.param(16, marks=pytest.mark.slow)])
def test_exp2_exhaustive(z_bits, multiplier):
    """Every gap z below 2**z_bits, default format (8 fraction bits, 16-bit entries), shifted by a barrel
    shifter or by a multiplier.

    13 bits reach integer parts 0..31, past the 16 at which every entry has
    shifted out; the slow run covers every 16-bit gap.
    """
    table = exp2_table(8, 16)
    z = np.arange(1 << z_bits)
    dut = Exp2Unit(table=table, frac_bits=8, exp_bits=16, z_bits=16, multiplier=multiplier)
    assert (dut.latency, dut.z_bits, dut.multiplier) == (2, 16, multiplier)
    assert stream_through(dut, {"i": z}, "o", z.size, gap=0) == exp2(z, table, 8).tolist()


@pytest.mark.parametrize("multiplier", [False, True])
def test_exp2_wide_gaps(multiplier):
    """Gaps far past the table (integer parts up to 2**28), with back-pressure; barrel shifter or multiplier."""
    table = exp2_table(4, 10)
    rng = np.random.default_rng(3)
    z = np.concatenate([np.arange(200), rng.integers(0, 1 << 32, 200), [(1 << 32) - 1, 10 << 4, (10 << 4) - 1]])
    got = stream_through(Exp2Unit(table=table, frac_bits=4, exp_bits=10, z_bits=32, multiplier=multiplier), {"i": z},
                         "o", z.size)
    assert got == exp2(z, table, 4).tolist()


def test_exp2_wrong():
    with pytest.raises(ValueError, match="256 entries"):
        Exp2Unit(table=[1] * 255, frac_bits=8, exp_bits=16, z_bits=16)
    with pytest.raises(ValueError, match="z_bits"):
        Exp2Unit(table=[1] * 256, frac_bits=8, exp_bits=16, z_bits=8)
    with pytest.raises(TypeError, match="multiplier must be True or False, not 1"):
        Exp2Unit(table=[1] * 256, frac_bits=8, exp_bits=16, z_bits=16, multiplier=1)


@pytest.mark.parametrize("seed", [0, 1, 12345, XORSHIFT_SEED_MAX])
def test_xorshift32_sequence(seed):
    """200 values after a seed load, and a reload mid-stream restarts the sequence."""
    state = seed_state(seed)
    want = []
    for _ in range(200):
        state = xorshift32(state)
        want.append(state)
    got = stream_through(Xorshift32(), {"seed": [seed_state(seed)]}, "o", 200, seed=seed % 97)
    assert got == want
