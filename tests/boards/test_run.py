"""python -m boards.run: the host driver against the whole board top in Verilator (UART and all), every
layer checked against golden; its refusals; a mismatch or a wrong board makes it fail."""

import importlib.util
import json
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest

from boards import run as board_run
from boards.protocol import Identity, ProtocolError
from golden.paths import DEFAULT_MODEL_DIR, REPO_DIR


def _write_checkpoint(path, **shape):
    spec = importlib.util.spec_from_file_location("potgen_tests_conftest", REPO_DIR / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tiny_checkpoint(path, **shape)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    return _write_checkpoint(tmp_path_factory.mktemp("small"), n_layer=1, n_embd=16, n_head=2)


@pytest.fixture(scope="module")
def default_shaped_checkpoint(tmp_path_factory):
    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        return DEFAULT_MODEL_DIR
    return _write_checkpoint(tmp_path_factory.mktemp("default_shaped"), n_layer=4, n_embd=64, n_head=4,
                             vocab_size=65, n_positions=128, tokens=6000)


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "boards.run", *map(str, args)], cwd=REPO_DIR,
                          capture_output=True, text=True)


def test_sim_small_every_layer(verilator, small_checkpoint, tmp_path):
    """A 1 x 4 array: codes loaded over the UART, every layer, 3 tokens (two RUNs of a 1-row array... three)."""
    result = run_cli("--sim", "--checkpoint", small_checkpoint, "--rows", 1, "--cols", 4, "--tokens", 3,
                     "--sim-dir", tmp_path, "--json", "--quiet")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["ok"] and len(report["layers"]) == 4
    assert all(layer["mismatches"] == 0 and layer["tokens"] == 3 for layer in report["layers"])


def test_sim_default_design_every_layer(verilator, default_shaped_checkpoint, tmp_path):
    """The default build (2 x 16, codes in 4 SPRAMs) in Verilator: all 96 KiB of codes loaded over the
    UART, then every linear layer on real activations, each accumulator equal to golden."""
    result = run_cli("--sim", "--checkpoint", default_shaped_checkpoint, "--tokens", 3, "--sim-dir", tmp_path)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["layer", "K", "N"] and len(lines) == 1 + 16 + 1
    assert "every accumulator matches golden (6912 accumulators, 16 layers)" in lines[-1]


def test_mismatch_fails(small_checkpoint, monkeypatch, capsys):
    """A wrong accumulator is reported with its place and makes the exit status 1."""
    def corrupted(args):
        from golden.model_loading import load_integer_model
        im = load_integer_model(args.checkpoint)
        identity = Identity(rows=1, columns=4, bits=4, act_bits=8, acc_bits=im.acc_bits(), columns_per_word=4,
                            banks=1, bank_words=1, layers=4, max_tokens=1, clock_hz=1, divisor=4,
                            digest=bytes(8))
        _, layers, vectors = board_run.prepare(im, args.checkpoint, identity, args.layers, args.tokens)
        results = {name: np.array(vectors[name].expected[:args.tokens]) for name in vectors}
        first = next(iter(results))
        results[first][1, 2] += 1
        return {"results": results, "timings": {"load_s": 0.0}}, vectors, "sim s"

    monkeypatch.setattr(board_run, "run_sim", corrupted)
    assert board_run.main(["--sim", "--checkpoint", str(small_checkpoint), "--tokens", "2"]) == 1
    out = capsys.readouterr().out
    assert "MISMATCH" in out and "[1,2]" in out


class _StubClient:
    def __init__(self, identity):
        self._identity = identity

    def identify(self):
        return self._identity


def test_wrong_board_refused():
    """A board built for another checkpoint (digest) or shape is refused before anything is loaded."""
    expected = Identity(rows=2, columns=16, bits=4, act_bits=8, acc_bits=23, columns_per_word=4, banks=4,
                        bank_words=12288, layers=16, max_tokens=2, clock_hz=30_000_000, divisor=10,
                        digest=bytes(8))
    job = board_run.make_job(expected, [], [])
    with pytest.raises(ProtocolError, match="not the build for this checkpoint: digest"):
        board_run.exercise(_StubClient(replace(expected, digest=b"\x01" * 8)), job)
    with pytest.raises(ProtocolError, match="columns 8 \\(expected 16\\)"):
        board_run.exercise(_StubClient(replace(expected, columns=8)), job)


@pytest.mark.parametrize("args, message", [
    ((), "say where to run: --port DEV (a board) or --sim"),
    (("--sim", "--port", "/dev/ttyUSB1"), "argument --port: not allowed with argument --sim"),
    (("--sim", "--tokens", "0"), "argument --tokens: must be a positive integer, not 0"),
    (("--sim", "--checkpoint", "/no/such/model"), "No checkpoint at /no/such/model"),
    (("--port", "/dev/no-such-port"), "Cannot open /dev/no-such-port"),
])
def test_bad_arguments(args, message):
    result = run_cli(*args)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and message in errors[0], result.stderr


def test_unknown_layer(verilator, small_checkpoint, tmp_path):
    result = run_cli("--sim", "--checkpoint", small_checkpoint, "--rows", 1, "--cols", 4, "--layers", "h.9.mlp",
                     "--sim-dir", tmp_path, "--quiet")
    assert result.returncode == 2 and "No layer 'h.9.mlp'" in result.stderr and "Traceback" not in result.stderr


def _build_folder(tmp_path, image=b"\x01\x02\x03"):
    (tmp_path / "top.bin").write_bytes(b"bitstream")
    report = {"design": "forward"}
    if image is not None:
        (tmp_path / "constants.bin").write_bytes(image)
        report["flash_image"] = {"file": "constants.bin", "offset": 0x100000, "bytes": len(image)}
    (tmp_path / "report.json").write_text(json.dumps(report))
    return tmp_path


def test_flash_commands_write_the_constant_image_at_its_offset(tmp_path):
    folder = _build_folder(tmp_path)
    assert board_run.flash_commands(folder) == [["iceprog", "-o", "1M", str(folder / "constants.bin")],
                                                ["iceprog", str(folder / "top.bin")]]


def test_flash_commands_of_a_build_without_an_image(tmp_path):
    folder = _build_folder(tmp_path, image=None)
    assert board_run.flash_commands(folder) == [["iceprog", str(folder / "top.bin")]]


def test_flash_refuses_a_missing_image_or_bitstream(tmp_path):
    folder = _build_folder(tmp_path)
    (folder / "constants.bin").write_bytes(b"\x01")
    result = subprocess.run([sys.executable, "-m", "boards.run", "--flash", str(folder)], capture_output=True,
                            text=True, cwd=REPO_DIR)
    assert result.returncode == 2 and "constants.bin of 3 bytes, which is not there" in result.stderr
    assert "Traceback" not in result.stderr
    (folder / "top.bin").unlink()
    with pytest.raises(board_run.UserError, match="no bitstream top.bin"):
        board_run.flash_commands(folder)
