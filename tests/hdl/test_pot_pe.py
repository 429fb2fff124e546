# amaranth: UnusedElaboratable=no

import numpy as np
import pytest
from amaranth import Shape

from golden.datapath import pot_acc_bits, pot_accumulate
from golden.pot_format import PotFormat
from hdl.pot_pe import PotPE

from hdl_cases import activations, codes, drive_pe


def test_init():
    pe = PotPE(act_bits=8, bits=4, acc_bits=24)
    assert (pe.act_bits, pe.bits, pe.acc_bits, pe.acc_width, pe.weight_bits) == (8, 4, 24, 24, 4)
    assert pe.term_bits == 8 + 6
    assert pe.latency == 2
    assert Shape.cast(pe.signature.members["w_in"].shape).width == 4
    assert pe.exact_negation and not PotPE(acc_bits=8, exact_negation=False).exact_negation


def test_exact_negation_wrong():
    with pytest.raises(TypeError, match="Exact negation must be a bool, not 1"):
        PotPE(acc_bits=8, exact_negation=1)


@pytest.mark.parametrize("act_bits", [1, 17, "8", None])
def test_act_bits_wrong(act_bits):
    with pytest.raises((TypeError, ValueError), match=repr(act_bits) if isinstance(act_bits, str) else str(act_bits)):
        PotPE(act_bits=act_bits, bits=4, acc_bits=24)


@pytest.mark.parametrize("bits", [2, 9, 4.0, True])
def test_bits_wrong(bits):
    with pytest.raises((TypeError, ValueError), match="Weight bits"):
        PotPE(act_bits=8, bits=bits, acc_bits=24)


@pytest.mark.parametrize("acc_bits", [1, 0, "24", None])
def test_acc_bits_wrong(acc_bits):
    with pytest.raises((TypeError, ValueError), match="Accumulator bits"):
        PotPE(act_bits=8, bits=4, acc_bits=acc_bits)


@pytest.mark.parametrize("bits", range(3, 9))
@pytest.mark.parametrize("act_bits", range(4, 9))
@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("exact_negation", [True, False])
def test_sim_tiles(bits, act_bits, narrow, exact_negation):
    rng = np.random.default_rng(bits * 100 + act_bits * 10 + narrow)
    ks = [1, 5, 12, 3]
    exact = pot_acc_bits(max(ks), act_bits, bits)
    acc_bits = max(2, act_bits + PotFormat(bits).emax - 2) if narrow else exact
    tiles = [(activations(rng, act_bits, k), codes(rng, bits, k)) for k in ks]
    # One tile of extremes: the most negative activation at the largest shift, both signs.
    lo = -(1 << (act_bits - 1))
    tiles.append((np.full(8, lo), np.array([0, 0, 0, 0, 0, PotFormat(bits).sign_bit, 0, 0], np.uint8)))
    pe = PotPE(act_bits=act_bits, bits=bits, acc_bits=acc_bits, exact_negation=exact_negation)
    got = drive_pe(pe, tiles, gaps=[0, 2, 0, 1, 0])
    # Ones'-complement terms: each negative non-zero code's term is one short (the -1 "bias" is the count).
    want = [int(pot_accumulate(x[None, :], w[:, None],
                               [0 if exact_negation else -int((PotFormat(bits).to_int(w) < 0).sum())],
                               bits, act_bits, acc_bits)[0, 0]) for x, w in tiles]
    assert got == want
