"""GPT-2 124M's exact shapes (vocabulary 50,257, n_embd 768, 12 heads, 1,024 positions), randomly initialised as
GPT-2 is and saved with nothing beside it, as a downloaded checkpoint: eval, export and the iCEBreaker's refusal.

The default tests cut the depth to one layer (eval and the refusal); the export and the 12-layer runs are marked
slow (the 12 layers' speed is benchmarks/bench_gpt2_124m.py's)."""

import json

import numpy as np
import pytest

from tiny_checkpoints import GPT2_124M, write_gpt2_124m_shape_checkpoint

torch = pytest.importorskip("torch", reason="needs torch: pip install 'potgen[torch]'")
transformers = pytest.importorskip("transformers", reason="needs transformers: pip install 'potgen[torch]'")


@pytest.fixture(scope="module")
def gpt2_1_layer(tmp_path_factory):
    return write_gpt2_124m_shape_checkpoint(tmp_path_factory.mktemp("gpt2") / "model", n_layer=1)


@pytest.fixture(scope="module")
def tokens(tmp_path_factory):
    """Random GPT-2 token ids as a uint16 .bin (the model is random, so any ids are its text)."""
    folder = tmp_path_factory.mktemp("tokens")
    ids = np.random.default_rng(0).integers(0, GPT2_124M["vocab_size"], 4096).astype(np.uint16)
    ids[:3000].tofile(folder / "calib.bin")
    ids[3000:].tofile(folder / "val.bin")
    return folder


def transformers_ce(checkpoint, ids, block, count):
    """transformers' mean CE over `count` windows of `block` inputs cut from the start of `ids`, as golden.eval cuts."""
    model = transformers.GPT2LMHeadModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    flat = torch.from_numpy(ids[:count * block + 1].astype(np.int64))
    inputs, targets = flat[:-1].reshape(count, block), flat[1:].reshape(count, block)
    with torch.no_grad():
        logits = model(inputs).logits
    return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1)))


def check_eval(cli, checkpoint, tokens, tmp_path, block, windows):
    from golden.eval import main
    status, _, err = cli(main, [
        "--checkpoint", str(checkpoint), "--data", str(tokens / "val.bin"), "--calib", str(tokens / "calib.bin"),
        "--calib-tokens", "1024", "--bits", "4", "--methods", "pot-channel", "--act-bits", "0", "--block",
        str(block), "--max-tokens", str(block * windows), "--json", str(tmp_path / "eval.json"), "--quiet"])
    assert status == 0, err
    result = json.loads((tmp_path / "eval.json").read_text())
    expected = transformers_ce(checkpoint, np.fromfile(tokens / "val.bin", np.uint16), block, windows)
    assert result["tokens"] == block * windows
    assert result["float"]["ce"] == pytest.approx(expected, abs=0.01)
    assert abs(expected - np.log(GPT2_124M["vocab_size"])) < 0.5                # GPT-2's init: about uniform
    assert result["calibration"]["origin"] == "--calib"
    return result


def test_eval_float_ce_is_transformers(gpt2_1_layer, tokens, tmp_path, cli):
    check_eval(cli, gpt2_1_layer, tokens, tmp_path, block=128, windows=2)


@pytest.mark.slow
def test_export_writes_every_layer_and_reports_bytes(gpt2_1_layer, tokens, tmp_path, cli):
    from golden.export import main
    status, out, err = cli(main, ["--checkpoint", gpt2_1_layer, "--calib", tokens / "calib.bin", "--calib-tokens",
                                  "1024", "--out", tmp_path / "roms", "--quiet"])
    assert status == 0, err
    manifest = json.loads((tmp_path / "roms" / "manifest.json").read_text())
    shapes = {layer["name"]: (layer["k"], layer["n"]) for layer in manifest["layers"]}
    assert shapes == {"h.0.attn.c_attn": (768, 2304), "h.0.attn.c_proj": (768, 768), "h.0.mlp.c_fc": (768, 3072),
                      "h.0.mlp.c_proj": (3072, 768)}
    weights = 768 * (2304 + 768 + 3072 + 3072)
    assert sum(layer["bytes"] for layer in manifest["layers"]) == weights // 2              # 4 bits a weight
    assert (f"4 layers, {weights:,} weights: {weights // 2:,} bytes at 4 bits against {4 * weights:,} in fp32 (8.0x) "
            f"and {weights:,} in int8 (2.0x)") in out


def test_icebreaker_refuses_before_quantizing(gpt2_1_layer, tmp_path, cli):
    """One line with the code bytes against the UP5K's 128 KiB of SPRAM, before any quantization or tool runs
    (no calibration text is given: the refusal comes first)."""
    from hdl.build import main
    status, out, err = cli(main, ["--board", "icebreaker", "--design", "linear", "--checkpoint", gpt2_1_layer,
                                  "--out", tmp_path / "build"])
    weights = 768 * (2304 + 768 + 3072 + 3072)
    assert status == 2 and err.count("\n") == 1 and out == ""
    assert f"won't fit the iCE40UP5K: {weights / 2 / 1024:.1f} KiB of codes" in err          # 3,600 KiB
    assert "SPRAMs of 4 (128 KiB); use fewer --bits or a smaller model" in err
    assert not (tmp_path / "build").exists()


@pytest.mark.slow
def test_12_layers_eval_and_export(tmp_path, tokens, cli):
    """The whole 124M: float CE of one 1,024-token window equals transformers'; the export holds all 48 layers."""
    from golden.export import main
    checkpoint = write_gpt2_124m_shape_checkpoint(tmp_path / "model")
    check_eval(cli, checkpoint, tokens, tmp_path, block=1024, windows=1)
    status, out, err = cli(main, ["--checkpoint", checkpoint, "--calib", tokens / "calib.bin", "--calib-tokens",
                                  "2048", "--out", tmp_path / "roms", "--quiet"])
    assert status == 0, err
    manifest = json.loads((tmp_path / "roms" / "manifest.json").read_text())
    assert len(manifest["layers"]) == 48
    weights = 12 * 768 * (2304 + 768 + 3072 + 3072)
    assert f"48 layers, {weights:,} weights: {weights // 2:,} bytes at 4 bits" in out
