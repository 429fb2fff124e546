# amaranth: UnusedElaboratable=no
"""The split-K decode linear layer against golden: requantize(a @ W + bias) per token, several array shapes."""

import numpy as np
import pytest

from golden.int_forward import IntegerForward
from golden.int_ops import requantize
from golden.pot_format import PotFormat
from hdl.forward.decode_linear import DecodeLinear, code_words

from forward_cases import stream_through
from hdl_cases import activations, codes as random_codes


def golden_linear(a, codes, bias, mult, shift, bits, out_bits):
    w = PotFormat(bits).to_int(codes).astype(np.int64)
    return requantize(np.asarray(a, np.int64) @ w + bias, mult, shift, out_bits)


def test_code_words():
    codes = np.arange(5 * 3).reshape(5, 3)
    words = code_words(codes, rows=2, columns=2, zero_code=99)          # chunk 3, 2 tiles
    assert words.shape == (6, 4)
    # tile 0, t 0: rows 0 and 1 take K indices 0 and 3, columns 0 and 1
    assert words[0].tolist() == [0, 1, 9, 10]
    # tile 0, t 2: row 1 is past K (index 5)
    assert words[2].tolist() == [6, 7, 99, 99]
    # tile 1, t 0: column 1 is past N
    assert words[3].tolist() == [2, 99, 11, 99]


@pytest.mark.parametrize("rows, columns, k, n", [(1, 4, 7, 9), (3, 2, 10, 5), (4, 3, 16, 7)])
def test_random_layers(rows, columns, k, n):
    """Random codes (zero codes, largest shifts) and activations (the most negative), two tokens, back-pressure."""
    rng = np.random.default_rng(rows * 100 + columns)
    bits, act_bits = 4, 8
    codes = random_codes(rng, bits, (k, n))
    bias = rng.integers(-2000, 2000, n)
    mult, shift = rng.integers(1 << 15, 1 << 16, n), rng.integers(8, 14, n)
    tokens = activations(rng, act_bits, (2, k))
    dut = DecodeLinear(codes=codes, bias=bias, mult=mult, shift=shift, bits=bits, act_bits=act_bits, out_bits=8,
                       rows=rows, columns=columns)
    got = stream_through(dut, {"a": tokens.reshape(-1)}, "o", 2 * n, seed=k)
    want = golden_linear(tokens, codes, bias, mult, shift, bits, 8)
    np.testing.assert_array_equal(np.array(got).reshape(2, n), want)


def test_default_model_layer(compiled_default):
    """h.0.attn.c_attn of the default model (64 x 192) on a 4 x 3 array, for a real ln_1 output."""
    t, f = compiled_default.tensors, compiled_default.formats
    name = "h.0.attn.c_attn"
    forward = IntegerForward(compiled_default)
    x = forward._embed(np.array([[5, 17]]), 0)[0]
    a = forward._layer_norm("h.0.ln_1", x)
    dut = DecodeLinear(codes=t[name + ".codes"], bias=t[name + ".bias"], mult=t[name + ".mult"],
                       shift=t[name + ".shift"], bits=compiled_default.bits, act_bits=f.act_bits,
                       out_bits=f.act_bits, rows=4, columns=3, mult_bits=f.mult_bits)
    assert (dut.chunk, dut.tiles, dut.beats) == (16, 64, 64 * 17)
    assert dut.utilisation == pytest.approx(16 / 17)
    got = stream_through(dut, {"a": a.reshape(-1)}, "o", a.size // 64 * 192, gap=0.1)
    np.testing.assert_array_equal(np.array(got).reshape(2, 192), forward._linear_op(name, a, "act"))
