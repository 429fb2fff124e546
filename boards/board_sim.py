"""A board top in Verilator, driven through cocotb by the host code that drives the real board.

`boards.run --sim` (the linear design) and `boards.generate --backend sim` (the
whole forward) both put `boards.sim_harness.SimHarness` (the top, its UART pins
wired to a host-side UART) through Verilator once per design (`build_top`,
cached by the Verilog's digest) and run a cocotb test module against it
(`run_test`), whose host side is the real host driver over `boards.board_tb.SimPort`.
The test reads its job from a file, writes progress lines (JSON) the caller
sees as they come, and writes its results to a file.
"""

import json
import threading
from pathlib import Path

from golden.cli import UserError

__all__ = ["VERILATOR_ARGS", "SIM_DIVISOR", "build_top", "run_test", "clock_period_ps"]

#: UART clock cycles per bit in simulation (the fastest the UART allows: the line is not what is tested).
SIM_DIVISOR = 4
# Verilator rejects Amaranth's Verilog on width warnings unless they are not fatal.
VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3", "--x-assign", "fast",
                  "--x-initial", "fast")
BOARD_MAKE_VARIABLES = ("OPT_FAST=-O1", "OPT_SLOW=-O0")


def clock_period_ps(frequency):
    """The simulated clock period of `frequency` Hz in ps (cocotb's clock wants an even period)."""
    return 2 * round(1e12 / frequency / 2)


def build_top(harness, sim_dir, say):
    """Compile `harness` (an Amaranth component, top ``top``) with Verilator in ``sim_dir/<digest>``, unless a
    build of the same Verilog is there; returns (runner, build_dir). `say(message)` reports a build.

    `sim.runner.build_design` with the board's flags: uninitialised state starts
    fast rather than random, and the C++ is compiled at -O1 (a third faster to
    build than the makefile's default, about as fast to run).
    """
    from sim.runner import build_design

    return build_design(harness, sim_dir, what="the board top", build_args=VERILATOR_ARGS,
                        make_variables=BOARD_MAKE_VARIABLES, say=say)


def run_test(runner, build_dir, run_dir, *, test_module, env, results):
    """Run cocotb test module `test_module` on the build, with environment `env`, in `run_dir`.

    A generator: yields each progress event (a dict, one JSON line of ``run_dir/progress.jsonl``) as the
    test writes it, and ends when the simulation does. UserError, naming the log, if the test did not
    write `results`."""
    run_dir = Path(run_dir)
    progress_file = run_dir / "progress.jsonl"
    progress_file.unlink(missing_ok=True)
    failure = []

    def simulate():
        try:
            runner.test(test_module=test_module, hdl_toplevel="top", build_dir=build_dir / "sim_build",
                        test_dir=run_dir, results_xml=str(run_dir / "results.xml"), hdl_toplevel_lang="verilog",
                        extra_env=dict(env), log_file=run_dir / "sim.log", timescale=("1ns", "1ps"))
        except (SystemExit, Exception) as error:     # noqa: BLE001 - reported with the log below
            failure.append(error)

    thread = threading.Thread(target=simulate)
    thread.start()
    seen = 0
    while True:
        alive = thread.is_alive()
        if progress_file.is_file():
            lines = progress_file.read_text().splitlines()
            for line in lines[seen:]:
                if line.endswith("}"):
                    seen += 1
                    yield json.loads(line)
        if not alive:
            break
        thread.join(0.2)
    if not Path(results).is_file():
        log = run_dir / "sim.log"
        tail = [line for line in log.read_text(errors="replace").splitlines() if "Error" in line or "error" in line] \
            if log.is_file() else []
        raise UserError(f"The simulation did not finish "
                        f"({tail[-1].strip() if tail else failure[0] if failure else 'no result'}); log: {log}")
