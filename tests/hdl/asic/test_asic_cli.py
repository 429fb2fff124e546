# amaranth: UnusedElaboratable=no
"""python -m hdl.asic: help, one-line errors, and asic.json from a small run."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hdl.asic.__main__ import main
from hdl.asic.pdk import PdkError, library_dir
from hdl.toolchain import ToolError, tool_command

ROOT = Path(__file__).resolve().parents[3]
DESIGN_KEYS = {"design", "pe", "bits", "rows", "cols", "area_um2", "cells", "flops", "logic_depth",
               "equivalent", "timing", "memory_bits", "macs_per_cycle", "gmacs", "um2_per_gmacs"}


def _cli(*args):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "hdl.asic", *args], capture_output=True, text=True, env=env,
                          cwd=ROOT)


@pytest.fixture(scope="module")
def tools():
    try:
        tool_command("YOSYS")
        library_dir()
    except (ToolError, PdkError) as error:
        pytest.skip(str(error))


def test_help():
    result = _cli("--help")
    assert result.returncode == 0
    assert "python -m hdl.asic --rows 4 --cols 4" in result.stdout and "--pe KIND" in result.stdout


@pytest.mark.parametrize("args, message", [
    (["--bits", "9"], "9"),
    (["--rows", "4", "8", "--cols", "4"], "--rows and --cols"),
    (["--rows", "0"], "positive integer"),
    (["--pe", "int4"], "'int4'"),
    (["--acc-bits", "1"], "1"),
])
def test_bad_input_one_line(args, message, tmp_path):
    result = _cli(*args, "--out", str(tmp_path / "out"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and message in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "out" / "asic.json").exists()


def _check_schema(document):
    assert document["pdk"] == "sky130_fd_sc_hd"
    assert document["liberty"]["mismatches"] == 0
    assert document["liberty"]["functions_checked"] == document["liberty"]["cells"] > 50
    for row in document["designs"]:
        assert DESIGN_KEYS <= set(row)
        assert row["area_um2"] > 0 and row["cells"] > 0 and row["flops"] > 0
        assert row["equivalent"] in (True, False, None)


def test_small_run(tools, tmp_path, capsys):
    out = tmp_path / "asic"
    assert main(["--pe", "pot", "int8", "--bits", "3", "--act-bits", "2", "--acc-bits", "6", "--rows", "1",
                 "--cols", "2", "--no-engine", "--no-hardwired", "--timing", "none", "--out", str(out), "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert document == json.loads((out / "asic.json").read_text())
    assert (out / "asic.png").stat().st_size > 0
    _check_schema(document)
    rows = {(r["design"], r["pe"]): r for r in document["designs"]}
    assert set(rows) == {("pe", "pot"), ("pe", "int8"), ("array", "pot"), ("array", "int8")}
    assert rows["pe", "pot"]["equivalent"] is True and rows["pe", "int8"]["equivalent"] is True
    assert rows["array", "pot"]["equivalent"] is None                    # --prove pe (the default)
    assert rows["pe", "pot"]["bits"] == 3 and rows["pe", "int8"]["bits"] is None
    assert rows["array", "pot"]["rows"] == 1 and rows["array", "pot"]["cols"] == 2
    # Two PEs and the readout cost more than one PE; the PoT PE is the cheaper.
    assert rows["array", "pot"]["area_um2"] > 2 * rows["pe", "pot"]["area_um2"] * 0.9
    assert rows["pe", "pot"]["area_um2"] < rows["pe", "int8"]["area_um2"]
    pe_ratio = next(q for q in document["ratios"] if q["design"] == "pe" and q["against"] == "int8")
    assert pe_ratio["area"] == round(rows["pe", "pot"]["area_um2"] / rows["pe", "int8"]["area_um2"], 3)
    assert all(r["timing"] is None and r["um2_per_gmacs"] is None for r in document["designs"])


@pytest.mark.slow
def test_full_run_with_timing(tools, tmp_path, capsys):
    """Every design kind with characterisation (ngspice) and OpenSTA: each row timed by one method."""
    out = tmp_path / "asic"
    assert main(["--pe", "pot", "int8", "int8-booth", "--rows", "2", "--cols", "2", "--prove", "all",
                 "--out", str(out)]) == 0
    document = json.loads((out / "asic.json").read_text())
    _check_schema(document)
    kinds = {(r["design"], r["pe"]) for r in document["designs"]}
    assert ("engine", "int8-booth") in kinds and ("hardwired", "pot") in kinds
    for row in document["designs"]:
        assert row["timing"]["period_ns"] > 0 and row["um2_per_gmacs"] > 0
        if row["design"] in ("pe", "array"):
            assert row["equivalent"] is True
    assert any(r["memory_bits"] > 0 for r in document["designs"] if r["design"] == "engine")
