"""Golden test vectors: what they hold, how they are refused when touched, and the command line."""

import json

import numpy as np
import pytest

from golden.cli import run
from golden.datapath import pot_accumulate
from golden.model_loading import load_integer_model
from golden.vectors import VectorsError, build_vectors, load_vectors, main

from test_datapath import reference_term, reference_wrap


def reference_accumulators(x, codes, bias, bits, acc_bits):
    """Plain Python ints from DESIGN.md's definition: wrap(bias_n + sum_k t_k), t from `reference_term`."""
    return [[reference_wrap(int(bias[n]) + sum(reference_term(int(x[t, k]), int(codes[k, n]), bits)
                                               for k in range(codes.shape[0])), acc_bits)
             for n in range(codes.shape[1])] for t in range(x.shape[0])]


@pytest.fixture(scope="module")
def vectors_dir(tiny_checkpoint, tmp_path_factory):
    return build_vectors(tiny_checkpoint, tokens=16, out=tmp_path_factory.mktemp("vectors") / "v")


def cli(argv, capsys):
    """Run the CLI as `python -m golden.vectors` would: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        run(main, "python -m golden.vectors", argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_layers_match_the_integer_model(tiny_checkpoint, vectors_dir):
    vectors = load_vectors(vectors_dir)
    im = load_integer_model(tiny_checkpoint)
    assert list(vectors.layers) == im.model.linear_names
    val = np.fromfile(tiny_checkpoint / "val.bin", np.uint16)[:16].astype(np.int64)
    captured = im.capture(val)
    for name, layer in vectors.layers.items():
        reference = im.layers[name]
        assert layer.x.shape == (16, reference.k) and layer.expected.shape == (16, reference.n)
        np.testing.assert_array_equal(layer.x, captured[name].reshape(16, -1))
        np.testing.assert_array_equal(layer.codes, reference.codes)
        np.testing.assert_array_equal(layer.bias, reference.bias)
        assert layer.expected.tolist() == reference_accumulators(layer.x, layer.codes, layer.bias, 4, vectors.acc_bits)
        np.testing.assert_array_equal(layer.scales, reference.weights.scales)
        assert layer.act_scale == reference.act_scale
        assert np.abs(layer.x).max() > 0 and layer.macs == 16 * reference.k * reference.n
    assert vectors.acc_bits == vectors.exact_acc_bits == im.acc_bits()


def test_manifest(tiny_checkpoint, vectors_dir):
    manifest = json.loads((vectors_dir / "manifest.json").read_text())
    from golden.checkpoint import sha256_of_checkpoint
    assert manifest["checkpoint"] == {"path": str(tiny_checkpoint), "sha256": sha256_of_checkpoint(tiny_checkpoint)}
    assert (manifest["pe"], manifest["bits"], manifest["act_bits"], manifest["method"]) == (
        "pot", 4, 8, "pot-channel")
    entry = manifest["layers"][0]
    assert entry["file"] == "h.0.attn.c_attn.npz" and (entry["tokens"], entry["k"], entry["n"]) == (16, 16, 48)
    assert len(entry["sha256"]) == 64


def test_wide_accumulators_are_exact_python_ints(tiny_checkpoint, tmp_path):
    """8-bit codes shift by up to 126 places: stored as decimal strings, loaded as Python ints, never pickled."""
    out = build_vectors(tiny_checkpoint, tokens=4, bits=8, layers=["h.1.mlp.c_proj"], out=tmp_path / "v8")
    vectors = load_vectors(out)
    layer = vectors.layers["h.1.mlp.c_proj"]
    assert layer.expected.dtype == object and max(abs(int(v)) for v in layer.expected.flat) > 1 << 100
    with np.load(out / "h.1.mlp.c_proj.npz", allow_pickle=False) as data:
        assert data["expected"].dtype.kind == "U"
    assert [[int(v) for v in row] for row in layer.expected] == reference_accumulators(
        layer.x, layer.codes, layer.bias, 8, vectors.acc_bits)


def test_narrow_accumulator_wraps(tiny_checkpoint, tmp_path):
    out = build_vectors(tiny_checkpoint, tokens=8, acc_bits=10, layers=["h.0.mlp.c_fc"], out=tmp_path / "w")
    vectors = load_vectors(out)
    layer = vectors.layers["h.0.mlp.c_fc"]
    exact = pot_accumulate(layer.x, layer.codes, layer.bias, 4, 8)
    assert vectors.acc_bits == 10 and vectors.exact_acc_bits > 10
    assert not np.array_equal(exact, layer.expected)                 # something did wrap
    assert layer.expected.tolist() == reference_accumulators(layer.x, layer.codes, layer.bias, 4, 10)
    assert layer.expected.min() >= -512 and layer.expected.max() <= 511


def test_int8(tiny_checkpoint, tmp_path):
    vectors = load_vectors(build_vectors(tiny_checkpoint, tokens=4, pe="int8", out=tmp_path / "i8"))
    assert (vectors.pe, vectors.bits, vectors.method) == ("int8", None, None)
    layer = vectors.layers["h.0.attn.c_proj"]
    assert layer.codes.dtype == np.int8
    np.testing.assert_array_equal(layer.expected, layer.x @ layer.codes.astype(np.int64) + layer.bias)


def test_tokens_beyond_the_context_take_several_windows(tiny_checkpoint, tmp_path):
    vectors = load_vectors(build_vectors(tiny_checkpoint, tokens=64, layers=["h.0.attn.c_proj"], out=tmp_path / "v"))
    assert vectors.layers["h.0.attn.c_proj"].x.shape == (64, 16)


def test_text_input(tiny_checkpoint, tmp_path):
    text = tmp_path / "prompt.txt"
    text.write_text("abcdefghijklmnopqrstuvw" * 2)
    vectors = load_vectors(build_vectors(tiny_checkpoint, text=text, tokens=20, out=tmp_path / "v"))
    assert vectors.manifest["text"]["text"] == str(text) and vectors.tokens == 20


def test_edited_file_is_refused(vectors_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(vectors_dir, copy)
    file = copy / "h.1.mlp.c_fc.npz"
    with np.load(file) as data:
        arrays = dict(data)
    arrays["expected"][3, 5] += 1
    np.savez(file, **arrays)
    with pytest.raises(VectorsError, match=r"h\.1\.mlp\.c_fc\.npz: SHA-256 .* does not match"):
        load_vectors(copy)


def test_edited_manifest_is_refused(vectors_dir, tmp_path):
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(vectors_dir, copy)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["acc_bits"] = 12
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VectorsError, match="manifest was edited"):
        load_vectors(copy)


def test_vectors_that_disagree_with_golden_are_refused(vectors_dir, tmp_path):
    """Even with every hash made consistent again, wrong expected values do not pass."""
    import hashlib
    import shutil
    from golden.vectors import _manifest_digest
    copy = tmp_path / "copy"
    shutil.copytree(vectors_dir, copy)
    file = copy / "h.0.attn.c_proj.npz"
    with np.load(file) as data:
        arrays = dict(data)
    arrays["expected"][0, 0] ^= 1
    np.savez(file, **arrays)
    manifest = json.loads((copy / "manifest.json").read_text())
    manifest["layers"][1]["sha256"] = hashlib.sha256(file.read_bytes()).hexdigest()
    manifest["manifest_sha256"] = _manifest_digest(manifest)
    (copy / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(VectorsError, match="h.0.attn.c_proj.npz: expected accumulators disagree with the golden"):
        load_vectors(copy)


def test_missing_folder_and_file(vectors_dir, tmp_path):
    with pytest.raises(VectorsError, match="no manifest.json"):
        load_vectors(tmp_path)
    import shutil
    copy = tmp_path / "copy"
    shutil.copytree(vectors_dir, copy)
    (copy / "h.0.mlp.c_fc.npz").unlink()
    with pytest.raises(VectorsError, match=r"h\.0\.mlp\.c_fc\.npz: missing"):
        load_vectors(copy)


def test_cli(tiny_checkpoint, tmp_path, capsys):
    status, out, err = cli(["--checkpoint", str(tiny_checkpoint), "--layers", "h.1.attn.c_proj", "--tokens", "8",
                            "--out", str(tmp_path / "v")], capsys)
    assert status == 0
    assert "h.1.attn.c_proj" in out and "acc_bits" in err
    assert list(load_vectors(tmp_path / "v").layers) == ["h.1.attn.c_proj"]


@pytest.mark.parametrize("argv, message", [
    (["--layers", "h.9.mlp.c_fc"], "No linear layer 'h.9.mlp.c_fc'"),
    (["--tokens", "48"], "--tokens 48 must be at most the model's context 32 or a multiple of it"),
    (["--tokens", "0"], "--tokens must be an integer of at least 1, not 0"),
    (["--bits", "9"], "Weight bits must be from 3 to 8, not 9"),
    (["--method", "nope"], "Unknown quantization method 'nope'"),
    (["--acc-bits", "1"], "Accumulator bits must be an integer of at least 2, not 1"),
    (["--start", "399", "--tokens", "8"], "The text has 1 tokens from --start 399, fewer than --tokens 8"),
])
def test_cli_errors_are_one_line(tiny_checkpoint, tmp_path, capsys, argv, message):
    status, out, err = cli(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "v"), *argv], capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "v").exists()


def test_out_folder_is_replaced_whole_but_never_a_foreign_one(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "v"
    build_vectors(tiny_checkpoint, tokens=4, out=out)
    (out / "stale.npz").write_bytes(b"old")
    build_vectors(tiny_checkpoint, tokens=4, layers=["h.0.mlp.c_fc"], out=out)
    assert sorted(p.name for p in out.iterdir()) == ["h.0.mlp.c_fc.npz", "manifest.json"]
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    status, _, err = cli(["--checkpoint", str(tiny_checkpoint), "--out", str(foreign)], capsys)
    assert status == 2 and "non-empty folder without manifest.json" in err
    assert (foreign / "notes.txt").read_text() == "keep me"
