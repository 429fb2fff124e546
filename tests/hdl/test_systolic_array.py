# amaranth: UnusedElaboratable=no

import numpy as np
import pytest

from golden.datapath import int8_accumulate, pot_acc_bits, pot_accumulate
from golden.pot_format import PotFormat
from hdl.systolic_array import SystolicArray

from hdl_cases import activations, codes, int8_weights, run


def test_init():
    array = SystolicArray(rows=2, columns=3, act_bits=6, acc_bits=20, bits=5)
    assert (array.rows, array.columns, array.pes, array.act_bits, array.acc_bits, array.acc_width) == (2, 3, 6, 6, 20, 20)
    assert (array.bits, array.pe, array.weight_bits, array.idle_weight) == (5, "pot", 5, PotFormat(5).zero_code)
    assert array.latency == 2 and array.broadcast_rows == 4
    assert [SystolicArray(rows=9, columns=1, acc_bits=8, broadcast_rows=3).row_skew(r) for r in range(9)] \
        == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    wide = SystolicArray(rows=1, columns=7, acc_bits=8, broadcast_columns=3)
    assert [wide.column_skew(c) for c in range(7)] == [0, 0, 0, 1, 1, 1, 2] and wide.drain_lag == 4
    assert array.broadcast_columns == 1 and array.drain_lag == 0
    int8 = SystolicArray(rows=1, columns=20, acc_bits=24, bits=None, pe="int8")
    assert (int8.bits, int8.weight_bits, int8.idle_weight, int8.latency) == (None, 8, 0, 3)


@pytest.mark.parametrize("rows", [0, -1, 1.5, "2", True])
def test_rows_wrong(rows):
    with pytest.raises((TypeError, ValueError), match=f"Row count must be a positive integer, not {rows!r}"):
        SystolicArray(rows=rows, columns=2, acc_bits=16)


@pytest.mark.parametrize("columns", [0, None, 2.0])
def test_columns_wrong(columns):
    with pytest.raises((TypeError, ValueError), match=f"Column count must be a positive integer, not {columns!r}"):
        SystolicArray(rows=1, columns=columns, acc_bits=16)


@pytest.mark.parametrize("act_bits", [1, 17])
def test_act_bits_wrong(act_bits):
    with pytest.raises(ValueError, match=f"not {act_bits}"):
        SystolicArray(rows=1, columns=1, act_bits=act_bits, acc_bits=16)


@pytest.mark.parametrize("acc_bits", [1, "x"])
def test_acc_bits_wrong(acc_bits):
    with pytest.raises(ValueError, match="Accumulator bits"):
        SystolicArray(rows=1, columns=1, acc_bits=acc_bits)


@pytest.mark.parametrize("bits", [2, 9, None])
def test_bits_wrong(bits):
    with pytest.raises((TypeError, ValueError), match="Weight bits"):
        SystolicArray(rows=1, columns=1, acc_bits=16, bits=bits)


@pytest.mark.parametrize("broadcast_rows", [0, 2.0])
def test_broadcast_rows_wrong(broadcast_rows):
    with pytest.raises((TypeError, ValueError), match=f"Broadcast rows must be a positive integer, not {broadcast_rows!r}"):
        SystolicArray(rows=1, columns=1, acc_bits=16, broadcast_rows=broadcast_rows)
    with pytest.raises((TypeError, ValueError), match=f"Broadcast columns must be a positive integer, not {broadcast_rows!r}"):
        SystolicArray(rows=1, columns=1, acc_bits=16, broadcast_columns=broadcast_rows)


def test_pe_wrong():
    with pytest.raises(ValueError, match="PE kind must be one of 'pot', 'int8', not 'fp8'"):
        SystolicArray(rows=1, columns=1, acc_bits=16, pe="fp8")
    with pytest.raises(ValueError, match="takes no code width"):
        SystolicArray(rows=1, columns=1, acc_bits=16, bits=4, pe="int8")


def simulate(array, tiles, gaps):
    """Feed tiles (x (R, K), w (K, C)) with the skews, each followed by a drain and `gaps` idle beats.

    Column ``c``'s drain flag comes ``c`` cycles after column 0's, with a junk code beside it (which the
    PE ignores); between a tile's last code and its drain the column's codes are idle (`drain_lag`).
    Returns, per row, the list of drained results in output order.
    """
    R, C = array.rows, array.columns
    idle = array.idle_weight
    start = [0]
    for (x, _), gap in zip(tiles, gaps):
        start.append(start[-1] + x.shape[1] + 1 + array.drain_lag + gap)
    total = start[-1] + array.row_skew(R - 1) + C + array.latency + 2
    xs = np.zeros((total, R), np.int64)
    ws = np.full((total, C), idle, np.int64)
    drains = np.zeros((total, C), np.int64)
    for (x, w), t0 in zip(tiles, start):
        K = x.shape[1]
        for r in range(R):
            xs[t0 + array.row_skew(r):t0 + array.row_skew(r) + K, r] = x[r]
        for c in range(C):
            ws[t0 + array.column_skew(c):t0 + array.column_skew(c) + K, c] = w[:, c]
            ws[t0 + K + c, c] = 1
            drains[t0 + K + c, c] = 1
    got = [[] for _ in range(R)]

    async def bench(ctx):
        for t in range(total):
            for r in range(R):
                ctx.set(array.x[r], int(xs[t, r]))
            for c in range(C):
                ctx.set(array.w[c], int(ws[t, c]))
                ctx.set(array.drain[c], int(drains[t, c]))
            await ctx.tick()
            for r in range(R):
                if ctx.get(array.valid[r]):
                    got[r].append(ctx.get(array.results[r]))

    run(array, bench)
    return got


@pytest.mark.parametrize("rows, columns, broadcast_rows, broadcast_columns",
                         [(1, 1, 4, 1), (1, 5, 1, 1), (3, 1, 2, 1), (2, 3, 1, 1), (4, 4, 4, 1), (5, 3, 2, 1),
                          (2, 17, 4, 1), (1, 5, 1, 2), (3, 8, 2, 4), (2, 17, 4, 4), (2, 6, 1, 6)])
@pytest.mark.parametrize("narrow", [False, True])
@pytest.mark.parametrize("exact_negation", [True, False])
def test_sim_pot(rows, columns, broadcast_rows, broadcast_columns, narrow, exact_negation):
    rng = np.random.default_rng(rows * 100 + columns + narrow)
    bits, act_bits = 4, 6
    ks = [1, 7, 3, 10]
    acc_bits = 9 if narrow else pot_acc_bits(max(ks), act_bits, bits)
    array = SystolicArray(rows=rows, columns=columns, act_bits=act_bits, acc_bits=acc_bits, bits=bits,
                          broadcast_rows=broadcast_rows, broadcast_columns=broadcast_columns,
                          exact_negation=exact_negation)
    tiles = [(activations(rng, act_bits, (rows, k)), codes(rng, bits, (k, columns))) for k in ks]
    # Gaps keep drains at least `columns` apart: K of tile i+1 + 1 + drain lag + gap after tile i >= C.
    gaps = [max(0, columns - k - 1 - array.drain_lag) for k in ks[1:]] + [0]
    got = simulate(array, tiles, gaps)
    for r in range(rows):
        # Ones'-complement terms leave out one per negative non-zero code of the channel: a bias of -count.
        want = [int(v) for x, w in tiles
                for v in pot_accumulate(x[r:r + 1], w, np.zeros(columns, np.int64) if exact_negation
                                        else -(PotFormat(bits).to_int(w) < 0).sum(axis=0), bits, act_bits, acc_bits)[0]]
        assert got[r] == want


@pytest.mark.parametrize("bits", range(3, 9))
def test_sim_pot_bits(bits):
    rng = np.random.default_rng(bits)
    rows, columns, act_bits = 2, 2, 8
    array = SystolicArray(rows=rows, columns=columns, act_bits=act_bits,
                          acc_bits=pot_acc_bits(6, act_bits, bits), bits=bits)
    tiles = [(activations(rng, act_bits, (rows, 6)), codes(rng, bits, (6, columns))) for _ in range(2)]
    got = simulate(array, tiles, [0, 0])
    for r in range(rows):
        want = [int(v) for x, w in tiles
                for v in pot_accumulate(x[r:r + 1], w, np.zeros(columns, np.int64), bits, act_bits)[0]]
        assert got[r] == want


@pytest.mark.parametrize("broadcast_columns", [1, 2])
def test_sim_int8(broadcast_columns):
    rng = np.random.default_rng(8)
    rows, columns, act_bits, acc_bits = 2, 3, 8, 14
    array = SystolicArray(rows=rows, columns=columns, act_bits=act_bits, acc_bits=acc_bits, bits=None, pe="int8",
                          broadcast_columns=broadcast_columns)
    ks = [4, 1, 9]
    tiles = [(activations(rng, act_bits, (rows, k)), int8_weights(rng, (k, columns))) for k in ks]
    got = simulate(array, tiles, [2, 1, 0])
    for r in range(rows):
        want = [int(v) for x, w in tiles
                for v in int8_accumulate(x[r:r + 1], w, np.zeros(columns, np.int64), act_bits, acc_bits)[0]]
        assert got[r] == want
