"""cocotb testbench of the emitted Engine: every planned layer, bit-exact against golden vectors.

The simulator loads this module with the environment variable ``POTGEN_SIM_PLAN``
naming a JSON plan written by `sim.runner` (vector folder, layers to run and
their index on the ``layer`` port, stream port names and payload fields,
random seed, valid-gap and ready-stall probabilities, where to write results).
There is one cocotb test per layer (`cocotb.parametrize`; cocotb names them by
index, the log and the results file by layer). Each layer's result (cycles,
wall time, first mismatch) is appended to the plan's results file as one JSON
line, which `sim.runner` follows for progress.

Per layer the TB drives ``T * K`` activations (token by token, ``last`` on the
final one) with random idle cycles between them, takes ``T * N`` results under
random ``ready`` backpressure, and a scoreboard compares each against golden in
order (token by token, channels in order, ``last`` on the final result only).
The first mismatch fails the test with layer / token / channel / expected / got.

Streams are sampled in the ReadOnly phase of each cycle (what the DUT will see
at the coming edge) and driven just after the edge, the same on every
simulator. While a stream is stalled the driver and monitor sleep until the
DUT's ``ready`` / ``valid`` rises instead of waking every cycle, so long
compute phases cost no Python time.
"""

import json
import os
import random
import time
from dataclasses import dataclass, field

import cocotb
from cocotb.clock import Clock
from cocotb.simtime import get_sim_time
from cocotb.triggers import Event, ReadOnly, RisingEdge, with_timeout
from cocotb.triggers import SimTimeoutError

__all__ = ["StreamDriver", "StreamMonitor", "Scoreboard", "Mismatch", "EngineTB"]

PLAN = None
if "POTGEN_SIM_PLAN" in os.environ:
    with open(os.environ["POTGEN_SIM_PLAN"]) as _file:
        PLAN = json.load(_file)


def _high(handle):
    """Whether a 1-bit handle is 1 (X/Z is not)."""
    value = handle.value
    return value.is_resolvable and bool(value)


def _low(handle):
    """Whether a 1-bit handle is 0 (X/Z is not)."""
    value = handle.value
    return value.is_resolvable and not bool(value)


class StreamDriver:
    """Drives a valid/ready stream whose payload packs ``data`` (signed, `width` bits from bit
    `data_lsb`) and ``last`` (bit `last_bit`) into one vector.

    Between values it leaves `valid` low for a random number of cycles (each
    cycle with probability `gap`), as a producer that is not always ready.
    """

    def __init__(self, clk, valid, ready, payload, *, width, rng, gap=0.0, data_lsb=0, last_bit=None):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.width, self.rng, self.gap = width, rng, gap
        self.data_lsb, self.last_bit = data_lsb, width if last_bit is None else last_bit
        self.valid.value = 0

    async def send(self, values):
        """Send `values` (ints), ``last`` set on the final one; returns when the final one is taken."""
        mask = (1 << self.width) - 1
        count = len(values)
        for index, value in enumerate(values):
            while self.gap and self.rng.random() < self.gap:
                self.valid.value = 0
                await RisingEdge(self.clk)
            self.payload.value = ((int(value) & mask) << self.data_lsb) | (int(index == count - 1) << self.last_bit)
            self.valid.value = 1
            await ReadOnly()
            while not _high(self.ready):
                await RisingEdge(self.ready)   # sleep through a stall
                await ReadOnly()
            await RisingEdge(self.clk)         # the transfer happens at this edge
        self.valid.value = 0


class StreamMonitor:
    """Takes values from a valid/ready stream, holding `ready` low at random (probability `stall`).

    Each transfer ``(data, last)`` goes to `callback`; data is sign-extended from
    `width` bits, and an unresolvable (X/Z) payload is passed as ``(None, None)``.
    """

    def __init__(self, clk, valid, ready, payload, *, width, rng, stall=0.0, callback, data_lsb=0, last_bit=None):
        self.clk, self.valid, self.ready, self.payload = clk, valid, ready, payload
        self.width, self.rng, self.stall, self.callback = width, rng, stall, callback
        self.data_lsb, self.last_bit = data_lsb, width if last_bit is None else last_bit
        self.ready.value = 0
        self._task = None

    def start(self):
        self._task = cocotb.start_soon(self._run())

    def stop(self):
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self.ready.value = 0

    def _decode(self):
        value = self.payload.value
        if not value.is_resolvable:
            return None, None
        raw = value.to_unsigned()
        data = (raw >> self.data_lsb) & ((1 << self.width) - 1)
        if data >> (self.width - 1):
            data -= 1 << self.width
        return data, (raw >> self.last_bit) & 1

    async def _run(self):
        while True:
            ready = not (self.stall and self.rng.random() < self.stall)
            self.ready.value = int(ready)
            await ReadOnly()
            if not _high(self.valid):
                await RisingEdge(self.valid)   # sleep while the DUT has nothing to say
                await ReadOnly()
            if ready and _high(self.valid):
                self.callback(*self._decode())
            await RisingEdge(self.clk)


@dataclass
class Mismatch:
    """The first disagreement of a layer: where, what golden expected, what the DUT gave."""

    layer: str
    token: int
    channel: int
    field: str          # "data", "last", "busy", or "hang"
    expected: object
    got: object

    def __str__(self):
        if self.field == "hang":
            return f"layer {self.layer}: {self.got}"
        if self.field == "busy":
            return f"layer {self.layer}: {self.got}"
        return (f"layer {self.layer} token {self.token} channel {self.channel}: "
                f"{self.field} expected {self.expected} got {self.got}")

    def as_dict(self):
        return {"layer": self.layer, "token": self.token, "channel": self.channel, "field": self.field,
                "expected": self.expected, "got": self.got}


@dataclass
class Scoreboard:
    """Compares results, in order, with golden's (T, N) accumulators; keeps the first mismatch."""

    layer: str
    expected: list          # T lists of N ints
    received: int = 0
    mismatch: Mismatch = None
    done: Event = field(default_factory=Event)

    @property
    def total(self):
        return len(self.expected) * len(self.expected[0])

    def __call__(self, data, last):
        index = self.received
        self.received += 1
        if index >= self.total:
            self._fail(index, "data", "no more results", data)
            return
        n = len(self.expected[0])
        token, channel = divmod(index, n)
        want_last = int(index == self.total - 1)
        if data != self.expected[token][channel]:
            self._fail(index, "data", self.expected[token][channel], "X" if data is None else data)
        elif last != want_last:
            self._fail(index, "last", want_last, "X" if last is None else last)
        if self.received == self.total:
            self.done.set()

    def _fail(self, index, what, expected, got):
        if self.mismatch is None:
            token, channel = divmod(index, len(self.expected[0]))
            self.mismatch = Mismatch(self.layer, token, channel, what, expected, got)
        self.done.set()


class EngineTB:
    """Clock, reset, activation driver, result monitor and scoreboard around the Engine `dut`."""

    def __init__(self, dut, plan):
        self.dut, self.plan = dut, plan
        ports = plan["ports"]
        self.clk, self.rst = getattr(dut, ports["clk"]), getattr(dut, ports["rst"])
        self.layer = getattr(dut, ports["layer"])
        self.busy = getattr(dut, ports["busy"]) if ports.get("busy") else None
        self.period = plan.get("period_ns", 10)
        self.rng = random.Random(plan["seed"])
        fields = ports["payloads"]
        self.driver = StreamDriver(self.clk, *(getattr(dut, ports["activations"][s]) for s in ("valid", "ready", "payload")),
                                   width=plan["act_bits"], rng=self.rng, gap=plan["valid_gap"],
                                   data_lsb=fields["activations"]["data"][0], last_bit=fields["activations"]["last"])
        self._result_fields = {"data_lsb": fields["results"]["data"][0], "last_bit": fields["results"]["last"]}
        self._result_ports = [getattr(dut, ports["results"][s]) for s in ("valid", "ready", "payload")]
        self.layer.value = 0

    async def reset(self, cycles=4):
        Clock(self.clk, self.period, unit="ns").start()
        self.rst.value = 1
        for _ in range(cycles):
            await RisingEdge(self.clk)
        self.rst.value = 0
        await RisingEdge(self.clk)

    def cycle_budget(self, tokens, k, n):
        """Cycles after which the DUT counts as hung: generous for any array shape and the random stalls."""
        rows, cols = self.plan.get("rows", 1), self.plan.get("cols", 1)
        slots = -(-n // cols)
        ideal = -(-tokens // rows) * slots * (k + rows + cols) + tokens * (k + n)
        slack = 1 / max(0.05, 1 - max(self.plan["valid_gap"], self.plan["ready_stall"]))
        return int(8 * slack * ideal) + 20_000

    async def _expect_quiet(self, board, layer, cycles=4):
        """After the last result nothing more may come out, even with ready held high, and (if the
        DUT has a ``busy`` output) the engine is idle again."""
        ready, valid = self._result_ports[1], self._result_ports[0]
        ready.value = 1
        for cycle in range(cycles):
            await ReadOnly()
            if _high(valid):
                board.mismatch = Mismatch(layer.name, layer.tokens, 0, "data", "no more results",
                                          "valid high after the last result")
            elif cycle == cycles - 1 and self.busy is not None and not _low(self.busy):
                board.mismatch = Mismatch(layer.name, layer.tokens, 0, "busy", 0,
                                          f"busy {self.busy.value} {cycles} cycles after the last result")
            await RisingEdge(self.clk)
            if board.mismatch is not None:
                break
        ready.value = 0

    async def run_layer(self, name, vectors):
        """Run layer `name` once; returns a result dict (and never raises for a mismatch)."""
        layer = vectors.layers[name]
        expected = [[int(v) for v in row] for row in layer.expected]
        board = Scoreboard(name, expected)
        monitor = StreamMonitor(self.clk, *self._result_ports, width=self.plan["acc_bits"],
                                rng=self.rng, stall=self.plan["ready_stall"], callback=board, **self._result_fields)
        self.layer.value = self.plan["layer_index"][name]
        await RisingEdge(self.clk)
        start_wall, start_ns = time.perf_counter(), get_sim_time("ns")
        monitor.start()
        sender = cocotb.start_soon(self.driver.send([int(v) for v in layer.x.reshape(-1)]))
        budget = self.cycle_budget(layer.tokens, layer.k, layer.n)
        try:
            await with_timeout(board.done.wait(), budget * self.period, "ns")
        except SimTimeoutError:
            board.mismatch = Mismatch(name, board.received // layer.n, board.received % layer.n, "hang",
                                      None, f"DUT hung: {board.received} of {board.total} results after "
                                            f"{budget} cycles")
        await RisingEdge(self.clk)  # the final transfer completes at this edge (and leaves the ReadOnly phase)
        cycles = round((get_sim_time("ns") - start_ns) / self.period)
        wall = time.perf_counter() - start_wall
        sender.cancel()
        monitor.stop()
        self.driver.valid.value = 0
        if board.mismatch is None:
            await self._expect_quiet(board, layer)
        return {"layer": name, "tokens": layer.tokens, "k": layer.k, "n": layer.n, "macs": layer.macs,
                "cycles": cycles, "wall_s": wall, "ok": board.mismatch is None,
                "mismatch": None if board.mismatch is None else board.mismatch.as_dict(),
                "message": None if board.mismatch is None else str(board.mismatch)}


_VECTORS = None


def _vectors():
    global _VECTORS
    if _VECTORS is None:
        from golden.vectors import load_vectors
        _VECTORS = load_vectors(PLAN["vectors"], check_golden=False)  # sim.runner checked them already
    return _VECTORS


def _record(result):
    with open(PLAN["results"], "a") as file:
        file.write(json.dumps(result) + "\n")


@cocotb.test(skip=PLAN is None)
@cocotb.parametrize(layer=PLAN["layers"] if PLAN else ["none"])
async def layer_matches_golden(dut, layer):
    """One layer of the golden vectors through the Engine, bit-exact."""
    dut._log.info(f"layer {layer}")
    tb = EngineTB(dut, PLAN)
    await tb.reset()
    result = await tb.run_layer(layer, _vectors())
    _record(result)
    assert result["ok"], result["message"]
