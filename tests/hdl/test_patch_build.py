"""python -m hdl.build --patch: another checkpoint's biases and IDENTIFY answer (and, with --codes ebr, codes)
swapped into a finished iCEBreaker build with icebram, proved by reading the block RAM back out of the .asc; patching back
gives the original bit for bit; bad exports (other shapes, edited files) are refused with one line and
nothing written."""

import dataclasses
import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from boards.protocol import Identity, layout_digest
from golden.model_loading import load_integer_model
from golden.paths import REPO_DIR
from golden.pot_format import PotFormat
from hdl.bram_patch import bit_slices, patch_asc, placeholder_words, ram_tiles
from hdl.toolchain import ToolError, tool_command
from hdl_cases import ICEBREAKER_LINEAR
from tiny_checkpoints import write_tiny_checkpoint


ROWS, COLUMNS = 1, 4


def _tools_or_skip():
    try:
        for variable in ("YOSYS", "NEXTPNR_ICE40", "ICEPACK", "ICEBRAM"):
            tool_command(variable)
    except ToolError as error:
        pytest.skip(f"{error} (the potgen[hdl] extra installs the YoWASP tools)")


def _run(module, *args):
    return subprocess.run([sys.executable, "-m", module, *map(str, args)], cwd=REPO_DIR, capture_output=True,
                          text=True)


def _export(checkpoint, out, columns=COLUMNS):
    result = _run("golden.export", "--checkpoint", checkpoint, "--cols", columns, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    return out


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    """Checkpoints A, B (same shapes, other weights) and C (wider), and their exports for 4 columns."""
    _tools_or_skip()
    root = tmp_path_factory.mktemp("patch")
    checkpoints = {name: write_tiny_checkpoint(root / name, n_layer=1, n_embd=16, n_head=2, seed=seed)
                   for name, seed in (("a", 0), ("b", 1))}
    checkpoints["c"] = write_tiny_checkpoint(root / "c", n_layer=1, n_embd=32, n_head=2, seed=2)
    roms = {name: _export(path, root / f"roms_{name}") for name, path in checkpoints.items()}
    return {"root": root, "checkpoints": checkpoints, "roms": roms}


def _build(exports, codes):
    out = exports["root"] / f"build_a_{codes}"
    result = _run("hdl.build", *ICEBREAKER_LINEAR, "--checkpoint", exports["checkpoints"]["a"], "--rows", ROWS,
                  "--cols", COLUMNS, "--seed", 3, "--codes", codes, "--out", out, "--quiet")
    assert result.returncode == 0, result.stderr
    return dict(exports, build=out)


@pytest.fixture(scope="module")
def built(exports):
    """A small build of checkpoint A, codes in SPRAM (the default): only the biases are in block RAM."""
    return _build(exports, "spram")


@pytest.fixture(scope="module")
def built_ebr(exports):
    """The same build with --codes ebr: codes and biases in block RAM."""
    return _build(exports, "ebr")


def patch(*args):
    return _run("hdl.build", "--board", "icebreaker", "--patch", "--quiet", *args)


def _expected(checkpoint, memory):
    """A memory's words (`memory`: its patch manifest record), from golden's quantizer and the documented
    layouts alone. Biases (`hdl.bias_store.BiasStore`): address ``bias_base * C + n`` holds bias ``n`` plus
    the number of negative non-zero codes of channel ``n``, `width`-bit two's complement, 0 past N. Codes (`golden.rom_layout`): entry ``code_base + slot * K + k``
    of column ``c`` is the code of weight ``(k, c + C * slot)``, the zero code past N; a word packs its
    columns' entries, the first column in the low bits."""
    model = load_integer_model(checkpoint, bits=4)
    layout = model.layout(COLUMNS)
    if memory["kind"] == "identity":
        # The build's IDENTIFY answer (boards.protocol.Identity) with the digest of this checkpoint's layout,
        # as 16-bit words of little-endian byte pairs: what boards.host compares with the model it loads.
        built = Identity.unpack(bytes.fromhex(memory["identity"]))
        packed = dataclasses.replace(built, digest=layout_digest(layout)).pack()
        return [packed[i] | packed[i + 1] << 8 for i in range(0, len(packed), 2)]
    if memory["kind"] == "bias":
        words = [0] * (layout.bias_depth * COLUMNS)
        for placement in layout.layers:
            codes = model.layers[placement.name].codes
            for n, bias in enumerate(model.layers[placement.name].bias):
                # plus the channel's negative non-zero codes, which the array's ones'-complement terms leave out
                value = int(bias) + int((PotFormat(4).to_int(codes[:, n]) < 0).sum())
                words[placement.bias_base * COLUMNS + n] = value & ((1 << memory["width"]) - 1)
        return words
    first, per_word, zero = memory["first_column"], memory["columns_per_word"], PotFormat(4).zero_code
    entries = np.full((per_word, layout.code_depth), zero, dtype=np.int64)
    for placement in layout.layers:
        codes = model.layers[placement.name].codes
        for n in range(placement.n):
            c, slot = n % COLUMNS, n // COLUMNS
            if first <= c < first + per_word:
                start = placement.code_base + slot * placement.k
                entries[c - first, start:start + placement.k] = codes[:, n]
    return [sum(int(entries[i, a]) << (4 * i) for i in range(per_word)) for a in range(layout.code_depth)]


def _slice_map(tiles, slices):
    """Where each bit slice lies in `tiles` (read as 256 x 16): {slice index: (tile, bit)}; each exactly once."""
    found = {}
    for tile, words in tiles.items():
        for position, tile_slice in enumerate(bit_slices(words, 16)):
            if tile_slice in slices:
                index = slices.index(tile_slice)
                assert index not in found, f"slice {index} found twice"
                found[index] = (tile, position)
    assert sorted(found) == list(range(len(slices))), "a placeholder slice is not in the bitstream"
    return found


def _without_ram(asc):
    """The .asc with the block RAM contents left out: logic, routing and RAM configuration."""
    lines, keep, skip = asc.splitlines(), [], 0
    for line in lines:
        if skip:
            skip -= 1
            continue
        keep.append(line)
        skip = 16 if line.startswith(".ram_data") else 0
    return keep


@pytest.mark.parametrize("codes", ["spram", "ebr"])
def test_patch_reads_back(codes, request, tmp_path):
    """The patched .asc holds B's biases (and codes, with --codes ebr) exactly where the build's placeholders
    were, and nothing else changed."""
    built = request.getfixturevalue("built" if codes == "spram" else "built_ebr")
    out = tmp_path / "build_b"
    result = patch("--roms", built["roms"]["b"], "--build", built["build"], "--out", out)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((built["build"] / "patch" / "manifest.json").read_text())
    assert manifest["codes"] == codes
    assert [m["kind"] for m in manifest["memories"]] == ["identity", "bias"] + ["codes"] * (codes == "ebr")
    built_identity = Identity.unpack(bytes.fromhex(manifest["memories"][0]["identity"]))
    assert built_identity.digest == layout_digest(load_integer_model(built["checkpoints"]["a"], bits=4).layout(COLUMNS))
    unpatched = (built["build"] / "patch" / "top.unpatched.asc").read_text()
    patched = (out / "top.asc").read_text()
    before, tiles, moved = ram_tiles(unpatched), ram_tiles(patched), set()
    for seed, memory in enumerate(manifest["memories"]):
        width, depth = memory["width"], memory["depth"]
        assert depth % 256 == 0 and memory["words"] <= depth
        placeholder = [int(line, 16)
                       for line in (built["build"] / "patch" / memory["placeholder"]).read_text().split()]
        assert placeholder == placeholder_words(width, depth, 0x5eed + seed)
        where = _slice_map(before, bit_slices(placeholder, width))
        expected = _expected(built["checkpoints"]["b"], memory)
        assert len(expected) == memory["words"] and expected != _expected(built["checkpoints"]["a"], memory)
        expected_slices = bit_slices(expected + [0] * (depth - len(expected)), width)
        for index, (tile, position) in where.items():
            assert bit_slices(tiles[tile], 16)[position] == expected_slices[index], f"{memory['name']} {index}"
        moved |= set(where.values())
    # Every other bit of every block RAM, and everything that is not block RAM contents, is untouched.
    for tile in before:
        for position in range(16):
            if (tile, position) not in moved:
                assert bit_slices(tiles[tile], 16)[position] == bit_slices(before[tile], 16)[position]
    assert _without_ram(patched) == _without_ram(unpatched)

    report = json.loads((out / "report.json").read_text())
    assert report["model"] == str(built["checkpoints"]["b"]) and report["patch"]["from_model"] == \
        str(built["checkpoints"]["a"])
    assert report["codes"] == codes and report["patch"]["seconds"] < report["build_seconds"]
    assert (out / "top.bin").stat().st_size == (built["build"] / "top.bin").stat().st_size
    assert (out / "top.bin").read_bytes() != (built["build"] / "top.bin").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build_b"], "a temporary folder was left"


def test_patch_back_is_the_original(built_ebr, tmp_path):
    """A -> B -> A in place gives the original .asc and .bin byte for byte (codes and biases)."""
    built = built_ebr
    work = tmp_path / "build"
    shutil.copytree(built["build"], work)
    for name in ("b", "a"):
        result = patch("--roms", built["roms"][name], "--out", work)
        assert result.returncode == 0, result.stderr
    for name in ("top.asc", "top.bin"):
        assert (work / name).read_bytes() == (built["build"] / name).read_bytes(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["build"]


def test_patch_asc_partial_nibble(built, tmp_path):
    """A memory whose width is not a whole number of hex digits goes in two icebram runs: bits 0-8 of the
    placeholder swapped (as if the memory were 9 bits wide), bits 9 and up left alone."""
    manifest = json.loads((built["build"] / "patch" / "manifest.json").read_text())
    ((seed, memory),) = [(i, m) for i, m in enumerate(manifest["memories"]) if m["kind"] == "bias"]
    width, depth = memory["width"], memory["depth"]
    placeholder = placeholder_words(width, depth, 0x5eed + seed)
    new = [int(v) for v in np.random.default_rng(1).integers(0, 1 << 9, depth)]
    unpatched = built["build"] / "patch" / "top.unpatched.asc"
    patch_asc(unpatched, tmp_path / "out.asc", [("low", 9, [p & 0x1FF for p in placeholder], new)], work=tmp_path)
    where = _slice_map(ram_tiles(unpatched.read_text()), bit_slices(placeholder, width))
    tiles = ram_tiles((tmp_path / "out.asc").read_text())
    want = bit_slices([(p & ~0x1FF) | n for p, n in zip(placeholder, new)], width)
    for index, (tile, position) in where.items():
        assert bit_slices(tiles[tile], 16)[position] == want[index]


def one_line_error(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_patch_other_shapes_refused(built, tmp_path):
    line = one_line_error(patch("--roms", built["roms"]["c"], "--build", built["build"], "--out", tmp_path / "x"))
    assert "layer h.0.attn.c_attn: the build holds K x N = 16 x 48, the export 32 x 96" in line
    other_columns = _export(built["checkpoints"]["b"], tmp_path / "roms8", columns=8)
    line = one_line_error(patch("--roms", other_columns, "--build", built["build"], "--out", tmp_path / "x"))
    assert "the export has 8 array columns, the build 4" in line
    assert sorted(p.name for p in tmp_path.iterdir()) == ["roms8"]


def test_patch_edited_export_refused(built, tmp_path):
    roms = tmp_path / "roms"
    shutil.copytree(built["roms"]["b"], roms)
    bias = roms / "h.0.mlp.c_fc" / "bias_c01.hex"
    lines = bias.read_text().splitlines()
    bias.write_text("\n".join([f"{int(lines[0], 16) ^ 1:0{len(lines[0])}x}", *lines[1:]]) + "\n")
    out = tmp_path / "build"
    shutil.copytree(built["build"], out)
    line = one_line_error(patch("--roms", roms, "--out", out))
    assert f"{bias} does not match its sha256 in the manifest" in line
    assert (out / "top.asc").read_bytes() == (built["build"] / "top.asc").read_bytes()   # left as it was


@pytest.mark.parametrize("args, message", [
    (("--patch",), "--patch needs --roms DIR"),
    (("--roms", "x"), "--roms and --build go with --patch"),
    (("--patch", "--roms", "x", "--board", "ulx3s"), "--patch works on iCEBreaker builds"),
])
def test_patch_bad_arguments(args, message):
    args = ("--board", "icebreaker", *args) if "--board" not in args else args
    line = one_line_error(_run("hdl.build", *args))
    assert message in line


def test_patch_not_a_build(built, tmp_path):
    line = one_line_error(patch("--roms", built["roms"]["b"], "--out", tmp_path))
    assert "is not a finished build: no report.json" in line


def test_codes_in_ebr_wont_fit(tmp_path):
    """A model whose codes overflow the 30 block RAMs is refused before synthesis, saying what to change."""
    checkpoint = write_tiny_checkpoint(tmp_path / "m", n_layer=2, n_embd=64, n_head=4)
    result = _run("hdl.build", *ICEBREAKER_LINEAR, "--checkpoint", checkpoint, "--codes", "ebr",
                  "--out", tmp_path / "x", "--quiet")
    line = one_line_error(result)
    assert "won't fit the iCE40UP5K: 48.0 KiB of codes need 96 block RAMs" in line and "use --codes spram" in line
    assert not (tmp_path / "x").exists()
