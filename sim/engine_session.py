"""A long-lived RTL simulation of the engine holding every layer of an integer model, serving requests.

    with EngineSession(integer_model, rows=1, columns=16) as session:
        acc = session.accumulate("h.0.mlp.c_fc", x_int)      # == integer_model.layers[name].accumulate(x_int)

The engine for ``integer_model.layout(columns)`` is emitted and compiled by
`sim.runner.SimBuild` (its build folder under ``build/sim/`` is reused when up
to date). The simulator is started once, by ``cocotb_tools.runner`` from a
daemon thread (the simulator itself is a child process), with the test module
`sim.engine_server`: that test connects back to a Unix socket in a private
temporary folder (its path in ``POTGEN_ENGINE_SOCKET``) and serves requests
``(layer index, int activations (T, K), N)`` with ``((T, N) accumulators, cycles)``
until the connection says ``None`` or closes. `close` (also at exit, or
leaving the ``with`` block) ends the simulation and waits for it.
"""

import atexit
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from types import SimpleNamespace

import numpy as np

from golden.paths import REPO_DIR

from .runner import _TIMESCALE, SimBuild, SimConfig, SimError

__all__ = ["EngineSession"]

_CONNECT_TIMEOUT_S = 600      # the simulator loads megabytes of ROM initialisers before the test starts


class _ModelVectors:
    """What `SimBuild` reads of a vector folder, taken from an integer model (no vectors are written)."""

    def __init__(self, integer_model):
        self.model = integer_model
        self.directory = "<integer model>"
        self.pe, self.bits, self.act_bits = integer_model.pe, integer_model.bits, integer_model.act_bits
        self.acc_bits = integer_model.acc_bits()
        self.layers = {name: SimpleNamespace(act_scale=layer.act_scale, scales=layer.weights.scales)
                       for name, layer in integer_model.layers.items()}

    def layout(self, columns, names=None):
        return self.model.layout(columns, names)


class EngineSession:
    """The engine of `integer_model` in simulation, kept running across `accumulate` calls.

    Raises `sim.tools.SimulatorMissing` if the simulator is not installed and
    `sim.runner.SimError` if the simulation cannot be built or dies.
    """

    def __init__(self, integer_model, *, rows=1, columns=16, simulator="verilator", seed=1):
        self.integer_model = integer_model
        self.build = SimBuild(_ModelVectors(integer_model), SimConfig(simulator=simulator, rows=rows, cols=columns))
        self.build.build()
        self._index = {name: self.build.layer_index(name) for name in self.build.names}
        self._cycles, self._conn, self._failure, self._broken = 0, None, [], False
        self._folder = tempfile.mkdtemp(prefix="potgen-engine-")      # mode 0700: only this user connects
        self.log = self.build.directory / "runs" / f"session-{os.getpid()}-{id(self):x}.log"
        self.log.parent.mkdir(parents=True, exist_ok=True)
        path = os.path.join(self._folder, "engine.sock")
        server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            server.bind(path)
            server.listen(1)
            server.settimeout(0.5)
            self._thread = threading.Thread(target=self._simulate, args=(path, seed), daemon=True,
                                            name="engine-session")
            self._thread.start()
            atexit.register(self.close)
            deadline = time.monotonic() + _CONNECT_TIMEOUT_S
            while self._conn is None:
                try:
                    client, _ = server.accept()
                except socket.timeout:
                    if not self._thread.is_alive() or time.monotonic() > deadline:
                        self._broken = True
                        raise SimError(f"The engine simulation did not start "
                                       f"({self._failure[0] if self._failure else 'no connection'}); "
                                       f"log: {self.log}") from None
                    continue
                client.setblocking(True)
                self._conn = Connection(client.detach())
        except BaseException:
            self.close()
            raise
        finally:
            server.close()

    def _simulate(self, path, seed):
        build = self.build
        plusargs = (["+verilator+rand+reset+2", f"+verilator+seed+{seed % (1 << 31) or 1}"]
                    if build.config.simulator == "verilator" else [])
        if str(REPO_DIR) not in sys.path:
            sys.path.append(str(REPO_DIR))    # the runner gives the simulator's Python our sys.path
        try:
            build._runner().test(
                test_module="sim.engine_server", hdl_toplevel=build.top, hdl_toplevel_lang="verilog",
                build_dir=build.sim_dir, test_dir=build.rtl_dir, results_xml=str(self.log.with_suffix(".xml")),
                seed=seed, plusargs=plusargs, log_file=self.log, timescale=_TIMESCALE,
                extra_env={"POTGEN_ENGINE_SOCKET": path, "POTGEN_ENGINE_PLAN": json.dumps(self._plan())})
        except BaseException as error:     # noqa: BLE001 - cocotb's runner exits on a failed test
            self._failure.append(error)

    def _plan(self):
        """What `sim.engine_server` needs to drive the DUT (the plan of `sim.engine_tb.EngineTB`)."""
        build = self.build
        return {"ports": build.ports, "act_bits": build.vectors.act_bits, "acc_bits": build.vectors.acc_bits,
                "rows": build.config.rows, "cols": build.config.cols, "seed": 0, "valid_gap": 0.0,
                "ready_stall": 0.0, "period_ns": 10}

    @property
    def cycles(self):
        """Clock cycles simulated by all `accumulate` calls so far."""
        return self._cycles

    def accumulate(self, name, x_int):
        """The (T, N) int64 accumulators of layer `name` for the int activations `x_int` (T, K), by the RTL."""
        if self._conn is None:
            raise SimError("The engine session is closed")
        layer = self.integer_model.layers[name]
        x = np.asarray(x_int, np.int64).reshape(-1, layer.k)
        try:
            self._conn.send((self._index[name], x, layer.n))
            acc, cycles = self._conn.recv()
        except (EOFError, OSError):
            acc = f"the simulation ended ({self._failure[0] if self._failure else 'no answer'})"
        if isinstance(acc, str):          # the DUT hung, or the simulator died: this session is over
            self._broken = True
            self.close()
            raise SimError(f"layer {name}: {acc}; log: {self.log}")
        self._cycles += cycles
        return acc

    def close(self):
        """End the simulation (idempotent) and wait for the simulator to exit."""
        atexit.unregister(self.close)
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.send(None)
            except OSError:
                pass
            conn.close()
        thread = getattr(self, "_thread", None)
        if thread is not None and thread is not threading.current_thread():
            thread.join(60)
            if not (self._broken or self._failure or thread.is_alive()):      # keep the log of a failure
                for file in (self.log, self.log.with_suffix(".xml")):
                    file.unlink(missing_ok=True)
        shutil.rmtree(self._folder, ignore_errors=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
