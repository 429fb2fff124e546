"""cocotb testbench of the whole board top: the host driver of `boards.run` talks to it over its UART.

`boards.run --sim` builds `boards.sim_harness.SimHarness` (the board top, its
UART pins wired to a host-side UART) with Verilator and runs this module's one
test. The job (codes, activations, the identity to expect) comes from the
file named by ``POTGEN_BOARD_JOB``; the host side is `boards.run.exercise`,
the very code that drives a real board over a serial port, running in a
`cocotb.task.bridge` thread whose port (`SimPort`) hands each byte to the
host-side UART. Results go to the job's results file; progress lines to its
progress file.
"""

import json
import os
from pathlib import Path

import cocotb
import cocotb.simtime
from cocotb.clock import Clock
from cocotb.queue import Queue
from cocotb.task import bridge, resume
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge, with_timeout

__all__ = ["SimPort", "start_board"]


class SimPort:
    """A byte port (`write`, `read`) on the host side of the DUT's UART, for blocking code in a bridge thread.

    The DUT is `boards.sim_harness.SimHarness`: the board top with a host-side
    UART on its pins, so each byte costs a wake-up or two rather than ten.
    A receiver task queues every byte from the start, so none is missed
    between a write and the next read. `read` returns fewer bytes than asked
    if none arrives for `timeout_ps`.
    """

    def __init__(self, dut, timeout_ps):
        self.dut, self.timeout_ps = dut, timeout_ps
        self.received = Queue()
        dut.host_tx_valid.value = 0
        cocotb.start_soon(self._receiver())
        self.write = resume(self._write)
        self.read = resume(self._read)

    # Everything is sampled and driven on falling clock edges, half a cycle from the rising edges
    # where the DUT samples and updates, so no read or write races the edge.

    async def _receiver(self):
        dut = self.dut
        while True:
            await RisingEdge(dut.host_rx_valid)      # high for one cycle per byte
            await FallingEdge(dut.clk)
            self.received.put_nowait(int(dut.host_rx_data.value))

    async def _write(self, data):
        dut = self.dut
        for byte in data:
            await FallingEdge(dut.clk)
            if not int(dut.host_tx_ready.value):
                await RisingEdge(dut.host_tx_ready)
                await FallingEdge(dut.clk)
            dut.host_tx_data.value = byte
            dut.host_tx_valid.value = 1
            await FallingEdge(dut.clk)                # taken at the rising edge between
            dut.host_tx_valid.value = 0

    async def _read(self, count):
        out = bytearray()
        try:
            while len(out) < count:
                out.append(await with_timeout(self.received.get(), self.timeout_ps, "ps"))
        except TimeoutError:
            pass
        return bytes(out)


async def start_board(dut, job_path, *, period_ps, timeout_cycles):
    """Clock and reset the harness, and make the host's port; returns (port, progress, now_s).

    ``progress(event)`` appends the event (a dict, with the simulated time) as a JSON line to
    ``progress.jsonl`` beside the job, which `boards.board_sim.run_test` hands the caller as it comes;
    ``now_s()`` is the simulated time in seconds."""
    Clock(dut.clk, period_ps, unit="ps").start()
    dut.rst.value = 1
    await ClockCycles(dut.clk, 4)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 4)
    port = SimPort(dut, timeout_ps=timeout_cycles * period_ps)
    progress_file = Path(job_path).with_name("progress.jsonl")

    def progress(event):
        event["sim_ns"] = cocotb.simtime.get_sim_time("ns")
        with open(progress_file, "a") as file:
            file.write(json.dumps(event) + "\n")

    def now_s():
        return cocotb.simtime.get_sim_time("ns") * 1e-9

    return port, progress, now_s


@cocotb.test()
async def board_job(dut):
    """Run the job of POTGEN_BOARD_JOB through the board top, as the host would over the serial port."""
    from boards.protocol import Client
    from boards.run import exercise, load_job, save_results

    job_path = Path(os.environ["POTGEN_BOARD_JOB"])
    job = load_job(job_path)
    port, progress, now_s = await start_board(dut, job_path, period_ps=job["period_ps"],
                                              timeout_cycles=job["timeout_cycles"])
    results = await bridge(exercise)(Client(port), job, progress=progress, clock=now_s)
    assert not int(dut.line_error.value), "the host-side UART saw a framing error or lost a byte"
    save_results(job_path, results)
