# amaranth: UnusedElaboratable=no
"""The residual update (c_proj + add) of the default model against golden's program step."""

import numpy as np
import pytest

from golden.int_forward import IntegerForward
from golden.int_ops import gelu_lookup, saturate
from hdl.forward.linear_residual import LinearResidual

from forward_cases import stream_through


def test_mlp_residual(compiled_default):
    """Layer 1's mlp.c_proj on golden's own GELU outputs of real embeddings, added to the residual."""
    f, t = compiled_default.formats, compiled_default.tensors
    forward = IntegerForward(compiled_default)
    x = forward._embed(np.array([[3, 44]]), 5)[0]
    u = forward._linear_op("h.1.mlp.c_fc", forward._layer_norm("h.1.ln_2", x), "act")
    a = gelu_lookup(u, t["h.1.mlp.gelu"], f.act_bits)
    dut = LinearResidual(compiled=compiled_default, linear="h.1.mlp.c_proj")
    assert dut.d == 64
    got = stream_through(dut, {"a": a.reshape(-1), "x": x.reshape(-1)}, "o", x.size)
    want = saturate(x + forward._linear_op("h.1.mlp.c_proj", a, "residual"), f.res_bits)
    np.testing.assert_array_equal(np.array(got).reshape(x.shape), want)


def test_saturates(compiled_default):
    """A residual at the format's extremes: the sum saturates both ways, as golden's does."""
    f = compiled_default.formats
    forward = IntegerForward(compiled_default)
    rng = np.random.default_rng(6)
    a = rng.integers(-128, 128, (1, 64))
    x = np.resize([-(1 << (f.res_bits - 1)), (1 << (f.res_bits - 1)) - 1], (1, 64))
    dut = LinearResidual(compiled=compiled_default, linear="h.0.attn.c_proj", rows=2, columns=4)
    got = stream_through(dut, {"a": a.reshape(-1), "x": x.reshape(-1)}, "o", 64, seed=3)
    want = saturate(x + forward._linear_op("h.0.attn.c_proj", a, "residual"), f.res_bits)
    np.testing.assert_array_equal(np.array(got).reshape(x.shape), want)
    assert len(np.unique(want)) > 2


def test_wrong(compiled_default):
    with pytest.raises(ValueError, match="not a linear layer to the residual"):
        LinearResidual(compiled=compiled_default, linear="h.0.attn.c_attn")
