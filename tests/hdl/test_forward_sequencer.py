# amaranth: UnusedElaboratable=no
"""Stage 1 of the sequencer: ln_1 then c_attn of the default model's artefact, bit for bit against golden."""

import numpy as np
import pytest

from golden.int_forward import IntegerForward
from hdl.forward.decode_plan import plan, spram_context
from hdl.forward.sequencer import LayerNormLinear

from forward_cases import stream_through


@pytest.mark.parametrize("layer, norm, linear", [(0, "ln_1", "attn.c_attn"),
                                                 pytest.param(3, "ln_2", "mlp.c_fc", marks=pytest.mark.slow)])
def test_layer_norm_linear(compiled_default, layer, norm, linear):
    """Three tokens' residual rows (real embeddings) through the unit, against golden's two program steps."""
    h = f"h.{layer}."
    forward = IntegerForward(compiled_default)
    x = forward._embed(np.array([[0, 23, 64]]), 7)[0]
    dut = LayerNormLinear(compiled=compiled_default, norm=h + norm, linear=h + linear, rows=4, columns=3)
    got = stream_through(dut, {"x": x.reshape(-1)}, "o", 3 * dut.n, gap=0.1)
    want = forward._linear_op(h + linear, forward._layer_norm(h + norm, x), "act")
    np.testing.assert_array_equal(np.array(got).reshape(3, dut.n), want)


def test_wrong(compiled_default):
    with pytest.raises(ValueError, match="not a linear layer to activations"):
        LayerNormLinear(compiled=compiled_default, norm="h.0.ln_1", linear="h.0.attn.c_proj")
    with pytest.raises(ValueError, match="not a layer norm"):
        LayerNormLinear(compiled=compiled_default, norm="h.0.ln_3", linear="h.0.attn.c_attn")


def test_decode_plan(compiled_default):
    """The default model: codes fill 3 SPRAMs, 64 KV positions; split-K on 4 x 3 keeps the PEs 94 % busy."""
    assert spram_context(compiled_default) == (3, 64)
    today = plan(compiled_default, rows=2, columns=16, mapping="output-stationary")
    split = plan(compiled_default, rows=4, columns=3, code_bits_per_cycle=48)
    # 4 layers of 64x192, 64x64, 64x256, 256x64; the int8 head is not on the array.
    assert today["macs"] == split["macs"] == 4 * 64 * (192 + 64 + 256 + 256)
    assert today["utilisation"] == pytest.approx(today["macs"] / (32 * today["beats"])) and today["utilisation"] < 0.5
    assert split["beats"] == 4 * (64 * 17 + 22 * 17 + 86 * 17 + 22 * 65)
    assert split["bound_beats"] == split["beats"] and split["utilisation"] > 0.94
    assert plan(compiled_default, rows=2, columns=16, code_bits_per_cycle=48)["bound_utilisation"] == 0.375


def test_decode_plan_cli_bad_shape(capsys):
    from hdl.forward.decode_plan import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--shapes", "4x3,2x0"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("python -m hdl.forward.decode_plan: error: argument --shapes: "
                                               "array shape '2x0' is not RxC or os:RxC with positive R and C")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "example: python -m hdl.forward.decode_plan" in capsys.readouterr().out
