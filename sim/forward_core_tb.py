"""cocotb testbench of `hdl.forward.forward_core.ForwardCore` alone: generations in, tokens and cycles out.

`sim.forward_core.simulate_core` builds the core with Verilator and runs this
module's one test. The job (requests, the start payload's field offsets, the
clock period) comes from the JSON file named by ``POTGEN_FORWARD_JOB``; the
results (per request: the tokens and the cycle each was offered, counted from
the start being taken) go to ``results.json`` beside it. Inputs are driven on
falling edges; the token consumer is always ready.
"""

import json
import os
from pathlib import Path

import cocotb
import cocotb.simtime
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge


def _pack(fields, offsets):
    return sum(int(value) << offsets[name] for name, value in fields.items())


@cocotb.test()
async def forward_job(dut):
    """Run every request of the job through the core; record tokens and cycles."""
    job_path = Path(os.environ["POTGEN_FORWARD_JOB"])
    job = json.loads(job_path.read_text())
    period = job["period_ns"]
    Clock(dut.clk, period, unit="ns").start()
    dut.rst.value = 1
    dut.start__valid.value = 0
    dut.prompt__valid.value = 0
    dut.token__ready.value = 1
    await ClockCycles(dut.clk, 3)
    dut.rst.value = 0
    await ClockCycles(dut.clk, 2)

    def cycle():
        return round(cocotb.simtime.get_sim_time("ns") / period)

    results = []
    for request in job["requests"]:
        await FallingEdge(dut.clk)
        dut.start__payload.value = _pack({"prompt_length": len(request["prompt"]), "count": request["count"],
                                          "inv_temperature": request["inv_temperature"],
                                          "top_k": request["top_k"], "seed": request["seed"]}, job["offsets"])
        dut.start__valid.value = 1
        assert int(dut.start__ready.value), "the core is not idle at a new request"
        await RisingEdge(dut.clk)
        begin = cycle()
        await FallingEdge(dut.clk)
        dut.start__valid.value = 0
        for token in request["prompt"]:
            dut.prompt__payload.value = token
            dut.prompt__valid.value = 1
            while not int(dut.prompt__ready.value):
                await RisingEdge(dut.prompt__ready)
            await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            dut.prompt__valid.value = 0
        tokens, cycles = [], []
        for _ in range(request["count"]):
            if not int(dut.token__valid.value):
                await RisingEdge(dut.token__valid)
            await FallingEdge(dut.clk)
            tokens.append(int(dut.token__payload.value))
            cycles.append(cycle() - begin)
            await RisingEdge(dut.clk)                 # taken (ready is always high)
            await FallingEdge(dut.clk)
        if int(dut.busy.value):
            await FallingEdge(dut.busy)
        results.append({"tokens": tokens, "cycles": cycles, "done": cycle() - begin})
        (job_path.parent / "results.json").write_text(json.dumps(results) + "\n")
