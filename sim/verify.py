"""Simulation before emission: run an emitted engine folder in Verilator on real vectors of its model.

`hdl.emit` and `hdl.build` call `verify_emitted` on the files they are about
to write (the Verilog, the ROM hex files and engine.json, still in their
temporary folder) and write nothing if a single accumulator differs from
golden. The vectors are the model's own: `golden.vectors.capture_vectors`
of the integer model the engine was made from, on a few tokens of real text,
so every layer the engine holds is run through the very files the user gets.

The simulation is `sim.runner.SimBuild` of the folder's Verilog, compiled
once into ``build/sim/verify/<hash>/`` and reused while the Verilog is the
same: the ROM words are read from the hex files when the simulation starts,
so a model of the same shapes with other weights costs only the run. The run
reads a copy of the folder's hex files, in a temporary folder removed
afterwards (kept when a layer fails).
"""

import hashlib
import json
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from golden.vectors import capture_vectors, load_vectors, write_vectors

from .runner import SIM_BUILD_DIR, SimBuild, SimConfig

__all__ = ["VerifyError", "Verification", "verify_emitted"]


class VerifyError(ValueError):
    """The emitted design differs from golden on a real accumulator; the message is one line naming it."""


@dataclass(frozen=True)
class Verification:
    """What `verify_emitted` checked: layers, tokens per layer, accumulators, cycles and wall seconds."""

    layers: int
    tokens: int
    accumulators: int
    cycles: int
    seconds: float

    def summary(self):
        return (f"{self.layers} layers x {self.tokens} tokens, {self.accumulators} accumulators bit-exact "
                f"in Verilator ({self.cycles} cycles) in {self.seconds:.1f} s")


def _copy_emitter(folder):
    """A `SimBuild` emitter that copies the Verilog and engine.json of the emitted `folder` into the build's rtl/."""
    folder = Path(folder)

    def copy_emitted(layout, *, out_dir, **_):
        description = json.loads((folder / "engine.json").read_text())
        verilog = f"{description['top']}.v"
        for name in (verilog, "engine.json"):
            shutil.copy2(folder / name, Path(out_dir) / name)
        return [Path(out_dir) / verilog], description["top"], description

    return copy_emitted


def _design_key(folder):
    """What the compiled simulation depends on: the Verilog (the ROM words are read from files at run time,
    or are in the Verilog when inline) and engine.json's ports, hardware parameters and layer shapes (not
    which checkpoint or quantizer made the words)."""
    description = json.loads((Path(folder) / "engine.json").read_text())
    digest = hashlib.sha256((Path(folder) / f"{description['top']}.v").read_bytes())
    hardware = {key: value for key, value in description["parameters"].items()
                if key not in ("checkpoint", "method", "origin", "layers")}
    digest.update(json.dumps([description["ports"], description["payloads"], hardware,
                              [(layer["name"], layer["k"], layer["n"]) for layer in description["layers"]]],
                             sort_keys=True, default=str).encode())
    return digest.hexdigest()


def verify_emitted(folder, integer_model, tokens, *, names=None, acc_bits, rows, columns, columns_per_word=1,
                   seed=1, root=SIM_BUILD_DIR / "verify"):
    """Simulate the emitted engine in `folder` on `tokens` of real text through `integer_model`.

    Parameters
    ----------
    folder : path
        What `hdl.emit.emit` wrote: ``<top>.v``, the hex files, engine.json.
    integer_model : golden.integer_model.IntegerModel
        The model the engine holds; `names` (default: all its layers, in
        the engine's order) are run.
    tokens : int array (T,) or (W, T)
        Text run through the model; each layer sees its real inputs.
    acc_bits, rows, columns, columns_per_word : int
        The engine's.

    Returns
    -------
    Verification

    Raises
    ------
    VerifyError
        The first accumulator that differs (layer, token, channel, golden, got).
    sim.runner.SimError, sim.tools.SimulatorMissing
        Verilator is absent or could not build or run the design.
    """
    start = time.perf_counter()
    names = list(names or integer_model.layers)
    layers, acc_bits, exact = capture_vectors(integer_model, tokens, names, acc_bits)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="run.", dir=root))
    write_vectors(work / "vectors", layers, pe=integer_model.pe, bits=integer_model.bits,
                  act_bits=integer_model.act_bits, acc_bits=acc_bits, exact_acc_bits=exact, method=None)
    vectors = load_vectors(work / "vectors", check_golden=False)     # just made by golden
    config = SimConfig(simulator="verilator", rows=rows, cols=columns, columns_per_word=columns_per_word)
    # The compiled design is kept under root/ by its Verilog and reused whatever the ROM words; the
    # simulation runs in a copy of `folder`, reading its hex files.
    build = SimBuild(vectors, config, names=names, root=root, emitter=_copy_emitter(folder),
                     design=_design_key(folder)).build()
    shutil.copytree(folder, work / "rom")
    results = build.run(names, seed=seed, rom_dir=work / "rom")
    failed = [result for result in results if not result["ok"]]
    if failed:      # the vectors, the design and the simulation log stay for a look
        raise VerifyError(f"the emitted design differs from golden: {failed[0]['message']} (kept in {work})")
    shutil.rmtree(work, ignore_errors=True)
    return Verification(layers=len(results), tokens=layers[names[0]].tokens,
                        accumulators=sum(layer.expected.size for layer in layers.values()),
                        cycles=sum(result["cycles"] or 0 for result in results),
                        seconds=time.perf_counter() - start)


def verify_in_background(integer_model, tokens, like):
    """Emit the engine of `integer_model` for a board build and start simulating it; returns a Future.

    The engine emitted is `like` (the `hdl.engine.Engine` the board top
    holds) remade by `hdl.emit.make_engine` with every parameter of it (layout,
    rows, widths, PE, columns per word, result depth, broadcast rows) and its
    code ROMs as hex files where the board has SPRAM or block RAM. The
    Amaranth conversion runs here, in the caller's thread; Verilator's build
    and run go on in a thread while the caller synthesizes. The Future's
    result is the `Verification`; it raises what `verify_emitted` raises.
    """
    import warnings
    from concurrent.futures import ThreadPoolExecutor

    from hdl.emit import emit, layer_scales, make_engine

    engine = make_engine(like.layout, rows=like.rows, act_bits=like.act_bits, acc_bits=like.acc_bits, pe=like.pe,
                         columns_per_word=like.columns_per_word, result_depth=like.result_depth,
                         broadcast_rows=like.broadcast_rows, broadcast_columns=like.broadcast_columns)
    root = SIM_BUILD_DIR / "verify"
    root.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="emitted.", dir=root))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # amaranth's notes on unused parts of components
        emit(engine, layer_scales(integer_model), folder / "engine", parameters={"origin": "hdl.build"})

    def verify():
        try:
            return verify_emitted(folder / "engine", integer_model, tokens, names=[p.name for p in like.layout.layers],
                                  acc_bits=engine.acc_bits, rows=engine.rows, columns=engine.columns,
                                  columns_per_word=engine.columns_per_word, root=root)
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="verify")
    future = executor.submit(verify)
    executor.shutdown(wait=False)
    return future
