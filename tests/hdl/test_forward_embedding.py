# amaranth: UnusedElaboratable=no
"""The embedding unit against golden's integer forward's ``embed``, on the default model's compiled tables."""

import numpy as np
import pytest

from golden import int_ops
from golden.int_forward import IntegerForward
from hdl.forward.embedding_unit import EmbeddingUnit

from forward_cases import stream_through
from hdl.forward.simulation import run_streams


def unit_of(compiled, lanes=None, **options):
    t = compiled.tensors
    return EmbeddingUnit(wte=t["wte.table"], wpe=t["wpe.table"], wte_mult=t["wte.mult"], wte_shift=t["wte.shift"],
                         wpe_mult=t["wpe.mult"], wpe_shift=t["wpe.shift"], res_bits=compiled.formats.res_bits,
                         lanes=lanes, **options)


@pytest.mark.parametrize("lanes, wpe_source, multiplier, split", [(None, "rom", "dsp", False), (4, "rom", "dsp", False),
                                                                  (3, "rom", "serial", False),
                                                                  (4, "stream", "serial", False),
                                                                  (None, "stream", "dsp", False),
                                                                  (2, "stream", "serial", True),
                                                                  (4, "rom", "dsp", True)])
def test_default_model(compiled_default, lanes, wpe_source, multiplier, split):
    """Every token once (every 4th shift-add, the last token among them; at positions first, last and spread
    between), each row against golden's embed; wte held per value, or in the head's layout of 4, 3 or 2 values
    a word (3: rows padded), in one memory or split at a power of two with the requantisers after the rest (the
    last token's words are there); wpe from its memory or streamed (`wpe_bytes`, the stream idling too); one
    product a cycle, or shift-add."""
    c = compiled_default.config
    dut = unit_of(compiled_default, lanes, wpe_source=wpe_source, multiplier=multiplier, split_table=split)
    assert (dut.vocab_size, dut.positions, dut.d) == (c.vocab_size, c.n_positions, c.n_embd)
    forward = IntegerForward(compiled_default)
    rng = np.random.default_rng(2)
    tokens = np.arange(c.vocab_size)[::1 if multiplier == "dsp" else 4]     # shift-add is 5x the cycles
    positions = rng.integers(0, c.n_positions, tokens.size)
    positions[:2] = 0, c.n_positions - 1
    requests = [{"token": t, "position": p} for t, p in zip(tokens, positions)]
    inputs = {"i": requests}
    if wpe_source == "stream":
        inputs["wpe"] = [b for p in positions for b in dut.wpe_bytes(int(p))]
    got = np.array(stream_through(dut, inputs, "o", tokens.size * c.n_embd)).reshape(tokens.size, -1)
    want = np.concatenate([forward._embed(np.array([[t]]), int(p))[0] for t, p in zip(tokens, positions)])
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("wpe_source, multiplier, split", [("rom", "dsp", False), ("stream", "serial", False),
                                                            ("stream", "serial", True)])
def test_row_cycles(compiled_default, wpe_source, multiplier, split):
    """With no gaps a row takes `row_cycles` from the request to its last value (2 cycles a value with a
    multiplier, table_bits + 2 = 10 shift-add; a cycle more with the table split, the requantiser's read)."""
    dut = unit_of(compiled_default, 4, wpe_source=wpe_source, multiplier=multiplier, split_table=split)
    assert dut.row_cycles == dut.d * dut.value_cycles + 2 + split
    assert dut.value_cycles == (2 if multiplier == "dsp" else 10)
    inputs = {"i": [{"token": 7, "position": 9}]}
    if wpe_source == "stream":
        inputs["wpe"] = list(dut.wpe_bytes(9))
    # run_streams counts from the first cycle the request may be offered to the cycle the last value is taken.
    _, cycles = run_streams(dut, inputs, "o", dut.d)
    assert cycles == dut.row_cycles + 1


def test_wpe_terms(compiled_default):
    """A position's term is golden's, streamed little-endian in 2 bytes each (the default model's are 9-bit)."""
    t = compiled_default.tensors
    dut = unit_of(compiled_default, wpe_source="stream")
    want = int_ops.round_shift(t["wpe.table"][5].astype(np.int64) * int(t["wpe.mult"][5]), int(t["wpe.shift"][5]))
    assert dut.wpe_terms[5] == list(want) and dut.wpe_term_bits == 9 and dut.wpe_term_bytes == 2
    assert list(np.frombuffer(dut.wpe_bytes(5), "<i2")) == list(want)
    assert [name for name, _, _ in dut.memories] == ["wte", "wte_mult"]
    assert ("wpe", 9, t["wpe.table"].size) in unit_of(compiled_default).memories


def test_wrong():
    table = np.zeros((4, 8), np.int64)
    ones = np.ones(4, np.int64)
    with pytest.raises(ValueError, match="wte has 4 rows but 3 multipliers"):
        EmbeddingUnit(wte=table, wpe=table, wte_mult=ones[:3], wte_shift=ones, wpe_mult=ones, wpe_shift=ones)
    with pytest.raises(ValueError, match="wte rows have 8 values and wpe rows 4"):
        EmbeddingUnit(wte=table, wpe=table[:, :4], wte_mult=ones, wte_shift=ones, wpe_mult=ones, wpe_shift=ones)
    with pytest.raises(ValueError, match="multiplier must be one of dsp, serial, not 'booth'"):
        EmbeddingUnit(wte=table, wpe=table, wte_mult=ones, wte_shift=ones, wpe_mult=ones, wpe_shift=ones,
                      multiplier="booth")
    with pytest.raises(ValueError, match="split_table needs lanes"):
        EmbeddingUnit(wte=table, wpe=table, wte_mult=ones, wte_shift=ones, wpe_mult=ones, wpe_shift=ones,
                      split_table=True)
    with pytest.raises(ValueError, match="split_table: 4 words and 4 requantisers do not split"):
        EmbeddingUnit(wte=table, wpe=table, wte_mult=ones, wte_shift=ones, wpe_mult=ones, wpe_shift=ones,
                      lanes=8, split_table=True)


def test_requantiser_words(compiled_default):
    """The default model's mults all have their top bit set: 15 bits of mult and 1 of shift offset, 16 in all."""
    dut = unit_of(compiled_default)
    words, kept, low, shift_bits, top = dut.requantiser_words("wte")
    assert (kept, shift_bits, top, low) == (15, 1, 15, 14)
    t = compiled_default.tensors
    assert [(w & 0x7FFF) | 0x8000 for w in words] == list(t["wte.mult"])
    assert [(w >> 15) + low for w in words] == list(t["wte.shift"])
    assert ("wte_mult", 16, c_vocab(compiled_default)) in dut.memories


def c_vocab(compiled):
    return compiled.config.vocab_size


def test_split_memories(compiled_default):
    """Split, the head's layout of 2 values a word is 2,048 words (8 iCE40 block RAMs, no multiplexer) and
    32 more, with the 65 requantiser words after them: no wte_mult."""
    dut = unit_of(compiled_default, 2, wpe_source="stream", split_table=True)
    assert dut.split_table == 2048
    assert dut.memories == [("wte", 16, 2048), ("wte_rest", 16, 32 + 65)]
    assert unit_of(compiled_default, 2).split_table is None


@pytest.mark.parametrize("lanes, split", [(4, False), (2, True)])
def test_wte_read(compiled_default, lanes, split):
    """While idle, the wte words of the head's layout are served on wte_read, a read port's timing (split too:
    words past the power of two come from the second memory)."""
    from amaranth.sim import Simulator
    from hdl.forward.head_unit import lane_words

    dut = unit_of(compiled_default, lanes, split_table=split)
    words, _, _ = lane_words(compiled_default.tensors["wte.table"], lanes)
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    got = []

    async def bench(ctx):
        ctx.set(dut.wte_read.en, 1)
        for address in [0, 1, 17, len(words) - 1, 5, 2047 if split else 3, len(words) - 2]:
            ctx.set(dut.wte_read.addr, address)
            await ctx.tick()
            got.append(ctx.get(dut.wte_read.data))

    sim.add_testbench(bench)
    sim.run()
    assert got == [words[a] for a in [0, 1, 17, len(words) - 1, 5, 2047 if split else 3, len(words) - 2]]
