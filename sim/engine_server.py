"""cocotb test that serves `sim.engine_session.EngineSession`: one simulation, many layer requests.

Loaded by the simulator with ``POTGEN_ENGINE_SOCKET`` (the Unix socket to
connect to) and ``POTGEN_ENGINE_PLAN`` (JSON: ports, widths, as
`sim.engine_tb.EngineTB` reads them). Each request ``(layer index, x (T, K),
N)`` streams ``x`` into the Engine token by token (``last`` on the final
value) with no idle cycles, takes results with ``ready`` held high until the
one with ``last``, and answers ``((T, N) int64 accumulators, cycles)``, or
``(message, cycles)`` if the DUT hung or ended early. ``None`` or a closed
connection ends the test.
"""

import json
import os
from multiprocessing.connection import Client

import cocotb
import numpy as np
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, RisingEdge, SimTimeoutError, with_timeout

from .engine_tb import EngineTB, StreamMonitor

SOCKET = os.environ.get("POTGEN_ENGINE_SOCKET")


async def run_batch(tb, layer, x, n):
    """Layer `layer` on the (T, K) activations `x` through the DUT: (results or message, cycles)."""
    tokens, k = x.shape
    results, done = [], Event()

    def take(data, last):
        results.append(data)
        if last or data is None or len(results) >= tokens * n:
            done.set()

    monitor = StreamMonitor(tb.clk, *tb._result_ports, width=tb.plan["acc_bits"], rng=tb.rng, callback=take,
                            **tb._result_fields)
    tb.layer.value = layer
    await RisingEdge(tb.clk)
    start = get_sim_time("ns")
    monitor.start()
    sender = cocotb.start_soon(tb.driver.send([int(v) for v in x.reshape(-1)]))
    try:
        await with_timeout(done.wait(), tb.cycle_budget(tokens, k, n) * tb.period, "ns")
    except SimTimeoutError:
        pass
    await RisingEdge(tb.clk)          # the final transfer completes at this edge
    cycles = round((get_sim_time("ns") - start) / tb.period)
    sender.cancel()
    monitor.stop()
    tb.driver.valid.value = 0
    if len(results) != tokens * n or None in results:
        return (f"the DUT gave {len(results)} of {tokens * n} results"
                f"{' (X in the data)' if None in results else ''} in {cycles} cycles"), cycles
    return np.array(results, np.int64).reshape(tokens, n), cycles


@cocotb.test(skip=SOCKET is None)
async def serve(dut):
    """Answer EngineSession's requests until it closes."""
    tb = EngineTB(dut, json.loads(os.environ["POTGEN_ENGINE_PLAN"]))
    await tb.reset()
    with Client(SOCKET, family="AF_UNIX") as conn:
        while True:
            try:
                request = conn.recv()          # the simulation waits here, as the host computes
            except EOFError:
                return
            if request is None:
                return
            conn.send(await run_batch(tb, *request))
