"""The whole-forward board top in Verilator, driven over its UART by the host client a real board gets.

`ForwardSim` builds `boards.forward_top.ForwardTop` for a compiled model and
a board (the same top `hdl.build` builds, with a fast UART and a short request
timeout), wraps it in `boards.sim_harness.SimHarness`, compiles it with
Verilator (cached by the Verilog's digest in build/forward-sim/) and runs
`boards.forward_tb` on it: `exercise` there, with
`boards.forward_protocol.ForwardClient` over `boards.board_tb.SimPort`, sends
each request and reads each answer, byte by byte through both UARTs, and
reports every token as it arrives.

A board whose codes are read from the SPI flash at reset (the iCEBreaker's:
SPRAM, `hdl.code_boot.CodeBoot`) reads them from the flash model, over the
simulated flash pins, as a real board does; the host waits for them as it
does for a real board (`boards.forward_protocol.ForwardClient.wait_for_codes`),
unless the run says otherwise.

A request is a dict: ``{"prompt": [ids], "count": n, "inv_temperature": i,
"top_k": k or None, "seed": s}`` for a GENERATE the client checks and sends,
``{"raw": hex}`` for bytes sent as they are (a malformed request, in a
test), whose answer is read back, or ``{"identify": true}`` for the board's
identity now.
"""

import json
import os
import shutil
import time
from dataclasses import replace
from pathlib import Path

from golden.paths import BUILD_DIR

from .board_sim import SIM_DIVISOR, build_top, clock_period_ps, run_test
from .forward_protocol import ForwardIdentity
from .protocol import ProtocolError, read_response

__all__ = ["ForwardSim", "exercise", "SIM_BUILD_DIR"]

SIM_BUILD_DIR = BUILD_DIR / "forward-sim"
#: The link's request timeout in simulation, in seconds of simulated time (a few hundred bytes at the
#: simulation's UART rate; the board's is 0.1 s).
SIM_TIMEOUT_S = 2e-4
#: Cycles the host waits for a byte before it gives up (far longer than a token takes).
READ_TIMEOUT_CYCLES = 50_000_000


def _identity_dict(identity):
    fields = {name: getattr(identity, name) for name in identity.__dataclass_fields__ if not name.startswith("_")}
    return dict(fields, digest=identity.digest.hex())


def exercise(client, job, *, progress=None, clock=time.perf_counter):
    """Identify the board (it must be `job`'s identity), wait for its codes if it reads them from the flash and
    the job says so (``job["wait"]``), then send each of `job`'s requests and read its answer.

    `client` is a `boards.forward_protocol.ForwardClient`. Returns one dict per request: ``status`` (the
    answer's name), and for a GENERATE ``tokens`` with ``sent_s`` and ``token_s`` (the `clock` when it was
    sent and when each token arrived); for a raw request ``payload`` (hex); for an identify ``codes_loaded``
    and ``codes_missing``. Each token is also a progress event ``{"event": "token", "request": i, "token": t}``;
    the codes' arrival is ``{"event": "codes_loaded", "seconds": s}`` (the `clock` then: from reset)."""
    say = progress or (lambda event: None)
    identity = client.identify()
    expected = ForwardIdentity(**dict(job["identity"], digest=bytes.fromhex(job["identity"]["digest"])))
    if replace(identity, codes_loaded=False, codes_missing=False) != expected:
        raise ProtocolError(f"The board is {identity}, not {expected}")
    say({"event": "identified"})
    if identity.loads_codes and job.get("wait", True):
        client.wait_for_codes(clock=clock)
        say({"event": "codes_loaded", "seconds": clock()})
    results = []
    for index, request in enumerate(job["requests"]):
        if request.get("identify"):
            now = client.identify()
            results.append({"status": "OK", "codes_loaded": now.codes_loaded, "codes_missing": now.codes_missing})
            continue
        if "raw" in request:
            client.port.write(bytes.fromhex(request["raw"]))
            status, payload = read_response(client.port.read)
            results.append({"status": status.name, "payload": payload.hex()})
            say({"event": "answer", "request": index, "status": status.name})
            continue
        result = {"status": "OK", "tokens": [], "sent_s": clock(), "token_s": []}
        try:
            for token in client.generate(request["prompt"], request["count"],
                                         inv_temperature=request["inv_temperature"], top_k=request["top_k"],
                                         seed=request["seed"]):
                result["tokens"].append(token)
                result["token_s"].append(clock())
                say({"event": "token", "request": index, "token": token})
        except ProtocolError as error:
            if error.status is None:
                raise
            result["status"] = error.status.name
        results.append(result)
    return results


class ForwardSim:
    """The forward top of `board` for `compiled`, built for Verilator (once per design), to run requests on.

    Parameters
    ----------
    compiled : golden.compile.CompiledModel
    board : str
        ``"icebreaker"`` or ``"ulx3s"``.
    context : int, optional
        Positions the top holds (default `boards.forward_top.default_context`).
    sim_dir : path
        The Verilator build cache.
    image : bytes, optional
        What the simulated flash holds instead of the top's image (a test's wrong image).
    say : callable, optional
        ``say(message)`` for a line of progress (the Verilator build).
    core_options
        More `hdl.forward.forward_core.ForwardCore` parameters.
    """

    def __init__(self, compiled, *, board="icebreaker", context=None, sim_dir=SIM_BUILD_DIR, say=None, image=None,
                 **core_options):
        from .forward_top import compose_forward
        from .sim_harness import SimHarness

        self.top = compose_forward(compiled, board=board, context=context, divisor=SIM_DIVISOR,
                                   timeout=SIM_TIMEOUT_S, **core_options)
        self.runner, self.build_dir = build_top(SimHarness(self.top, image=image), sim_dir,
                                                say or (lambda message: None))
        self.results = None
        #: Simulated seconds from reset to the codes in, in the last run (None: the board reads no codes).
        self.boot_s = None

    @property
    def identity(self):
        return self.top.identity

    def run(self, requests, *, wait=True):
        """Run `requests` (see the module) in one simulation, once the board's codes are in if it reads them
        from the flash (unless `wait` is False). A generator of progress events (dicts with ``sim_ns``; a
        ``"token"`` event for each token as it arrives); when it ends, `results` holds `exercise`'s answers and
        `boot_s` the simulated seconds from reset to the codes in. UserError, naming the log, if the simulation
        failed."""
        self.results = self.boot_s = None
        run_dir = self.build_dir / "runs" / f"{os.getpid()}-{time.monotonic_ns()}"
        run_dir.mkdir(parents=True, exist_ok=True)
        job_path = run_dir / "job.json"
        job_path.write_text(json.dumps({
            "identity": _identity_dict(self.identity), "requests": list(requests),
            "wait": wait,
            "period_ps": clock_period_ps(self.top.frequency), "timeout_cycles": READ_TIMEOUT_CYCLES}))
        results = run_dir / "results.json"
        for event in run_test(self.runner, self.build_dir, run_dir, test_module="boards.forward_tb",
                              env={"POTGEN_FORWARD_JOB": str(job_path)}, results=results):
            if event.get("event") == "codes_loaded":
                self.boot_s = event["seconds"]
            yield event
        self.results = json.loads(Path(results).read_text())
        shutil.rmtree(run_dir, ignore_errors=True)          # kept only when something went wrong

    def generate(self, requests, *, wait=True):
        """`run` to its end; returns the results."""
        for _ in self.run(requests, wait=wait):
            pass
        return self.results

    def tokens(self, prompt, count, *, inv_temperature=0, top_k=None, seed=0):
        """Yield the simulated board's tokens for one GENERATE as they arrive (the signature of
        `golden.int_forward.IntegerForward.generate`); `results` then holds its answer."""
        request = {"prompt": [int(i) for i in prompt], "count": int(count), "inv_temperature": inv_temperature,
                   "top_k": top_k, "seed": seed}
        for event in self.run([request]):
            if event["event"] == "token":
                yield event["token"]
        if self.results[0]["status"] != "OK":
            raise ProtocolError(f"GENERATE answered {self.results[0]['status']}")

    def tokens_per_s(self):
        """Tokens per second of the simulated board at its clock, UART included, over the last `tokens`
        (from the first token to the last), and the seconds from the request to the first token."""
        result = self.results[0]
        times = result["token_s"]
        rate = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else float("nan")
        return rate, (times[0] - result["sent_s"]) if times else float("nan")

    def close(self):
        """Nothing to close: each run is its own simulation."""
