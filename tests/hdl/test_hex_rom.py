# amaranth: UnusedElaboratable=no
"""The hex-file ROMs of the emitted engine: the component, the files' word order against golden's codes
computed independently here, and Yosys reading the design with its files from another folder."""

import json
import re

import numpy as np
import pytest

from golden.checkpoint import load_checkpoint
from golden.model_loading import calibration_windows
from golden.pot_format import PotFormat
from hdl.emit import TOP_NAME, emit, layer_scales, make_engine, quantize_layers
from hdl.hex_rom import HEX_ROM_MODULE, HexFileROM, hex_file_code_store
from hdl.toolchain import run_tool

from hdl_cases import tiny_checkpoint
from test_emit import expected_code_words

NAMES = ["h.0.attn.c_attn", "h.0.mlp.c_proj"]


def test_init():
    rom = HexFileROM(file="code_store_3.hex", depth=300, width=8)
    assert (rom.file, rom.depth, rom.width, rom.addr_width, rom.latency) == ("code_store_3.hex", 300, 8, 9, 1)
    assert rom.signature.members["read"].signature.addr_width == 9
    store = hex_file_code_store(4, 2, [0] * 5, 8)
    store._MustUse__silence = True           # made only to be looked at
    assert (store.file, store.depth, store.width) == ("code_store_2.hex", 5, 8)


@pytest.mark.parametrize("args, message", [
    ({"file": "", "depth": 4, "width": 4}, "File must be a non-empty file name"),
    ({"file": 'a"b.hex', "depth": 4, "width": 4}, "without quotes"),
    ({"file": "a.hex", "depth": 0, "width": 4}, "Depth must be a positive integer, not 0"),
    ({"file": "a.hex", "depth": 4, "width": True}, "Width must be a positive integer, not True"),
])
def test_init_wrong(args, message):
    with pytest.raises(ValueError, match=message):
        HexFileROM(**args)


@pytest.fixture(scope="module")
def emitted(tmp_path_factory):
    """A 5-bit engine of two layers of a tiny checkpoint, 3 columns, 2 columns per code word, emitted."""
    root = tmp_path_factory.mktemp("hex")
    checkpoint = tiny_checkpoint(root / "model", n_embd=8)
    model = load_checkpoint(checkpoint)
    integer = quantize_layers(model, 5, "pot-channel", NAMES, 8, calibration_windows(model, checkpoint))
    engine = make_engine(integer.layout(3), rows=2, act_bits=8, columns_per_word=2)
    emit(engine, layer_scales(integer), root / "out" / "v")
    return root / "out" / "v", integer


def _hex(path):
    return [int(line, 16) for line in path.read_text().split()]


def test_code_files_order(emitted):
    """code_store_<g>.hex holds the words of columns 2g, 2g + 1 computed from golden's codes with plain loops
    (`test_emit.expected_code_words`)."""
    folder, integer = emitted
    assert sorted(p.name for p in folder.iterdir()) == ["bias_store.hex", "code_store_0.hex", "code_store_1.hex",
                                                        "engine.json", f"{TOP_NAME}.v"]
    codes = [integer.layers[name].codes for name in NAMES]
    for g in range(2):
        assert _hex(folder / f"code_store_{g}.hex") == expected_code_words(codes, 3, 2 * g, 2, 5)


def test_bias_file_order(emitted):
    """Entry slot_base * C + c of bias_store.hex is the bias of channel c + C * slot plus its negative non-zero
    codes (which the array's ones'-complement terms leave out), two's complement."""
    folder, integer = emitted
    description = json.loads((folder / "engine.json").read_text())
    width = description["bias_store"]["width"]
    expected = []
    for name in NAMES:
        layer = integer.layers[name]
        bias = [int(b) + int((PotFormat(5).to_int(layer.codes[:, n]) < 0).sum()) for n, b in enumerate(layer.bias)]
        for slot in range(-(-len(bias) // 3)):
            for c in range(3):
                n = c + 3 * slot
                expected.append((bias[n] if n < len(bias) else 0) & ((1 << width) - 1))
    assert _hex(folder / "bias_store.hex") == expected
    assert description["parameters"]["roms"] == "readmemh"


def test_verilog_reads_files(emitted):
    folder, _ = emitted
    text = (folder / f"{TOP_NAME}.v").read_text()
    for g in range(2):
        assert f'.FILE("code_store_{g}.hex")' in text
    assert 'initial $readmemh("bias_store.hex", memory );' in text
    assert f"module {HEX_ROM_MODULE}" in text and "initial $readmemh(FILE, memory);" in text
    assert "memory[0] =" not in text         # no ROM word inline


def _rtlil_inits(design):
    """{FILE parameter or module name: the INIT bits of its memory} of an RTLIL text."""
    inits = {}
    for module in design.split("\nmodule ")[1:]:
        file = re.search(r'parameter \\FILE "([^"]+)"', module)
        init = re.search(r"parameter \\INIT \d+'([01]+)", module)
        if init:
            inits[file[1] if file else module.split()[0]] = init[1]
    return inits


def test_yosys_reads_files(emitted):
    """Yosys, run from the folder above, finds the hex files beside the Verilog: the memories it elaborates
    hold exactly the files' words."""
    folder, _ = emitted
    root = folder.parent
    script = root / "read.ys"
    script.write_text(f"read_verilog {folder.name}/{TOP_NAME}.v\nhierarchy -check -top {TOP_NAME}\nproc\n"
                      f"memory_collect\nwrite_rtlil design.il\n")
    run_tool("YOSYS", ["-q", "-l", "read.log", "-s", script.name], cwd=root)
    inits = _rtlil_inits((root / "design.il").read_text())
    bias_width = json.loads((folder / "engine.json").read_text())["bias_store"]["width"]
    for key, file, width in (("code_store_0.hex", "code_store_0.hex", 10), ("code_store_1.hex", "code_store_1.hex", 10),
                             (f"\\{TOP_NAME}.bias_store", "bias_store.hex", bias_width)):
        words = _hex(folder / file)
        assert inits[key] == "".join(format(w, f"0{width}b") for w in reversed(words)), file


def test_inline_roms(tmp_path):
    """--inline-roms: Amaranth's memories with every word in the Verilog, no $readmemh; the same hex files."""
    from hdl.emit import main

    checkpoint = tiny_checkpoint(tmp_path / "model", n_embd=8)
    args = ["--checkpoint", str(checkpoint), "--layers", ",".join(NAMES), "--rows", "2", "--cols", "3", "--no-verify"]
    assert main([*args, "--inline-roms", "--out", str(tmp_path / "inline")]) == 0
    assert main([*args, "--out", str(tmp_path / "files")]) == 0
    text = (tmp_path / "inline" / f"{TOP_NAME}.v").read_text()
    assert "$readmemh" not in text and HEX_ROM_MODULE not in text and "memory[0] =" in text
    assert json.loads((tmp_path / "inline" / "engine.json").read_text())["parameters"]["roms"] == "inline"
    for name in ("code_store_0.hex", "code_store_2.hex", "bias_store.hex"):
        assert (tmp_path / "inline" / name).read_text() == (tmp_path / "files" / name).read_text()
    assert len(text) > (tmp_path / "files" / f"{TOP_NAME}.v").stat().st_size
