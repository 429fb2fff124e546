# amaranth: UnusedElaboratable=no
"""Simulation before emission: hdl.emit writes only a design Verilator has run bit-exact on the model's text."""

import pytest

import hdl.emit
from hdl.emit import TOP_NAME, main

LAYERS = "h.0.attn.c_proj,h.1.mlp.c_proj"
ARGS = ["--layers", LAYERS, "--rows", "2", "--cols", "4", "--verify-tokens", "3"]


def test_emit_verifies(tiny_checkpoint, tmp_path, capsys, need):
    need("verilator")
    out = tmp_path / "v"
    assert main(["--checkpoint", str(tiny_checkpoint), *ARGS, "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "verified: 2 layers x 3 tokens, 96 accumulators bit-exact in Verilator" in err, err
    assert (out / f"{TOP_NAME}.v").is_file() and (out / "code_store_3.hex").is_file()


def test_emit_refuses_mismatch(tiny_checkpoint, tmp_path, capsys, need, monkeypatch):
    """Code files one step off golden's codes: the simulation sees it, nothing is written, one line says where."""
    need("verilator")
    hex_lines = hdl.emit._hex_lines

    def off_by_one(words, width):
        if width == 4:                         # the code stores' files, not the bias store's
            words = [(int(w) + 1) % 16 for w in words]
        return hex_lines(words, width)

    monkeypatch.setattr(hdl.emit, "_hex_lines", off_by_one)
    out = tmp_path / "v"
    assert main(["--checkpoint", str(tiny_checkpoint), *ARGS, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("error: the emitted design differs from golden: layer h.0.attn.c_proj"), err
    assert "nothing written" in err[-1]
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []


def test_emit_no_verify(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "v"
    assert main(["--checkpoint", str(tiny_checkpoint), *ARGS, "--no-verify", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "verified" not in err and "wrote" in err
    assert (out / "engine.json").is_file()


@pytest.mark.parametrize("args, message", [
    (["--verify-tokens", "0"], "--verify-tokens must be a positive integer, not 0"),
])
def test_emit_verify_wrong(tiny_checkpoint, tmp_path, capsys, args, message):
    assert main(["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "v"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
