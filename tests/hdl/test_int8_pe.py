# amaranth: UnusedElaboratable=no

import numpy as np
import pytest

from golden.datapath import int8_acc_bits, int8_accumulate
from hdl.int8_pe import Int8PE

from hdl_cases import activations, int8_weights
from hdl_cases import drive_pe


def test_init():
    pe = Int8PE(act_bits=8, acc_bits=24)
    assert (pe.act_bits, pe.bits, pe.acc_bits, pe.acc_width, pe.weight_bits, pe.term_bits) == (8, None, 24, 24, 8, 16)
    assert pe.latency == 2


@pytest.mark.parametrize("act_bits", [1, 17, "8"])
def test_act_bits_wrong(act_bits):
    with pytest.raises((TypeError, ValueError), match="Activation bits"):
        Int8PE(act_bits=act_bits, acc_bits=24)


@pytest.mark.parametrize("acc_bits", [1, "24", None])
def test_acc_bits_wrong(acc_bits):
    with pytest.raises((TypeError, ValueError), match="Accumulator bits"):
        Int8PE(act_bits=8, acc_bits=acc_bits)


@pytest.mark.parametrize("act_bits", range(4, 9))
@pytest.mark.parametrize("narrow", [False, True])
def test_sim_tiles(act_bits, narrow):
    rng = np.random.default_rng(act_bits * 10 + narrow)
    ks = [1, 6, 13]
    acc_bits = act_bits + 4 if narrow else int8_acc_bits(max(ks), act_bits)
    tiles = [(activations(rng, act_bits, k), int8_weights(rng, k)) for k in ks]
    tiles.append((np.full(6, -(1 << (act_bits - 1))), np.full(6, -128, np.int8)))
    got = drive_pe(Int8PE(act_bits=act_bits, acc_bits=acc_bits), tiles, gaps=[1, 0, 0, 2])
    want = [int(int8_accumulate(x[None, :], w[:, None], [0], act_bits, acc_bits)[0, 0]) for x, w in tiles]
    assert got == want
