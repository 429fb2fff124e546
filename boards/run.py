"""Run every linear layer of a checkpoint on the board (or its simulation) and check it against golden.

    python -m boards.run [--port /dev/ttyUSB1 | --sim] [--checkpoint PATH] [--layers NAME ...] [--tokens T]

The host driver: it asks the board who it is (IDENTIFY), quantizes the
checkpoint the way that build was made (code width, columns) and checks the
build's layer-table digest, loads every code bank into SPRAM (LOAD), then for
each chosen layer selects it (LAYER) and sends the real integer activations of
``T`` tokens of the checkpoint's val text (`golden.integer_model.IntegerModel.capture`),
``max_tokens`` at a time (RUN). Every accumulator that comes back is compared
with `golden.datapath` (`golden.vectors.capture_vectors`); a table goes to stdout
and the exit status is 1 on any mismatch.

``--port`` talks to an iCEBreaker flashed with ``python -m hdl.build --board
icebreaker`` (the FT2232H's second channel, usually /dev/ttyUSB1, 3 Mbaud).
``--sim`` instead builds the same board top (``--rows/--cols/--bits/--pe`` as
hdl.build) with a fast UART, compiles it with Verilator and runs this very
driver against it through cocotb (`boards.board_tb`), UART pins and all. The
Verilator build is cached in build/board-sim/.

``--flash DIR`` writes a build's bitstream into the iCEBreaker's flash with
``iceprog`` (from icestorm), and, for a forward build that reads the flash
(``report.json``'s ``flash_image``: the core's constants, then the codes the
board reads into SPRAM at reset), its flash image at its offset
(``iceprog -o 1M constants.bin``) first: the iCE40 starts as soon as its
bitstream is written and reads its codes from the image at once.
"""

import json
import os
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from golden.cli import ArgumentParser, HelpFormatter, UserError, positive_int, run
from golden.paths import BUILD_DIR, HARDWARE_MODEL_DIR
from golden.pot_format import DEFAULT_BITS
from golden.tokens import add_calib_arguments

from .protocol import Identity, ProtocolError, code_banks

__all__ = ["exercise", "load_job", "save_results", "flash_commands", "main"]

DEFAULT_TOKENS = 8
DEFAULT_BAUD = 3_000_000
SIM_BUILD_DIR = BUILD_DIR / "board-sim"


def flash_commands(folder):
    """The ``iceprog`` command lines that write build `folder` into the iCEBreaker's flash: the flash image
    (constants and codes) at its offset (a forward build whose ``report.json`` names a ``flash_image``), then ``top.bin`` at 0.

    Raises `UserError` (one line) if the bitstream, its report or the image it names is missing.
    """
    folder = Path(folder)
    bitstream = folder / "top.bin"
    if not bitstream.is_file():
        raise UserError(f"--flash {folder}: no bitstream top.bin there (build one with python -m hdl.build)")
    commands = []
    report_path = folder / "report.json"
    image = json.loads(report_path.read_text()).get("flash_image") if report_path.is_file() else None
    if image:
        path = folder / image["file"]
        if not path.is_file() or path.stat().st_size != image["bytes"]:
            raise UserError(f"--flash {folder}: report.json names the flash image {image['file']} of "
                            f"{image['bytes']} bytes, which is not there")
        offset = image["offset"]
        commands.append(["iceprog", "-o", f"{offset >> 20}M" if offset % (1 << 20) == 0 else str(offset), str(path)])
    commands.append(["iceprog", str(bitstream)])
    return commands


def flash_board(folder, quiet=False):
    """Run `flash_commands` (UserError if iceprog is missing or fails)."""
    import subprocess

    commands = flash_commands(folder)
    if shutil.which("iceprog") is None:
        raise UserError("--flash needs iceprog (icestorm: apt-get install fpga-icestorm)")
    for command in commands:
        _say(" ".join(command), quiet)
        if subprocess.run(command).returncode:
            raise UserError(f"{' '.join(command)} failed")
    return 0


# -- the driver (the same code for the board and for the simulation) ---------------------

def exercise(client, job, *, progress=None, clock=time.perf_counter):
    """Identify, load the codes, run each layer of `job`; returns {name: accumulators (T, N)} and timings.

    `client` is a `boards.protocol.Client`; `job` a dict from `make_job`.
    """
    say = progress or (lambda event: None)
    identity = client.identify()
    expected = Identity(**job["identity"])
    wrong = identity.mismatches(expected)
    if wrong:
        detail = ", ".join(f"{name} {getattr(identity, name)!r} (expected {getattr(expected, name)!r})"
                           for name in wrong)
        raise ProtocolError(f"The board is not the build for this checkpoint: {detail}")
    say({"event": "identified"})
    start = clock()
    total = sum(len(words) for words in job["banks"])
    done = [0]

    def loaded(words):
        done[0] += words
        say({"event": "load", "words": done[0], "total": total})

    client.load_codes(job["banks"], progress=loaded)
    timings = {"load_s": clock() - start}
    results = {}
    for layer in job["layers"]:
        start = clock()
        client.select(layer["index"])
        x = layer["x"]
        chunks = [client.run(x[i:i + identity.max_tokens], layer["n"], identity.act_bits, identity.acc_bits)
                  for i in range(0, len(x), identity.max_tokens)]
        results[layer["name"]] = np.concatenate(chunks)
        timings[layer["name"]] = clock() - start
        say({"event": "layer", "name": layer["name"]})
    return {"results": results, "timings": timings}


def make_job(identity, banks, layers, **extra):
    """A job for `exercise`: the identity to expect, the code banks, and per layer (index, name, x, n)."""
    return {"identity": {name: getattr(identity, name) for name in identity.__dataclass_fields__
                         if not name.startswith("_")},
            "banks": [np.asarray(words, np.uint16) for words in banks], "layers": layers, **extra}


def save_job(path, job):
    arrays = {f"bank{i}": words for i, words in enumerate(job["banks"])}
    arrays.update({f"x{i}": layer["x"] for i, layer in enumerate(job["layers"])})
    meta = {key: value for key, value in job.items() if key not in ("banks", "layers")}
    meta["identity"] = dict(meta["identity"], digest=meta["identity"]["digest"].hex())
    meta["banks"] = len(job["banks"])
    meta["layers"] = [{key: value for key, value in layer.items() if key != "x"} for layer in job["layers"]]
    with open(path, "wb") as file:
        np.savez(file, meta=json.dumps(meta), **arrays)


def load_job(path):
    with np.load(path) as data:
        meta = json.loads(str(data["meta"]))
        meta["identity"]["digest"] = bytes.fromhex(meta["identity"]["digest"])
        meta["banks"] = [data[f"bank{i}"] for i in range(meta["banks"])]
        for i, layer in enumerate(meta["layers"]):
            layer["x"] = data[f"x{i}"]
    return meta


def _results_path(job_path):
    return Path(job_path).with_name("results.npz")


def save_results(job_path, results):
    arrays = {f"y_{name}": y for name, y in results["results"].items()}
    with open(_results_path(job_path), "wb") as file:
        np.savez(file, timings=json.dumps(results["timings"]), **arrays)


def _load_results(job_path):
    with np.load(_results_path(job_path)) as data:
        return {"results": {key[2:]: data[key] for key in data.files if key.startswith("y_")},
                "timings": json.loads(str(data["timings"]))}


# -- the checks -------------------------------------------------------------------------

def quantize(checkpoint, identity, quiet, calib=None):
    """The checkpoint quantized as the build `identity` was (code width or INT8, activation bits), calibrated
    on `calib` (``--calib``, default: the checkpoint's train.bin, else its val.bin)."""
    from golden.model_loading import load_integer_model

    pe = "int8" if identity.bits == 0 else "pot"
    _say(f"quantizing {checkpoint} ({'INT8' if pe == 'int8' else f'{identity.bits}-bit PoT'}, "
         f"{identity.columns} columns)", quiet)
    return load_integer_model(checkpoint, bits=identity.bits or DEFAULT_BITS, pe=pe, act_bits=identity.act_bits,
                              calib=calib)


def prepare(im, checkpoint, identity, names, tokens, data=None):
    """The layout of `im` for the build `identity`, and per chosen layer the activations of `tokens`
    tokens of val text (`data`, or the checkpoint's val.bin) and the accumulators golden expects;
    returns (layout, job layers, vectors)."""
    from golden.model_loading import split_tokens
    from golden.vectors import capture_vectors

    layout = im.layout(identity.columns)
    all_names = [layer.name for layer in layout.layers]
    names = names or all_names
    unknown = [name for name in names if name not in all_names]
    if unknown:
        raise UserError(f"No layer {unknown[0]!r} in {checkpoint}; it has {', '.join(all_names)}")
    text = split_tokens(checkpoint, "val", im.model.config.vocab_size, data)
    block = min(tokens, im.model.config.n_positions)
    windows = -(-tokens // block)
    if windows * block > len(text):
        raise UserError(f"The val text of {checkpoint} has only {len(text)} tokens, not {tokens}")
    text = np.asarray(text[:windows * block], dtype=np.int64).reshape(windows, block)
    vectors, _, _ = capture_vectors(im, text, names, acc_bits=identity.acc_bits)
    layers = [{"index": all_names.index(name), "name": name, "n": vectors[name].n,
               "x": vectors[name].x[:tokens]} for name in names]
    return layout, layers, vectors


def check(results, vectors, tokens):
    """Rows of the table and whether every accumulator matched."""
    rows, ok = [], True
    for name, y in results["results"].items():
        expected = np.asarray(vectors[name].expected[:tokens])
        bad = np.argwhere(np.asarray(y, dtype=object) != expected.astype(object))
        ok &= not len(bad)
        first = f"[{bad[0][0]},{bad[0][1]}] {y[tuple(bad[0])]} != {expected[tuple(bad[0])]}" if len(bad) else ""
        v = vectors[name]
        rows.append((name, v.k, v.n, len(y), len(y) * v.k * v.n, len(bad), results["timings"].get(name, 0.0), first))
    return rows, ok


def table(rows, time_label):
    header = ("layer", "K", "N", "tokens", "MACs", "mismatches", time_label, "first mismatch")
    lines = [header] + [(r[0], r[1], r[2], r[3], r[4], r[5], f"{r[6]:.4f}", r[7]) for r in rows]
    widths = [max(len(str(line[i])) for line in lines) for i in range(len(header))]
    return "\n".join("  ".join(f"{str(v):<{w}}" if i in (0, 7) else f"{str(v):>{w}}"
                               for i, (v, w) in enumerate(zip(line, widths))).rstrip() for line in lines)


def _say(message, quiet=False):
    if not quiet:
        print(f"boards.run: {message}", file=sys.stderr, flush=True)


# -- on the board ------------------------------------------------------------------------

def run_board(args):
    try:
        import serial
    except ImportError:
        raise UserError("--port needs pyserial: pip install pyserial") from None
    from .protocol import Client
    try:
        port = serial.Serial(args.port, args.baud, timeout=2.0)
    except serial.SerialException as error:
        raise UserError(f"Cannot open {args.port}: {error}") from None
    with port:
        port.reset_input_buffer()
        client = Client(port)
        identity = client.identify()
        _say(f"{args.port}: {identity.rows} x {identity.columns} array, {identity.layers} layers, "
             f"{identity.clock_hz / 1e6:g} MHz", args.quiet)
        im = quantize(args.checkpoint, identity, args.quiet, args.calib)
        layout, layers, vectors = prepare(im, args.checkpoint, identity, args.layers, args.tokens, args.data)
        job = make_job(_expected_identity(identity, layout), code_banks(layout, identity.columns_per_word), layers)
        results = exercise(client, job, progress=_progress_bar(job, args.quiet))
    return results, vectors, "seconds"


def _expected_identity(identity, layout):
    from dataclasses import replace
    from .protocol import layout_digest
    return replace(identity, digest=layout_digest(layout))


def _progress_bar(job, quiet):
    if quiet:
        return None
    from tqdm import tqdm
    bar = tqdm(total=sum(len(w) for w in job["banks"]) + len(job["layers"]), unit="step", file=sys.stderr,
               desc="load + layers", leave=False)
    state = {"load": 0}

    def progress(event):
        if event["event"] == "load":
            bar.update(event["words"] - state["load"])
            state["load"] = event["words"]
        elif event["event"] == "layer":
            bar.update(1)
        if bar.n >= bar.total:
            bar.close()
    return progress


# -- in simulation ---------------------------------------------------------------------

def run_sim(args):
    from golden.model_loading import load_integer_model

    from .board_sim import SIM_DIVISOR, build_top, clock_period_ps, run_test
    from .icebreaker import DEFAULT_FREQ_MHZ, compose_icebreaker
    from .sim_harness import SimHarness

    _say(f"quantizing {args.checkpoint} for a {args.rows} x {args.cols} array", args.quiet)
    im = load_integer_model(args.checkpoint, bits=args.bits, pe=args.pe, calib=args.calib)
    frequency = DEFAULT_FREQ_MHZ * 1e6
    top = compose_icebreaker(im, rows=args.rows, columns=args.cols, frequency=frequency, divisor=SIM_DIVISOR,
                             timeout=2e-3)
    identity = top.identity
    layout, layers, vectors = prepare(im, args.checkpoint, identity, args.layers, args.tokens, args.data)
    runner, build_dir = build_top(SimHarness(top), args.sim_dir, lambda message: _say(message, args.quiet))
    run_dir = build_dir / "runs" / f"{os.getpid()}"
    run_dir.mkdir(parents=True, exist_ok=True)
    job_path = run_dir / "job.npz"
    job = make_job(identity, code_banks(layout, identity.columns_per_word), layers, divisor=identity.divisor,
                   period_ps=clock_period_ps(frequency), timeout_cycles=40_000)
    save_job(job_path, job)
    progress = _progress_bar(job, args.quiet) or (lambda event: None)
    _say(f"simulating the board top ({identity.divisor} clocks per UART bit) ...", args.quiet)
    for event in run_test(runner, build_dir, run_dir, test_module="boards.board_tb",
                          env={"POTGEN_BOARD_JOB": str(job_path)}, results=_results_path(job_path)):
        progress(event)
    results = _load_results(job_path)
    shutil.rmtree(run_dir, ignore_errors=True)          # kept only when something went wrong
    return results, vectors, "sim s"


# -- command line -----------------------------------------------------------------------

def parse_args(argv):
    from .icebreaker import DEFAULT_COLUMNS, DEFAULT_ROWS
    parser = ArgumentParser(
        prog="python -m boards.run", formatter_class=HelpFormatter,
        description="Run every linear layer of a checkpoint on the iCEBreaker (or its simulation) "
                    "and check each accumulator against golden.",
        epilog="examples:\n  python -m boards.run --port /dev/ttyUSB1\n"
               "  python -m boards.run --sim --tokens 4\n"
               "  python -m boards.run --sim --layers h.0.attn.c_attn h.3.mlp.c_proj\n"
               "  python -m boards.run --flash build/icebreaker")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--port", metavar="DEV", help="serial port of the board, e.g. /dev/ttyUSB1")
    where.add_argument("--sim", action="store_true", help="simulate the board top in Verilator instead")
    where.add_argument("--flash", metavar="DIR", help="write build DIR into the board's flash with iceprog (its "
                                                     "bitstream, and a forward build's flash image: its constants and codes) and exit")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(HARDWARE_MODEL_DIR),
                        help="the checkpoint the bitstream was built from")
    parser.add_argument("--layers", metavar="NAME", nargs="+", default=["all"], help="layers to run, or all")
    parser.add_argument("--tokens", metavar="T", type=positive_int, default=DEFAULT_TOKENS,
                        help="tokens of val text per layer")
    parser.add_argument("--data", metavar="FILE", help="the val text: a uint16 .bin token file or a UTF-8 .txt "
                                                       "(default: the checkpoint's val.bin)")
    add_calib_arguments(parser)
    parser.add_argument("--baud", metavar="BAUD", type=positive_int, default=DEFAULT_BAUD, help="with --port")
    sim = parser.add_argument_group("with --sim, the build to simulate (as python -m hdl.build)")
    sim.add_argument("--rows", metavar="R", type=positive_int, default=DEFAULT_ROWS, help="array rows")
    sim.add_argument("--cols", metavar="C", type=positive_int, default=DEFAULT_COLUMNS, help="array columns")
    sim.add_argument("--bits", metavar="B", type=int, default=DEFAULT_BITS, help="weight code bits")
    sim.add_argument("--pe", metavar="KIND", choices=("pot", "int8"), default="pot", help="pot or int8")
    sim.add_argument("--sim-dir", metavar="DIR", default=str(SIM_BUILD_DIR), help="Verilator build cache")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if not args.port and not args.sim and not args.flash:
        parser.error("say where to run: --port DEV (a board) or --sim (or --flash DIR to write a build)")
    if args.layers == ["all"]:
        args.layers = None
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.flash:
        return flash_board(args.flash, args.quiet)
    if not Path(args.checkpoint).exists():
        raise UserError(f"No checkpoint at {args.checkpoint}")
    try:
        results, vectors, time_label = run_sim(args) if args.sim else run_board(args)
    except ProtocolError as error:
        raise UserError(str(error)) from None
    rows, ok = check(results, vectors, args.tokens)
    if args.json:
        print(json.dumps({"ok": ok, "load_s": results["timings"].get("load_s"),
                          "layers": [dict(zip(("layer", "k", "n", "tokens", "macs", "mismatches", "seconds",
                                               "first_mismatch"), row)) for row in rows]}, indent=2))
    else:
        print(table(rows, time_label))
        print(f"codes loaded in {results['timings'].get('load_s', 0.0):.3f} {time_label}; "
              f"{'every accumulator matches golden' if ok else 'MISMATCH'} "
              f"({sum(r[3] * r[2] for r in rows)} accumulators, {len(rows)} layers)")
    return 0 if ok else 1


if __name__ == "__main__":
    run(main, "python -m boards.run")
