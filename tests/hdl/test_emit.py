# amaranth: UnusedElaboratable=no

import json

import numpy as np
import pytest

from golden.checkpoint import load_checkpoint
from golden.datapath import pot_real_unit, quantize_bias
from golden.quantize import quantize, quantize_int8
from golden.model_loading import calibration_windows
from hdl.emit import TOP_NAME, build_layout, calibration_tokens, main, real_activations
from hdl.engine import Engine
from hdl.toolchain import ToolError, run_tool, tool_command

from hdl_cases import tiny_checkpoint
from test_engine import check, layer_bias, layer_codes


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture(scope="module")
def model(checkpoint):
    return load_checkpoint(checkpoint)


def test_build_layout(model):
    names = ["h.0.attn.c_proj", "h.0.mlp.c_fc"]
    layout, scales = build_layout(model, 4, "pot-channel", 3, names, 8)
    assert [p.name for p in layout.layers] == names and layout.columns == 3 and layout.bits == 4
    for index, name in enumerate(names):
        q = quantize(model.weight(name), bits=4, method="pot-channel")
        assert (layer_codes(layout, index) == q.codes).all()
        assert (scales[name].weight_scales == q.scales).all() and scales[name].act_scale > 0
        unit = pot_real_unit(q.scales, scales[name].act_scale, 4)
        assert (layer_bias(layout, index) == quantize_bias(model.bias(name), unit)).all()
        assert np.allclose(scales[name].unit, unit)


def test_build_layout_int8(model):
    layout, scales = build_layout(model, None, None, 4, ["h.0.mlp.c_proj"], 8)
    q = quantize_int8(model.weight("h.0.mlp.c_proj"))
    assert layout.bits is None and (layer_codes(layout, 0) == q.weights).all()


def test_real_activations(model):
    tokens = calibration_tokens(model)
    layout, scales = build_layout(model, 4, "pot-channel", 4, ["h.0.mlp.c_fc"], 6, tokens=tokens)
    x = real_activations(model, "h.0.mlp.c_fc", scales["h.0.mlp.c_fc"].act_scale, 6, tokens[:5])
    assert x.shape == (5, 8) and x.dtype == np.int64 and np.abs(x).max() <= 31


@pytest.mark.parametrize("bits, name", [(5, "h.0.attn.c_attn"), (None, "h.0.mlp.c_proj")])
def test_sim_model_layer(model, bits, name):
    """A layer of a (tiny, random) GPT-2 with activations from its forward pass, through the engine."""
    tokens = calibration_tokens(model)
    layout, scales = build_layout(model, bits, "pot-channel", 5, [name], 8, tokens=tokens)
    engine = Engine(layout=layout, rows=3, pe="pot" if bits else "int8")
    engine.test_layers = [(name, layer_codes(layout, 0), layer_bias(layout, 0))]
    check(engine, [(0, real_activations(model, name, scales[name].act_scale, 8, tokens[:7]))], out_stall=0.2)


def yosys_check(verilog_path):
    """Yosys reads the emitted design, finds its top and passes `check -assert`; any tool error fails."""
    try:
        tool_command("YOSYS")                   # the one reason to skip: no Yosys at all
    except ToolError as error:
        pytest.skip(str(error))
    script = verilog_path.parent / "check.ys"
    script.write_text(f"read_verilog {verilog_path.name}\nhierarchy -check -top {TOP_NAME}\nproc\ncheck -assert\n")
    run_tool("YOSYS", ["-q", "-s", script.name], cwd=verilog_path.parent, log_path=verilog_path.parent / "check.log")


def expected_code_words(layers, columns, first, per_word, bits):
    """The words of the code store of columns ``first .. first + per_word - 1``, from the layout's
    definition (golden/rom_layout.py, DESIGN.md) with plain loops, not from `RomLayout`: entry
    ``base + slot * K + k`` of column ``c`` is the code of weight ``(k, c + C * slot)`` (the zero
    code past N), and a word packs its columns' entries little-endian, `bits` bits each."""
    zero = (1 << (bits - 1)) - 1
    words = []
    for codes in layers:
        k, n = codes.shape
        for slot in range(-(-n // columns)):
            for row in range(k):
                word = 0
                for i in range(per_word):
                    channel = first + i + columns * slot
                    code = int(codes[row, channel]) if first + i < columns and channel < n else zero
                    word |= code << (bits * i)
                words.append(word)
    return words


def test_emit(checkpoint, tmp_path, capsys):
    out = tmp_path / "verilog"
    calib = tmp_path / "calib.bin"
    np.random.default_rng(0).integers(0, 11, 300).astype(np.uint16).tofile(calib)
    assert main(["--checkpoint", str(checkpoint), "--layers", "h.0.attn.c_proj,h.0.mlp.c_fc", "--rows", "2",
                 "--cols", "3", "--columns-per-word", "2", "--calib", str(calib), "--no-verify", "--out", str(out)]) == 0
    files = sorted(p.name for p in out.iterdir())
    assert files == ["bias_store.hex", "code_store_0.hex", "code_store_1.hex", "engine.json", f"{TOP_NAME}.v"]
    description = json.loads((out / "engine.json").read_text())
    assert description["top"] == TOP_NAME
    params = description["parameters"]
    assert (params["rows"], params["columns"], params["bits"], params["columns_per_word"]) == (2, 3, 4, 2)
    assert [layer["name"] for layer in description["layers"]] == ["h.0.attn.c_proj", "h.0.mlp.c_fc"]
    assert [(layer["k"], layer["n"], layer["slots"]) for layer in description["layers"]] == [(8, 8, 3), (8, 32, 11)]
    ports = {p["name"]: (p["direction"], p["width"]) for p in description["ports"]}
    assert ports["activations__payload"] == ("in", 9) and ports["results__payload"] == ("out", params["acc_bits"] + 1)
    assert ports["layer"] == ("in", 1) and ports["busy"] == ("out", 1) and ports["clk"] == ("in", 1)
    assert all(name != TOP_NAME for name in ports)
    # ROM images: golden's words, one hex word per line.
    model = load_checkpoint(checkpoint)
    layout, _ = build_layout(model, 4, "pot-channel", 3, ["h.0.attn.c_proj", "h.0.mlp.c_fc"], 8,
                             tokens=calibration_windows(model, checkpoint, calib))
    codes = [quantize(model.weight(name), bits=4, method="pot-channel").codes
             for name in ["h.0.attn.c_proj", "h.0.mlp.c_fc"]]
    for g, first in enumerate([0, 2]):
        words = [int(line, 16) for line in (out / f"code_store_{g}.hex").read_text().split()]
        assert words == expected_code_words(codes, 3, first, 2, 4)
    engine = Engine(layout=layout, rows=2, columns_per_word=2)
    assert [int(line, 16) for line in (out / "bias_store.hex").read_text().split()] == engine.bias_store.words
    assert "emitting 2 layers" in capsys.readouterr().err
    yosys_check(out / f"{TOP_NAME}.v")


def test_emit_smallest(checkpoint, tmp_path):
    """R = 1, C = 1, one layer, INT8: the degenerate widths still make valid Verilog."""
    out = tmp_path / "v"
    assert main(["--checkpoint", str(checkpoint), "--layers", "h.0.attn.c_proj", "--rows", "1", "--cols", "1",
                 "--pe", "int8", "--acc-bits", "12", "--no-verify", "--out", str(out)]) == 0
    assert json.loads((out / "engine.json").read_text())["parameters"]["acc_bits"] == 12
    yosys_check(out / f"{TOP_NAME}.v")
    # Writing again replaces the directory atomically.
    assert main(["--checkpoint", str(checkpoint), "--layers", "h.0.attn.c_proj", "--cols", "2", "--no-verify",
                 "--out", str(out)]) == 0
    assert json.loads((out / "engine.json").read_text())["parameters"]["columns"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["v"]


@pytest.mark.parametrize("args, message", [
    (["--layers", "h.9.mlp.c_fc"], "unknown layer 'h.9.mlp.c_fc'"),
    (["--rows", "0"], "Row count must be a positive integer, not 0"),
    (["--bits", "9"], "Weight bits must be from 3 to 8, not 9"),
    (["--act-bits", "1"], "Activation bits must be from 2 to 16, not 1"),
    (["--acc-bits", "1"], "Accumulator bits must be an integer of at least 2, not 1"),
    (["--columns-per-word", "0"], "Columns per word must be a positive integer, not 0"),
])
def test_emit_wrong(checkpoint, tmp_path, capsys, args, message):
    assert main(["--checkpoint", str(checkpoint), "--out", str(tmp_path / "v"), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err
    assert not (tmp_path / "v").exists()


def test_emit_missing_checkpoint(tmp_path, capsys):
    assert main(["--checkpoint", str(tmp_path / "nothing"), "--out", str(tmp_path / "v")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not exist" in err[0]
