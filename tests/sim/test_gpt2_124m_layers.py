"""GPT-2 124M's widest layers (mlp.c_fc 768 -> 3072, mlp.c_proj 3072 -> 768, exact accumulators for K = 3072)
through golden.vectors and sim.regress on Verilator, bit-exact, and Yosys reading the emitted design with its
hex files. A randomly initialised checkpoint of 124M's configuration cut to one block (slow: minutes)."""

import json
import shutil

import pytest

from golden.vectors import load_vectors
from golden.vectors import main as vectors_main
from hdl.toolchain import run_tool
from sim.regress import main as regress_main
from tiny_checkpoints import GPT2_124M, write_tiny_checkpoint

LAYERS = ["h.0.mlp.c_fc", "h.0.mlp.c_proj"]

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def vectors(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpt2_124m")
    shape = {key: GPT2_124M[key] for key in ("n_embd", "n_head", "vocab_size", "n_positions")}
    checkpoint = write_tiny_checkpoint(root / "model", n_layer=1, tokens=20000, seed=124, **shape)
    assert vectors_main(["--checkpoint", str(checkpoint), "--layers", *LAYERS, "--tokens", "2",
                         "--out", str(root / "vectors")]) == 0
    return load_vectors(root / "vectors")


def test_vectors_shapes(vectors):
    assert [(layer.k, layer.n) for layer in vectors.layers.values()] == [(768, 3072), (3072, 768)]
    assert vectors.acc_bits == vectors.exact_acc_bits


def test_regress_and_yosys(vectors, tmp_path, need):
    """Both layers in one engine on a 4 x 16 array, bit-exact; then Yosys elaborates that engine's Verilog,
    reading its 16 code files (294,912 words each) and its bias file."""
    need("verilator")
    report = tmp_path / "regress.json"
    assert regress_main(["--vectors", str(vectors.directory), "--quiet", "--json", str(report)]) == 0
    result = json.loads(report.read_text())
    assert [r["layer"] for r in result["results"]] == LAYERS and all(r["ok"] for r in result["results"])
    shutil.copytree(result["summary"]["verilator"]["build_dir"] + "/rtl", tmp_path / "rtl")   # YoWASP sees cwd only
    (tmp_path / "read.ys").write_text("read_verilog rtl/potgen_engine.v\nhierarchy -check -top potgen_engine\n")
    run_tool("YOSYS", ["-q", "-l", "read.log", "-s", "read.ys"], cwd=tmp_path)
