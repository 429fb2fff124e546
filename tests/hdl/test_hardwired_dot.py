# amaranth: UnusedElaboratable=no

import numpy as np
import pytest

from golden.datapath import int8_acc_bits, int8_matmul, pot_acc_bits, pot_matmul
from hdl.hardwired_dot import HardwiredDot

from hdl_cases import activations, codes, int8_weights, run


def test_init():
    dot = HardwiredDot(weights=np.array([0, 7, 9, 15], np.uint8), pe="pot", bits=4, act_bits=8)
    assert (dot.k, dot.pe, dot.act_bits, dot.acc_bits) == (4, "pot", 8, pot_acc_bits(4, 8, 4))
    assert dot.values == (64, 0, -32, 0)          # code 0: +2**6; 7 and 15: zero; 9: -2**5


@pytest.mark.parametrize("weights", [np.array([], np.uint8), np.array([[1]]), np.array([0.5])])
def test_weights_wrong(weights):
    with pytest.raises(ValueError, match="Weights must be"):
        HardwiredDot(weights=weights, pe="pot", bits=4)


def test_pe_wrong():
    with pytest.raises(ValueError, match="'int4'"):
        HardwiredDot(weights=np.array([1]), pe="int4")


def test_int8_range_wrong():
    with pytest.raises(ValueError, match="-128..127"):
        HardwiredDot(weights=np.array([200]), pe="int8", bits=None)


def _simulate(dot, xs):
    got = []

    async def bench(ctx):
        for x in xs:
            for port, value in zip(dot.x, x):
                ctx.set(port, int(value))
            await ctx.tick()
            got.append(ctx.get(dot.y))

    run(dot, bench)
    return got


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_sim_pot(bits):
    rng = np.random.default_rng(bits)
    w = codes(rng, bits, 12)
    xs = activations(rng, 8, (20, 12))
    xs[0] = -128                                      # every term at its most negative
    got = _simulate(HardwiredDot(weights=w, pe="pot", bits=bits, act_bits=8), xs)
    assert got == [int(v) for v in pot_matmul(xs, w[:, None], bits, 8)[:, 0]]


def test_sim_int8():
    rng = np.random.default_rng(1)
    w = int8_weights(rng, 10)
    xs = activations(rng, 8, (20, 10))
    dot = HardwiredDot(weights=w, pe="int8", bits=None, act_bits=8)
    assert dot.acc_bits == int8_acc_bits(10, 8)
    assert _simulate(dot, xs) == [int(v) for v in int8_matmul(xs, w[:, None], 8)[:, 0]]
