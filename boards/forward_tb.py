"""cocotb testbench of the whole-forward board top: the forward protocol's host client talks to it over its UART.

`boards.forward_sim.ForwardSim` builds `boards.sim_harness.SimHarness` around
`boards.forward_top.ForwardTop` with Verilator and runs this module's one
test. The job (the identity to expect, the requests) comes from the JSON file
named by ``POTGEN_FORWARD_JOB``; the host side is
`boards.forward_sim.exercise` with `boards.forward_protocol.ForwardClient`, the
client that drives a real board over a serial port, here over
`boards.board_tb.SimPort`. Each token is a progress line as it arrives; the
answers go to ``results.json`` beside the job.
"""

import json
import os
from pathlib import Path

import cocotb
from cocotb.task import bridge

from boards.board_tb import start_board


@cocotb.test()
async def forward_job(dut):
    """Run the requests of POTGEN_FORWARD_JOB through the board top, as the host would over the serial port."""
    from boards.forward_protocol import ForwardClient
    from boards.forward_sim import exercise

    job_path = Path(os.environ["POTGEN_FORWARD_JOB"])
    job = json.loads(job_path.read_text())
    port, progress, now_s = await start_board(dut, job_path, period_ps=job["period_ps"],
                                              timeout_cycles=job["timeout_cycles"])
    results = await bridge(exercise)(ForwardClient(port), job, progress=progress, clock=now_s)
    assert not int(dut.line_error.value), "the host-side UART saw a framing error or lost a byte"
    flash_error = int(dut.flash_error.value)
    if flash_error:
        from boards.spi_flash_model import FlashError
        raise AssertionError(f"the flash model saw a protocol error: {FlashError(flash_error).name}")
    job_path.with_name("results.json").write_text(json.dumps(results) + "\n")
