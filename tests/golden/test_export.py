"""ROM image export: the hardware's layout, read back identical, hashes enforced, written whole."""

import json

import numpy as np
import pytest

from golden.cli import run
from golden.export import load, main
from golden.model_loading import load_integer_model
from golden.pot_format import unpack_codes


@pytest.mark.parametrize("bits, columns", [(4, 16), (3, 5), (6, 4), (8, 3)])
def test_round_trip_equals_quantizer(tiny_checkpoint, tmp_path, bits, columns):
    out = tmp_path / "roms"
    main(["--checkpoint", str(tiny_checkpoint), "--bits", str(bits), "--cols", str(columns), "--out", str(out),
          "--quiet"])
    manifest, layers = load(out)
    model = load_integer_model(tiny_checkpoint, bits=bits)
    assert list(layers) == list(model.layers)
    for name, layer in model.layers.items():
        np.testing.assert_array_equal(layers[name].codes, layer.codes)
        np.testing.assert_array_equal(layers[name].scales, layer.weights.scales)
        assert [int(b) for b in layers[name].bias] == [int(b) for b in layer.bias]
        assert layers[name].act_scale == layer.act_scale
    assert manifest["bits"] == bits and manifest["columns"] == columns


def test_layout_is_the_hardware_one(tiny_checkpoint, tmp_path):
    """Column c's file holds, at entry slot*K + k, the code of weight (k, c + C*slot): the RomLayout."""
    out = tmp_path / "roms"
    main(["--checkpoint", str(tiny_checkpoint), "--cols", "5", "--out", str(out), "--quiet"])
    model = load_integer_model(tiny_checkpoint)
    layout = model.layout(5)
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["layers"]:
        codes = model.layers[entry["name"]].codes
        for column in range(5):
            lines = [int(v, 16) for v in (out / entry["name"] / f"codes_c{column:02d}.hex").read_text().split()]
            assert lines == layout.code_images[column, entry["code_base"]:entry["code_base"] + entry["slots"] * entry["k"]].tolist()
            for slot in range(entry["slots"]):
                channel = column + 5 * slot
                if channel < entry["n"]:
                    assert lines[slot * entry["k"]:(slot + 1) * entry["k"]] == codes[:, channel].tolist()
    # The SPRAM/flash image: 16-bit words, 4 columns side by side at 4 bits.
    image = np.fromfile(out / "image.bin", "<u2")
    first = manifest["layers"][0]
    words = image[first["image_offsets"][1] // 2:][:first["slots"] * first["k"]]
    unpacked = unpack_codes(words, 4, 16, 4 * words.size).reshape(-1, 4)
    np.testing.assert_array_equal(unpacked[:, 0], layout.code_images[4, :words.size])


def test_corrupt_export_is_refused(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "roms"
    main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet"])
    victim = out / "h.1.mlp.c_fc" / "codes_c03.hex"
    text = victim.read_text()
    victim.write_text(("1" if text[0] != "1" else "2") + text[1:])
    with pytest.raises(SystemExit) as exit_info:
        run(main, "export", ["--verify", str(out)])
    assert exit_info.value.code == 2
    assert "codes_c03.hex does not match its sha256" in capsys.readouterr().err


def test_failed_export_leaves_old_export_whole(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "roms"
    main(["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet"])
    before = {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(SystemExit):
        run(main, "export", ["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--layers", "h.9.mlp.c_fc"])
    assert "No linear layer 'h.9.mlp.c_fc'" in capsys.readouterr().err
    assert {p.relative_to(out): p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["roms"]


@pytest.mark.parametrize("args, message", [(["--bits", "9"], "from 3 to 8, not 9"),
                                           (["--cols", "0"], "Column count must be a positive integer, not 0"),
                                           (["--method", "nope"], "Unknown quantization method 'nope'")])
def test_bad_arguments(tiny_checkpoint, tmp_path, args, message, capsys):
    with pytest.raises(SystemExit):
        run(main, "export", ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path / "x"), *args])
    assert message in capsys.readouterr().err
    assert not (tmp_path / "x").exists()
