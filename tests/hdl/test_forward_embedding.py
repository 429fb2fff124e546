# amaranth: UnusedElaboratable=no
"""The embedding unit against golden's integer forward's ``embed``, on the default model's compiled tables."""

import numpy as np
import pytest

from golden.int_forward import IntegerForward
from hdl.forward.embedding_unit import EmbeddingUnit

from forward_cases import stream_through


def unit_of(compiled):
    t = compiled.tensors
    return EmbeddingUnit(wte=t["wte.table"], wpe=t["wpe.table"], wte_mult=t["wte.mult"], wte_shift=t["wte.shift"],
                         wpe_mult=t["wpe.mult"], wpe_shift=t["wpe.shift"], res_bits=compiled.formats.res_bits)


def test_default_model(compiled_default):
    """Every token once (at positions first, last and spread between), each row against golden's embed."""
    c = compiled_default.config
    dut = unit_of(compiled_default)
    assert (dut.vocab_size, dut.positions, dut.d, dut.row_cycles) == (c.vocab_size, c.n_positions, c.n_embd,
                                                                      2 * c.n_embd + 6)
    forward = IntegerForward(compiled_default)
    rng = np.random.default_rng(2)
    tokens = np.arange(c.vocab_size)
    positions = rng.integers(0, c.n_positions, tokens.size)
    positions[:2] = 0, c.n_positions - 1
    requests = [{"token": t, "position": p} for t, p in zip(tokens, positions)]
    got = np.array(stream_through(dut, {"i": requests}, "o", tokens.size * c.n_embd)).reshape(tokens.size, -1)
    want = np.concatenate([forward._embed(np.array([[t]]), int(p))[0] for t, p in zip(tokens, positions)])
    np.testing.assert_array_equal(got, want)


def test_wrong():
    table = np.zeros((4, 8), np.int64)
    ones = np.ones(4, np.int64)
    with pytest.raises(ValueError, match="wte has 4 rows but 3 multipliers"):
        EmbeddingUnit(wte=table, wpe=table, wte_mult=ones[:3], wte_shift=ones, wpe_mult=ones, wpe_shift=ones)
    with pytest.raises(ValueError, match="wte rows have 8 values and wpe rows 4"):
        EmbeddingUnit(wte=table, wpe=table[:, :4], wte_mult=ones, wte_shift=ones, wpe_mult=ones, wpe_shift=ones)
