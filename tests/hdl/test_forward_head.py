# amaranth: UnusedElaboratable=no
"""The head unit against golden's ``head`` op: logits of real ln_f outputs, several lane counts."""

import numpy as np
import pytest

from golden.compile import IntFormats
from golden.int_forward import IntegerForward
from amaranth import Module
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.forward.embedding_unit import EmbeddingUnit
from hdl.forward.head_unit import HeadUnit, head_for, head_tied

from forward_cases import stream_through, tiny_compiled


@pytest.mark.parametrize("lanes", [1, 3, 4])
def test_tiny_model(tmp_path, lanes):
    """Two tokens' logits of a tiny model (d 16, V 23), from extreme and random activations."""
    compiled = tiny_compiled(tmp_path / "model", n_layer=1, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    forward = IntegerForward(compiled)
    rng = np.random.default_rng(lanes)
    a = rng.integers(-128, 128, (2, 16))
    a[0] = np.resize([-128, 127], 16)
    dut = head_for(compiled, lanes=lanes)
    assert dut.chunk == -(-16 // lanes)
    got = stream_through(dut, {"a": a.reshape(-1)}, "o", 2 * 23, seed=lanes)
    np.testing.assert_array_equal(np.array(got).reshape(2, 23), forward._head_op(a))


def test_default_model(compiled_default):
    """The default model's head (65 x 64 int8, 4 lanes) on golden's ln_f output of a real prompt."""
    forward = IntegerForward(compiled_default)
    ids = np.array([18, 47, 56])
    x = forward._embed(ids[None], 0)[0]
    a = forward._layer_norm("ln_f", x)
    dut = head_for(compiled_default, lanes=4)
    assert dut.cycles == 64 + 65 * 21 + 21 + 6 and dut.shift_range == (16, 18)     # held: 18 + 1 + 1 + 1
    got = stream_through(dut, {"a": a.reshape(-1)}, "o", 3 * 65, gap=0.1)
    np.testing.assert_array_equal(np.array(got).reshape(3, 65), forward._head_op(a))


def test_wrong(tmp_path):
    with pytest.raises(ValueError, match="lanes must be from 1 to 4"):
        HeadUnit(table=np.ones((3, 4)), mult=[1, 1, 1], shift=[0, 0, 0], lanes=5)
    compiled = tiny_compiled(tmp_path / "model", n_layer=1, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    compiled.formats = IntFormats(tables="pot", table_bits=4)
    with pytest.raises(ValueError, match="is 'pot'"):
        head_for(compiled)


class _TiedPair(wiring.Component):
    """A head reading its table from an embedding unit's wte, as the core wires them."""

    def __init__(self, compiled, lanes):
        t = compiled.tensors
        self.embedding = EmbeddingUnit(wte=t["wte.table"], wpe=t["wpe.table"], wte_mult=t["wte.mult"],
                                       wte_shift=t["wte.shift"], wpe_mult=t["wpe.mult"], wpe_shift=t["wpe.shift"],
                                       res_bits=compiled.formats.res_bits, lanes=lanes)
        self.head = head_for(compiled, lanes=lanes, shared_table=True)
        super().__init__({"a": In(stream.Signature(self.head.a.payload.shape())),
                          "o": Out(stream.Signature(self.head.o.payload.shape()))})

    def elaborate(self, platform):
        m = Module()
        m.submodules.embedding, m.submodules.head = self.embedding, self.head
        wiring.connect(m, self.head.table, self.embedding.wte_read)
        wiring.connect(m, wiring.flipped(self.a), self.head.a)
        wiring.connect(m, self.head.o, wiring.flipped(self.o))
        return m


@pytest.mark.parametrize("lanes", [1, 2, 3])
def test_shared_table(compiled_default, lanes):
    """The default model's tied head reading the embedding's wte: the same logits as golden, no table of its own
    (1 lane: the iCEBreaker core's, a row of 64 cycles; 2 lanes, 32; the requantiser's 21 hidden under them)."""
    assert head_tied(compiled_default)
    forward = IntegerForward(compiled_default)
    x = forward._embed(np.array([[18, 47, 56]]), 0)[0]
    a = forward._layer_norm("ln_f", x)
    dut = _TiedPair(compiled_default, lanes)
    assert "head_table" not in [name for name, _, _ in dut.head.memories]
    assert dut.head.cycles == 64 + 65 * max(-(-64 // lanes), 21) + 21 + 6
    got = stream_through(dut, {"a": a.reshape(-1)}, "o", 3 * 65, gap=0.1)
    np.testing.assert_array_equal(np.array(got).reshape(3, 65), forward._head_op(a))


def test_shared_untied(tmp_path):
    """A head with its own table (an untied model's ``head.table``) cannot read the embedding's."""
    compiled = tiny_compiled(tmp_path / "model", n_layer=1, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    compiled.tensors["head.table"] = compiled.tensors["wte.table"].copy()
    compiled.program = [dict(op, table="head.table") if op["op"] == "head" else op for op in compiled.program]
    assert not head_tied(compiled)
    with pytest.raises(ValueError, match="cannot be shared"):
        head_for(compiled, shared_table=True)
