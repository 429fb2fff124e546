"""The whole integer forward: compilation, the KV-cache decode, quality, the artefact on disk."""

import json

import numpy as np
import pytest

from golden.artefact import read_compiled, write_compiled
from golden.checkpoint import load_checkpoint
from golden.compile import (CompileError, IntFormats, compile_checkpoint, compile_model, multiplier,
                            parse_int_formats, program_of)
from golden.eval import cross_entropy, integer_formats, windows
from golden.export import main as export_main
from golden.gpt2 import GPT2
from golden.int_forward import IntegerForward
from golden.model_loading import calibration_windows, load_integer_model, split_tokens
from golden.paths import DEFAULT_MODEL_DIR, HARDWARE_MODEL_DIR


@pytest.fixture(scope="module")
def tiny_compiled(tiny_checkpoint):
    return compile_checkpoint(tiny_checkpoint, bits=4)


def test_artefact_is_integers_and_program(tiny_compiled):
    assert all(np.asarray(t).dtype.kind in "iu" for t in tiny_compiled.tensors.values())
    assert tiny_compiled.program == program_of(tiny_compiled.config)
    ops = [op["op"] for op in tiny_compiled.program]
    assert ops[0] == "embed" and ops[-2:] == ["layer_norm", "head"] and ops.count("attention") == 2
    assert tiny_compiled.tensors["h.0.mlp.gelu"].shape == (256,)
    assert tiny_compiled.tensors["exp2.lut"].shape == (256,)


@pytest.mark.parametrize("tables", ["int", "pot", "pot-head"])
def test_decode_with_kv_cache_equals_the_whole_window(tiny_checkpoint, tables):
    """Token-by-token decode against the KV cache gives the window's logits bit for bit."""
    compiled = compile_checkpoint(tiny_checkpoint, bits=4, formats=integer_formats(8, tables, 4))
    head = compiled.program[-1]["table"]
    assert head == ("head.table" if tables == "pot-head" else "wte.table") and head in compiled.tensors
    forward = IntegerForward(compiled)
    ids = np.random.default_rng(0).integers(0, compiled.config.vocab_size, compiled.config.n_positions)
    whole = forward.forward(ids)
    assert whole.dtype == np.int64 and whole.shape == (len(ids), compiled.config.vocab_size)
    cache = forward.new_cache()
    steps = [forward.forward(ids[:5], cache)] + [forward.forward(ids[i:i + 1], cache) for i in range(5, len(ids))]
    assert np.array_equal(np.concatenate(steps), whole)
    assert cache.keys.dtype == np.int8 and np.abs(whole).max() < 1 << 15
    with pytest.raises(ValueError, match="exceed n_positions"):
        forward.forward(ids[:1], cache)


def test_batch_rows_are_independent(tiny_compiled):
    forward = IntegerForward(tiny_compiled)
    ids = np.random.default_rng(1).integers(0, tiny_compiled.config.vocab_size, (3, 12))
    batch = forward.forward(ids)
    for row in range(3):
        assert np.array_equal(batch[row], forward.forward(ids[row]))


def test_generate_is_seeded(tiny_compiled):
    forward = IntegerForward(tiny_compiled)
    run = lambda seed: list(forward.generate([1, 2, 3], 20, inv_temperature=256, seed=seed))  # noqa: E731
    assert run(5) == run(5) and run(5) != run(6)
    greedy = list(forward.generate([1, 2, 3], 20))
    assert greedy == list(forward.generate([1, 2, 3], 20, seed=9))             # greedy ignores the seed
    assert len(list(forward.generate([1, 2, 3], 100))) == tiny_compiled.config.n_positions - 3


def test_shipped_qat4_integer_forward_is_close_to_the_linear_only_datapath():
    """On 2 windows of real val text the whole integer forward scores within 0.03 nats of the linear-only one."""
    integer = load_integer_model(HARDWARE_MODEL_DIR, calib_tokens=2048)
    model = integer.model
    calib = calibration_windows(model, HARDWARE_MODEL_DIR, calib_tokens=2048)
    compiled = compile_model(model, calib_tokens=calib, bits=4,
                             weights={name: layer.weights for name, layer in integer.layers.items()})
    inputs, targets = windows(split_tokens(HARDWARE_MODEL_DIR, "val", model.config.vocab_size), 128, 256)
    linear_ce = cross_entropy(integer.loss, inputs, targets)
    integer_ce = cross_entropy(IntegerForward(compiled).loss, inputs, targets)
    assert abs(integer_ce - linear_ce) < 0.03 and integer_ce < 2.0


def test_artefact_round_trip_and_corruption(tiny_checkpoint, tiny_compiled, tmp_path):
    out = tmp_path / "compiled"
    manifest = write_compiled(tiny_compiled, out, checkpoint=tiny_checkpoint)
    assert manifest["program"] == tiny_compiled.program
    _, back = read_compiled(out)
    assert back.tensors.keys() == tiny_compiled.tensors.keys()
    for name, value in tiny_compiled.tensors.items():
        assert np.array_equal(back.tensors[name], value) and back.tensors[name].dtype == np.asarray(value).dtype
    ids = np.arange(10) % tiny_compiled.config.vocab_size
    assert np.array_equal(IntegerForward(back).forward(ids), IntegerForward(tiny_compiled).forward(ids))
    image = bytearray((out / "compiled.bin").read_bytes())
    image[100] ^= 1
    (out / "compiled.bin").write_bytes(bytes(image))
    with pytest.raises(ValueError, match="does not match its sha256"):
        read_compiled(out)


def test_export_cli_compiled_and_verify(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "c"
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--compiled", "--out", str(out), "--quiet"]) == 0
    assert export_main(["--verify", str(out)]) == 0
    assert "every hash matches" in capsys.readouterr().out
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "compiled-forward" and manifest["formats"]["act_bits"] == 8


def test_overflow_refused_naming_the_layer(tiny_checkpoint):
    model = load_checkpoint(tiny_checkpoint)
    calib = calibration_windows(model, tiny_checkpoint, calib_tokens=256)
    params = dict(model.params)
    params["h.1.mlp.c_fc.bias"] = params["h.1.mlp.c_fc.bias"] + np.float32(1e12)
    with pytest.raises(CompileError, match=r"h\.1\.mlp\.c_fc: the \d+-bit accumulator"):
        compile_model(GPT2(model.config, params), calib_tokens=calib)
    with pytest.raises(CompileError, match=r"wte: rescale ratio .* needs a multiplier of more than 3 bits"):
        compile_model(model, calib_tokens=calib, formats=IntFormats(mult_bits=3))


def test_multiplier():
    mult, shift = multiplier(np.array([1.0, 0.3, 1e-30, 0.0, 32767.0]), 16, "x")
    assert mult.tolist()[:2] == [1 << 15, round(0.3 * 2 ** 17)] and shift.tolist()[:2] == [15, 17]
    assert shift[2] == 62 and mult[3] == 0 and (mult[4], shift[4]) == (32767 * 2, 1)
    assert multiplier(np.array([65535.0]), 16, "y") == (65535, 0)
    with pytest.raises(CompileError, match="y: rescale ratio 65535.7 needs a multiplier of more than 16 bits"):
        multiplier(np.array([65535.7]), 16, "y")


@pytest.mark.parametrize("field, value, message", [
    ("act_bits", 1, "Activation bits must be from 2 to 16, not 1"),
    ("res_bits", 40, "res_bits must be an integer from 4 to 24, not 40"),
    ("tables", "fp8", "tables must be one of 'int', 'pot', not 'fp8'"),
    ("ln_frac_bits", 16, "ln_frac_bits must be at most ln_inv_bits - 1 = 15, not 16"),
])
def test_formats_wrong(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        IntFormats(**{field: value})


@pytest.mark.slow
def test_default_model_integer_forward_full_val():
    """The shipped float model and its compiled integer forward on the whole val split (minutes)."""
    compiled = compile_checkpoint(DEFAULT_MODEL_DIR, bits=4)
    model = load_checkpoint(DEFAULT_MODEL_DIR)
    inputs, targets = windows(split_tokens(DEFAULT_MODEL_DIR, "val", model.config.vocab_size), 128)
    assert cross_entropy(IntegerForward(compiled).loss, inputs, targets) < cross_entropy(model.loss, inputs,
                                                                                          targets) + 0.3


@pytest.mark.parametrize("items, message", [
    (["exp_bits=x"], "exp_bits takes an integer"),
    (["nope=3"], "give NAME=VALUE with NAME one of act_bits"),
    (["exp_frac_bits=0"], "exp_frac_bits must be an integer from 1 to 12, not 0"),
])
def test_int_format_overrides_wrong(items, message):
    with pytest.raises(ValueError, match=message):
        parse_int_formats(items)


def test_narrower_exp_table_is_a_parameter(tiny_checkpoint, tmp_path):
    out = tmp_path / "c"
    assert export_main(["--checkpoint", str(tiny_checkpoint), "--compiled", "--out", str(out), "--quiet",
                        "--int-format", "exp_frac_bits=6", "head=pot", "head_bits=4"]) == 0
    _, compiled = read_compiled(out)
    assert compiled.tensors["exp2.lut"].shape == (64,) and compiled.formats.head == "pot"
    assert IntegerForward(compiled).forward(np.arange(5)).shape == (5, compiled.config.vocab_size)
