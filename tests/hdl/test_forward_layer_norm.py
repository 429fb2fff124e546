# amaranth: UnusedElaboratable=no
"""The layer norm unit against golden.int_ops.layer_norm, on the default model's compiled layer norms."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from golden.int_ops import layer_norm
from hdl.forward.layer_norm_unit import LayerNormUnit
from hdl.forward.units import layer_norm_for

from forward_cases import stream_through


def run_rows(dut, rows, gamma, beta, eps, gamma_shift, seed=0, gap=0.25):
    rows = np.asarray(rows)
    affine = [{"gamma": g, "beta": b} for g, b in zip(gamma, beta)] * len(rows)

    def setup(ctx):
        ctx.set(dut.eps, int(eps))
        ctx.set(dut.gamma_shift, int(gamma_shift))

    got = stream_through(dut, {"x": rows.reshape(-1), "affine": affine}, "o", rows.size, seed=seed, gap=gap,
                         setup=setup)
    return np.array(got).reshape(rows.shape)


def golden_rows(rows, gamma, beta, eps, gamma_shift, frac_bits=10, inv_bits=16, out_bits=8):
    return layer_norm(np.asarray(rows), gamma, beta, gamma_shift=gamma_shift, eps=eps, frac_bits=frac_bits,
                      inv_bits=inv_bits, out_bits=out_bits)


def edge_rows(rng, d, res_bits):
    lo, hi = -(1 << (res_bits - 1)), (1 << (res_bits - 1)) - 1
    spike = np.zeros(d, np.int64)
    spike[d // 2] = lo
    return np.stack([np.full(d, 7), np.full(d, lo), np.resize([lo, hi], d), spike, np.zeros(d, np.int64),
                     rng.integers(lo, hi + 1, d), rng.integers(-40, 40, d)])


def test_init():
    dut = LayerNormUnit(d=64)
    assert (dut.d, dut.log2_d, dut.s1_bits, dut.d_bits, dut.n_bits, dut.beta_bits) == (64, 6, 22, 43, 16, 32)
    assert dut.pipeline_depth == 2
    with pytest.raises(ValueError, match="frac_bits"):
        LayerNormUnit(d=64, frac_bits=16, inv_bits=16)
    with pytest.raises(TypeError, match="d must be an integer"):
        LayerNormUnit(d=64.0)
    with pytest.raises(ValueError, match="gamma_shift_range must have low <= high"):
        LayerNormUnit(d=64, gamma_shift_range=(5, 4))
    with pytest.raises(ValueError, match="eps_min must be from 1"):
        LayerNormUnit(d=64, eps_min=0)
    assert LayerNormUnit(d=64, eps_min=7604).shift_range == (11, 26)


@pytest.mark.parametrize("name, serial", [("h.0.ln_1", 0), ("ln_f", 0), ("h.0.ln_1", 2), ("ln_f", 6)])
def test_default_model(compiled_default, name, serial):
    """Edge rows and calibrated-looking random rows through a compiled layer norm of the default model, its
    normalising shift in the log shifter, two bits of it serial, or all of it serial."""
    t = compiled_default.tensors
    f = compiled_default.formats
    gamma, beta, eps, shift = t[name + ".gamma"], t[name + ".beta"], int(t[name + ".eps"]), int(t[name + ".shift"])
    rng = np.random.default_rng(17)
    rows = np.concatenate([edge_rows(rng, 64, f.res_bits), rng.normal(0, 3000, (3, 64)).round().astype(np.int64)])
    dut = layer_norm_for(compiled_default, serial_shift_bits=serial)    # shifters bounded by the artefact's
    assert dut.gamma_shift_range[0] <= shift <= dut.gamma_shift_range[1] and dut.eps_min <= eps
    want = golden_rows(rows, gamma, beta, eps, shift, f.ln_frac_bits, f.ln_inv_bits, f.act_bits)
    np.testing.assert_array_equal(run_rows(dut, rows, gamma, beta, eps, shift), want)
    assert len(np.unique(want)) > 50                                     # not a saturated test


@pytest.mark.parametrize("serial", [0, 3])
def test_row_cycles(serial):
    """With no gaps a row takes at most `max_row_cycles` (which counts the serial shifts)."""
    d = 16
    dut = LayerNormUnit(d=d, serial_shift_bits=serial)
    rows = np.arange(2 * d).reshape(2, d) * 100
    from amaranth.sim import Simulator
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    done = []

    async def bench(ctx):
        ctx.set(dut.eps, 1)
        ctx.set(dut.gamma_shift, 12)
        ctx.set(dut.o.ready, 1)
        ctx.set(dut.x.valid, 1)
        ctx.set(dut.affine.valid, 1)
        ctx.set(dut.affine.payload.gamma, 1 << 12)
        cycles = outputs = 0
        for value in rows[0]:
            ctx.set(dut.x.payload, int(value))
            await ctx.tick()
            cycles += 1
        ctx.set(dut.x.valid, 0)
        while outputs < d:
            outputs += ctx.get(dut.o.valid)
            await ctx.tick()
            cycles += 1
        done.append(cycles)

    sim.add_testbench(bench)
    sim.run()
    assert done[0] <= dut.max_row_cycles
    assert dut.serial_cycles_max == (8 if serial else 0)


@settings(max_examples=6, deadline=None, derandomize=True)
@given(seed=st.integers(0, 2**32 - 1), d=st.sampled_from([2, 5, 16, 24]), res_bits=st.integers(6, 16),
       frac_bits=st.integers(1, 12), out_bits=st.integers(4, 8), serial=st.integers(0, 6))
def test_random_formats(seed, d, res_bits, frac_bits, out_bits, serial):
    """Random shapes and formats, random gains and biases of the full declared widths, eps from 1."""
    rng = np.random.default_rng(seed)
    inv_bits, gamma_bits = max(4, frac_bits + int(rng.integers(1, 6))), int(rng.integers(4, 17))
    n_bits = LayerNormUnit(d=d, res_bits=res_bits, frac_bits=frac_bits, inv_bits=inv_bits,
                           gamma_bits=gamma_bits).n_bits
    gamma = rng.integers(-(1 << (gamma_bits - 1)), 1 << (gamma_bits - 1), d)
    beta_bits = n_bits + gamma_bits
    beta = rng.integers(-(1 << (beta_bits - 6)), 1 << (beta_bits - 6), d)
    beta[-1] = -(1 << (beta_bits - 1))                                    # the declared extreme (saturates)
    eps = int(rng.integers(1, 1 << 12))
    shift = max(0, n_bits + gamma_bits - out_bits - int(rng.integers(0, 4)))    # most outputs in range
    # The shifters built for a range around this layer's shift and for an eps_min at or below its eps.
    shift_range = (max(0, shift - int(rng.integers(0, 3))), min(63, shift + int(rng.integers(0, 3))))
    dut = LayerNormUnit(d=d, res_bits=res_bits, frac_bits=frac_bits, inv_bits=inv_bits, gamma_bits=gamma_bits,
                        out_bits=out_bits, eps_bits=12, eps_min=int(rng.integers(1, eps + 1)),
                        gamma_shift_range=shift_range, serial_shift_bits=serial)
    lo, hi = -(1 << (res_bits - 1)), 1 << (res_bits - 1)
    rows = np.concatenate([edge_rows(rng, d, res_bits)[:4], rng.integers(lo, hi, (2, d))])
    want = golden_rows(rows, gamma, beta, eps, shift, frac_bits, inv_bits, out_bits)
    np.testing.assert_array_equal(run_rows(dut, rows, gamma, beta, eps, shift, seed=seed % 100), want)
    assert np.mean(np.abs(want[:, :-1]) < (1 << (out_bits - 1)) - 1) > 0.3      # not a saturated test


@pytest.mark.parametrize("eps", [1, 2, 3, 255, 256, 65535, 65536, (1 << 20) - 1, 1 << 20, 1 << 31, (1 << 40) - 1])
def test_root_and_reciprocal_edges(eps):
    """The once-per-row isqrt and reciprocal at their edges: with d = 2, D = (x0 - x1)**2 + eps, so rows
    (k, 0) put D on squares plus eps and on powers of two; with inv_bits 7 and frac_bits 6 the output is n
    itself (gamma 1, shift 0), where R and sh off by one step would show."""
    ks = [0, 1, 2, 3, 100, 255, 256, 4095, 4096, 32767]
    rows = np.array([[k, 0] for k in ks] + [[-32768, 32767], [32767, -32768]])
    gamma, beta = np.ones(2, np.int64), np.zeros(2, np.int64)
    dut = LayerNormUnit(d=2, res_bits=16, frac_bits=6, inv_bits=7, gamma_bits=4, eps_bits=40, eps_min=1,
                        gamma_shift_range=(0, 0), out_bits=8)
    want = golden_rows(rows, gamma, beta, eps, 0, frac_bits=6, inv_bits=7, out_bits=8)
    np.testing.assert_array_equal(run_rows(dut, rows, gamma, beta, eps, 0), want)
    assert np.abs(want).max() < 127                                   # n itself, not saturated


@pytest.mark.parametrize("d, frac_bits, inv_bits, eps, shifts, fold, serial", [
    (64, 6, 7, 1, (0, 2), 0, 0), (64, 6, 7, 4, (1, 3), 0, 0), (64, 6, 7, 16, (2, 2), 1, 0),
    (64, 6, 7, 300, (0, 0), 3, 0), (64, 4, 8, 4096, (3, 5), 6, 0), (48, 6, 7, 5000, (1, 1), 4, 0),
    (64, 6, 7, 4, (1, 3), 0, 6), (64, 6, 7, 16, (2, 2), 1, 1), (64, 4, 8, 4096, (3, 5), 6, 6)])
def test_fold(d, frac_bits, inv_bits, eps, shifts, fold, serial):
    """``d x R - C`` folded by ``2**fold`` (limited by d's trailing zeros and by the smallest normalising shift
    that eps_min allows), and the output rounding from each side of its shift range's bottom (0, 1, more);
    with some or all of the normalising shift serial (`serial_shift_bits`)."""
    dut = LayerNormUnit(d=d, res_bits=10, frac_bits=frac_bits, inv_bits=inv_bits, gamma_bits=4, eps_bits=13,
                        eps_min=eps, gamma_shift_range=shifts, out_bits=8, serial_shift_bits=serial)
    assert dut.fold_bits == fold
    rng = np.random.default_rng(d + eps)
    gamma, beta = rng.integers(-8, 8, d), rng.integers(-600, 600, d)
    rows = np.concatenate([edge_rows(rng, d, 10), rng.integers(-512, 512, (2, d)), rng.integers(-3, 4, (1, d))])
    want = golden_rows(rows, gamma, beta, eps, shifts[1], frac_bits, inv_bits, 8)
    np.testing.assert_array_equal(run_rows(dut, rows, gamma, beta, eps, shifts[1], seed=fold), want)
    assert len(np.unique(want)) > 20                                      # not a saturated test
