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


def test_skip_input():
    """Beats with ``skip_in`` high, any code and activation, add nothing: the tiles' sums are those of their
    other beats (ones'-complement terms, as `ProgramLinear` uses it)."""
    from amaranth.sim import Simulator

    bits, act_bits = 4, 8
    fmt = PotFormat(bits)
    rng = np.random.default_rng(11)
    pe = PotPE(act_bits=act_bits, bits=bits, acc_bits=18, exact_negation=False, skip_input=True)
    assert pe.skip_input and "skip_in" in pe.signature.members and "skip_in" not in PotPE(acc_bits=8).signature.members
    tiles = [(activations(rng, act_bits, k), codes(rng, bits, k)) for k in (6, 1, 9)]
    beats, want = [], []
    for x, w in tiles:
        for a, c in zip(x, w):
            beats += [(int(rng.integers(-128, 128)), int(rng.integers(0, 16)), 0, 1)] * int(rng.integers(0, 3))
            beats.append((int(a), int(c), 0, 0))
        beats.append((-1, 1, 1, 0))
        want.append(int((x * fmt.to_int(w)).sum()) - int((fmt.to_int(w) < 0).sum()))
    beats += [(5, 0, 0, 1)] * 3
    got = []

    async def bench(ctx):
        for x, w, drain, skip in beats:
            ctx.set(pe.x_in, x)
            ctx.set(pe.w_in, w)
            ctx.set(pe.drain_in, drain)
            ctx.set(pe.skip_in, skip)
            await ctx.tick()
            if ctx.get(pe.valid):
                got.append(ctx.get(pe.acc))

    sim = Simulator(pe)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert got == want
    with pytest.raises(TypeError, match="Skip input must be a bool"):
        PotPE(acc_bits=8, skip_input=1)
