# amaranth: UnusedElaboratable=no
"""`hdl.forward.resources`: the ECP5 Fmax of a unit placed and routed alone, and its refusals."""

import subprocess
import sys

import pytest

from golden.int_ops import exp2_table
from golden.paths import REPO_DIR
from hdl.forward.exp2_unit import Exp2Unit
from hdl.forward.resources import unit_fmax
from hdl.toolchain import ToolError, tool_command


def resources(*args):
    return subprocess.run([sys.executable, "-m", "hdl.forward.resources", *map(str, args)], cwd=REPO_DIR,
                          capture_output=True, text=True, timeout=600)


def test_attention_lanes_refused_in_one_line():
    """Lanes that do not divide the head dimension: one line naming them, exit 2, before any synthesis."""
    result = resources("--only", "attention", "--attention-lanes", "3", "--no-pack")
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and "--attention-lanes 3" in errors[0] and "power of two" in errors[0], result.stderr


def test_unit_fmax_on_the_ecp5(tmp_path):
    """The exp2 unit placed and routed alone on the LFE5U-85F: nextpnr's Fmax and Yosys's cells (one DP16KD
    for the table)."""
    try:
        tool_command("NEXTPNR_ECP5")
    except ToolError:
        pytest.skip("nextpnr-ecp5 is not installed")
    result = unit_fmax(Exp2Unit(table=exp2_table(8, 16), frac_bits=8, exp_bits=16, z_bits=24), tmp_path,
                       frequency=45)
    assert result["target_mhz"] == 45 and 20 < result["fmax_mhz"] < 1000
    assert result["ecp5"]["DP16KD"] == 1 and result["ecp5"]["LUT4"] > 0
    assert (tmp_path / "nextpnr.log").is_file()
