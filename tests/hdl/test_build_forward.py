"""python -m hdl.build --design forward: refused on its memory budget before synthesis, the default design
per board, and (slow) a real ULX3S build of the forward top with cycles simulated in Verilator."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from golden.paths import HARDWARE_MODEL_DIR, REPO_DIR
from hdl.build import DEFAULT_DESIGN, parse_args
from hdl.forward.resources import _columns, _subtree_cells
from hdl.toolchain import ToolError, tool_command


def build(*args):
    return subprocess.run([sys.executable, "-m", "hdl.build", *map(str, args)], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=3600)


def one_line_error(result):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_default_design_per_board():
    """`python -m hdl.build --board icebreaker` builds the whole forward into build/icebreaker; the ULX3S's
    default stays the linear engine; the other design goes to build/BOARD-DESIGN; --patch is the linear
    design's."""
    assert DEFAULT_DESIGN == {"icebreaker": "forward", "ulx3s": "linear"}
    args = parse_args(["--board", "icebreaker"])
    assert args.design == "forward" and args.rows is None and args.context is None
    assert Path(args.out).name == "icebreaker"
    assert Path(parse_args(["--board", "icebreaker", "--design", "linear"]).out).name == "icebreaker-linear"
    ulx3s = parse_args(["--board", "ulx3s"])
    assert ulx3s.design == "linear" and Path(ulx3s.out).name == "ulx3s"
    assert Path(parse_args(["--board", "ulx3s", "--design", "forward"]).out).name == "ulx3s-forward"
    assert parse_args(["--board", "ulx3s", "--design", "forward", "--context", "9"]).context == 9
    assert parse_args(["--board", "icebreaker", "--patch", "--roms", "r"]).design == "linear"


def test_default_model_refused_on_the_up5k(tmp_path):
    """The hardware model at context 65 on the iCEBreaker: one line with the SPRAMs against the chip and the
    largest context that fits (64: the codes fill 3 SPRAMs and the KV cache of 65 positions needs 2; with the
    constants in the flash the EBR holds the rest), nothing written, no tool run."""
    result = build("--board", "icebreaker", "--design", "forward", "--context", "65", "--out", tmp_path / "x")
    line = one_line_error(result)
    assert "the forward design won't fit the iCE40UP5K at context 65: needs 5 SPRAM of 4" in line
    assert "the largest context that fits is 64" in line
    assert not (tmp_path / "x").exists() and "synthesizing" not in result.stderr


@pytest.mark.parametrize("args, message", [
    (("--board", "icebreaker", "--design", "linear", "--context", "8"),
     "--context and --int-format go with --design forward"),
    (("--board", "icebreaker", "--pe", "int8"), "--pe and --codes shape the linear design"),
    (("--board", "ulx3s", "--design", "forward", "--context", "999"), "--context 999: the model has 128 positions"),
    (("--board", "ulx3s", "--design", "forward", "--int-format", "mult_bits=99"), "mult_bits must be an integer"),
    (("--board", "ulx3s", "--design", "both"), "argument --design: invalid choice"),
])
def test_bad_arguments(args, message):
    assert message in one_line_error(build(*args, "--checkpoint", HARDWARE_MODEL_DIR))


def test_subtree_cells_count_every_instance():
    """A unit's cells are its own and its children's, times how often each is instantiated."""
    modules = {"\\top": {"num_cells_by_type": {"SB_LUT4": 2, "top.a": 1, "top.b": 2}},
               "\\top.a": {"num_cells_by_type": {"SB_LUT4": 5, "SB_MAC16": 1, "top.a.pe": 3}},
               "\\top.a.pe": {"num_cells_by_type": {"SB_LUT4": 7, "SB_DFFE": 2}},
               "\\top.b": {"num_cells_by_type": {"SB_RAM40_4K": 1, "SB_CARRY": 4}}}
    memo = {}
    assert _subtree_cells(modules, "\\top.a", memo) == {"SB_LUT4": 26, "SB_MAC16": 1, "SB_DFFE": 6}
    total = _columns(_subtree_cells(modules, "\\top", memo), "ice40")
    assert total == {"lut4": 28, "carry": 8, "ff": 6, "dsp": 1, "bram": 2, "spram": 0}


@pytest.mark.slow
def test_ulx3s_forward_build(tiny_checkpoint, tmp_path):
    """A tiny checkpoint's forward top on the ULX3S: bitstream, nextpnr's counts, cycles from Verilator
    (tokens checked against golden on the way), tokens/s from them and the clock."""
    try:
        for variable in ("YOSYS", "NEXTPNR_ECP5", "ECPPACK"):
            tool_command(variable)
    except ToolError as error:
        pytest.skip(str(error))
    out = tmp_path / "ulx3s"
    result = build("--board", "ulx3s", "--design", "forward", "--checkpoint", tiny_checkpoint, "--out", out, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads((out / "report.json").read_text())
    assert json.loads(result.stdout) == report
    assert (report["design"], report["board"], report["device"], report["context"]) == \
        ("forward", "ulx3s", "LFE5U-85F", 32)
    nextpnr = json.loads((out / "nextpnr.json").read_text())
    assert report["lc_used"] == nextpnr["utilization"]["TRELLIS_COMB"]["used"]
    assert report["ebr_used"] == nextpnr["utilization"]["DP16KD"]["used"]
    cycles = report["cycles_per_token"]
    assert 0 < cycles["position_1"] < cycles["full_context"] and cycles["full_context_position"] == 30
    assert report["tokens_per_s"] == round(report["target_mhz"] * 1e6 / cycles["full_context"], 1)
    assert report["fmax_mhz"] >= report["target_mhz"]
    assert (out / "top.bit").is_file()


def test_flash_image_beside_the_bitstream(tiny_checkpoint, tmp_path):
    """An iCEBreaker forward top (constants and codes in the flash) gets its one flash image written as
    constants.bin and named for report.json: the core's constant image from address 0, erased flash up to the
    next power of two, then the codes' part (a check, then bank 0's words first, little-endian); a
    ULX3S top (constants and codes in block RAM) gets none."""
    import hashlib

    import numpy as np

    from boards.forward_top import FLASH_CONSTANTS_OFFSET, compose_forward
    from golden.compile import compile_checkpoint
    from hdl.build_forward import FLASH_IMAGE, write_flash_image
    from hdl.code_boot import CHECK_BYTES

    compiled = compile_checkpoint(tiny_checkpoint)
    top = compose_forward(compiled, board="icebreaker", context=16)
    entry = write_flash_image(top, tmp_path)
    image, constants = (tmp_path / FLASH_IMAGE).read_bytes(), top.core.constant_image()
    base, banks = top.codes_base, top.core.linear.code_banks
    assert image == top.flash_image() and image[:len(constants)] == constants
    assert base == max(256, 1 << (len(constants) - 1).bit_length()) and set(image[len(constants):base]) <= {0xFF}
    codes = image[base + CHECK_BYTES:]
    assert np.array_equal(np.frombuffer(codes, "<u2").reshape(banks.shape), banks)
    assert image[base:base + CHECK_BYTES] == top.boot.check == hashlib.sha256(constants + codes).digest()[:8]
    assert entry == {"file": FLASH_IMAGE, "offset": FLASH_CONSTANTS_OFFSET, "bytes": len(image),
                     "sha256": hashlib.sha256(image).hexdigest(), "bytes_per_cycle": top.flash.bytes_per_cycle,
                     "codes_offset": base, "codes_bytes": len(image) - base}
    assert write_flash_image(compose_forward(compiled, board="ulx3s"), tmp_path / "none") is None


def test_ice40_synthesis_uses_the_dsps(tiny_checkpoint):
    """The iCE40 forward build's Yosys script maps multipliers to SB_MAC16 (``synth_ice40 -dsp``): without it
    the core's multipliers become thousands of logic cells."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from boards.forward_top import compose_forward
    from golden.compile import compile_checkpoint
    from hdl.build_forward import ICE40_SYNTH_OPTS

    top = compose_forward(compile_checkpoint(tiny_checkpoint), board="icebreaker", context=16)
    plan = ICEBreakerPlatform().prepare(top, name="top", synth_opts=ICE40_SYNTH_OPTS)
    assert "synth_ice40 -dsp -top top" in plan.files["top.ys"]


@pytest.mark.parametrize("error, line", [
    ("ERROR: Failed to expand region (0, 0) |_> (25, 31) of 6714 ICESTORM_LCs",
     "the forward design won't fit the iCE40UP5K: LC 6714/5280"),
    ("design does not fit (LC 10519/5280)", "the forward design won't fit the iCE40UP5K: LC 10519/5280"),
])
def test_place_and_route_failures_name_the_cells(error, line):
    """A too-large top gets one line naming its logic cells, whichever way nextpnr-ice40 gave up."""
    from hdl.build_forward import _chip_refusal

    assert _chip_refusal(RuntimeError(error), "icebreaker") == line
