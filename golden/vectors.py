"""Golden test vectors: real activations of real layers and the accumulators the array must produce.

    python -m golden.vectors [--checkpoint PATH] [--text FILE | --data FILE.bin] [--tokens T]
                             [--bits B] [--act-bits A] [--method M] [--pe pot|int8]
                             [--layers NAMES|all] [--acc-bits W] --out DIR

The checkpoint is quantized exactly as the array holds it (`quantize_model`,
every linear layer, activation scales calibrated on the checkpoint's train
split), real text is run through it (`IntegerModel.capture`, windows of the
model's context as `golden.eval.windows` cuts them), and for each chosen layer
``<layer>.npz`` is written with:

``x``         int activations (T, K), int32
``codes``     PoT codes (K, N) uint8, or int8 weights for ``--pe int8``
``bias``      integer biases (N,)
``expected``  the accumulators (T, N): ``layer.accumulate(x, acc_bits)``
``act_scale`` the layer's activation scale, float32 scalar
``scales``    the channel scales (N,), float32

Integers too wide for int64 (accumulators of 7- and 8-bit codes) are stored as
decimal strings, never pickled; `load_vectors` gives them back as Python ints.

``manifest.json`` records the checkpoint (path and SHA-256), the format
(``pe``, ``bits``, ``act_bits``, ``acc_bits``, ``method``), the text, every
layer's shape and every file's SHA-256, and a hash of itself. `load_vectors`
refuses a directory whose any file or manifest does not match, naming the file,
and checks the expected accumulators against the golden datapath again, so
vectors are never stale.

``acc_bits`` is the exact width of the chosen layers (one array holds them all,
so nothing wraps) unless ``--acc-bits`` narrows it; then ``expected`` is wrapped
as the hardware wraps.

The output folder appears whole or not at all (`golden.atomic.atomic_directory`).
"""

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_directory
from .checkpoint import sha256_of_checkpoint
from .cli import HelpFormatter, UserError, run
from .data import default_split
from .datapath import DEFAULT_ACT_BITS, check_acc_bits, check_act_bits, int8_accumulate, pot_accumulate
from .eval import windows
from .integer_model import method_names
from .model_loading import DEFAULT_CALIB_TOKENS, checkpoint_dir, load_integer_model
from .paths import DEFAULT_MODEL_DIR
from .pot_format import DEFAULT_BITS, check_bits
from .quantize import DEFAULT_METHOD
from .rom_layout import RomLayout
from .tokens import add_calib_arguments, encode_text_file, read_token_file

__all__ = ["VectorsError", "LayerVectors", "Vectors", "FORMAT", "VERSION", "DEFAULT_TOKENS",
           "capture_vectors", "build_vectors", "write_vectors", "load_vectors", "main"]

FORMAT = "potgen-vectors"
VERSION = 1
MANIFEST = "manifest.json"

#: Tokens of text run through the model by default: a few dozen, enough to fill many rows of any array.
DEFAULT_TOKENS = 32

# Accumulators and biases up to this width are stored as int64; wider ones as decimal strings.
_INT64_BITS = 63


class VectorsError(ValueError):
    """A vector directory that cannot be used; the message is one line naming the file and the problem."""


@dataclass(frozen=True)
class LayerVectors:
    """One layer's stimulus and expected response.

    Attributes
    ----------
    name : str
    x : ndarray (T, K) int64
        Integer activations, token by token.
    codes : ndarray (K, N)
        uint8 PoT codes, or int8 weights for the INT8 reference.
    bias : ndarray (N,)
        Integer biases (int64, or Python ints when wider than 63 bits).
    expected : ndarray (T, N)
        The accumulators the array must produce (int64, or Python ints).
    act_scale : float
    scales : ndarray (N,) float32
    """

    name: str
    x: np.ndarray
    codes: np.ndarray
    bias: np.ndarray
    expected: np.ndarray
    act_scale: float
    scales: np.ndarray

    @property
    def tokens(self):
        return self.x.shape[0]

    @property
    def k(self):
        return self.codes.shape[0]

    @property
    def n(self):
        return self.codes.shape[1]

    @property
    def macs(self):
        """Multiply-accumulates the layer costs on these tokens: T * K * N."""
        return self.tokens * self.k * self.n


@dataclass(frozen=True)
class Vectors:
    """A loaded vector directory: the manifest's facts and the layers, in model order."""

    directory: Path
    manifest: dict
    layers: dict

    @property
    def pe(self):
        return self.manifest["pe"]

    @property
    def bits(self):
        """PoT code width, or None for the INT8 reference."""
        return self.manifest["bits"]

    @property
    def act_bits(self):
        return self.manifest["act_bits"]

    @property
    def acc_bits(self):
        return self.manifest["acc_bits"]

    @property
    def exact_acc_bits(self):
        return self.manifest["exact_acc_bits"]

    @property
    def method(self):
        return self.manifest["method"]

    @property
    def tokens(self):
        return self.manifest["tokens"]

    def layout(self, columns, names=None):
        """The ROM layout of the layers `names` (all by default, in model order) for `columns` columns."""
        names = list(names or self.layers)
        return RomLayout([(name, self.layers[name].codes, self.layers[name].bias) for name in names],
                         columns=columns, bits=self.bits)


# -- making ----------------------------------------------------------------------------

def expected_accumulators(pe, x, codes, bias, bits, act_bits, acc_bits):
    """The golden accumulators of one layer (the spec: `golden.datapath`)."""
    if pe == "pot":
        return pot_accumulate(x, codes, bias, bits, act_bits, acc_bits)
    return int8_accumulate(x, codes, bias, act_bits, acc_bits)


def capture_vectors(im, tokens, names=None, acc_bits=None):
    """The vectors of the layers `names` (all by default) of the IntegerModel `im` on `tokens` (T,) or (W, T).

    Returns ``(layers, acc_bits, exact_acc_bits)``: `layers` a dict name ->
    LayerVectors in model order; `acc_bits` None means the exact width of
    those layers, and the expected values wrap at a narrower one.
    """
    names = list(names or im.layers)
    exact = im.acc_bits(names)
    acc_bits = exact if acc_bits is None else check_acc_bits(acc_bits)
    captured = im.capture(tokens, names)
    layers = {}
    for name in names:
        layer = im.layers[name]
        x = captured[name].reshape(-1, layer.k)
        layers[name] = LayerVectors(name=name, x=x, codes=layer.codes, bias=layer.bias,
                                    expected=layer.accumulate(x, acc_bits), act_scale=float(layer.act_scale),
                                    scales=np.asarray(layer.weights.scales, np.float32))
    return layers, acc_bits, exact


def _store_ints(values):
    """Integers as int64 when every one fits in 63 bits, else as decimal strings (no pickle)."""
    values = np.asarray(values)
    if values.dtype != object:
        return values.astype(np.int64)
    if all(int(v).bit_length() < _INT64_BITS for v in values.flat):
        return values.astype(np.int64)
    return np.vectorize(str, otypes=[str])(values) if values.size else values.astype(str)


def _load_ints(values):
    if values.dtype.kind == "U":
        return np.vectorize(int, otypes=[object])(values) if values.size else values.astype(object)
    if values.dtype.kind != "i":
        raise TypeError(f"integers stored as {values.dtype}")
    return values.astype(np.int64)


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        for block in iter(lambda: file.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _manifest_digest(manifest):
    body = {key: value for key, value in manifest.items() if key != "manifest_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def write_vectors(out, layers, *, pe, bits, act_bits, acc_bits, exact_acc_bits, method, checkpoint=None,
                  text=None, extra=None):
    """Write `layers` (name -> LayerVectors) and their manifest to the folder `out`, atomically.

    A folder that exists must be an earlier vector folder (it holds ``manifest.json``)
    or empty: it is replaced whole, never merged, never another folder's contents.
    """
    out = Path(out)
    if out.exists():
        if not out.is_dir():
            raise UserError(f"--out {str(out)!r} is a file; vectors go to a folder")
        if any(out.iterdir()) and not (out / MANIFEST).is_file():
            raise UserError(f"--out {str(out)!r} is a non-empty folder without {MANIFEST}; "
                            f"refusing to replace it (choose a new or empty folder)")
    entries = []
    with atomic_directory(out) as tmp:
        for name, layer in layers.items():
            file = f"{name}.npz"
            np.savez(tmp / file, x=layer.x.astype(np.int32), codes=layer.codes, bias=_store_ints(layer.bias),
                     expected=_store_ints(layer.expected), act_scale=np.float32(layer.act_scale),
                     scales=np.asarray(layer.scales, np.float32))
            entries.append({"name": name, "file": file, "tokens": int(layer.tokens), "k": int(layer.k),
                            "n": int(layer.n), "sha256": _sha256(tmp / file)})
        manifest = {"format": FORMAT, "version": VERSION, "checkpoint": checkpoint, "text": text,
                    "pe": pe, "bits": bits, "act_bits": act_bits, "acc_bits": acc_bits,
                    "exact_acc_bits": exact_acc_bits, "method": method,
                    "tokens": int(next(iter(layers.values())).tokens) if layers else 0,
                    **(extra or {}), "layers": entries}
        manifest["manifest_sha256"] = _manifest_digest(manifest)
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return out


# -- loading ---------------------------------------------------------------------------

def load_vectors(directory, *, check_golden=True):
    """Read a vector folder, refusing any file whose hash does not match its manifest.

    With `check_golden` the expected accumulators are recomputed with the golden
    datapath and must agree (vectors made by another version of golden are refused).

    Raises
    ------
    VectorsError
        Missing folder or file, unreadable or hand-edited manifest, a file whose
        SHA-256 differs from the manifest, shapes that disagree with the
        manifest, expected values that disagree with golden.
    """
    directory = Path(directory)
    path = directory / MANIFEST
    if not path.is_file():
        raise VectorsError(f"{directory}: no {MANIFEST}; not a vector folder (make one with python -m golden.vectors)")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as error:
        raise VectorsError(f"{path}: not readable JSON ({error})") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise VectorsError(f"{path}: not a {FORMAT} manifest")
    if manifest.get("version") != VERSION:
        raise VectorsError(f"{path}: version {manifest.get('version')!r} is not supported; only {VERSION} "
                           f"(regenerate with python -m golden.vectors)")
    if manifest.get("manifest_sha256") != _manifest_digest(manifest):
        raise VectorsError(f"{path}: the manifest was edited after it was written (its hash does not match); "
                           f"regenerate the vectors")
    pe, bits, act_bits, acc_bits = manifest["pe"], manifest["bits"], manifest["act_bits"], manifest["acc_bits"]
    layers = {}
    for entry in manifest["layers"]:
        file = directory / entry["file"]
        if not file.is_file():
            raise VectorsError(f"{file}: missing (listed in {MANIFEST})")
        digest = _sha256(file)
        if digest != entry["sha256"]:
            raise VectorsError(f"{file}: SHA-256 {digest[:12]}... does not match the manifest's "
                               f"{entry['sha256'][:12]}...; the file was changed or corrupted, refusing it")
        try:
            with np.load(file, allow_pickle=False) as data:
                layer = LayerVectors(name=entry["name"], x=data["x"].astype(np.int64), codes=data["codes"],
                                     bias=_load_ints(data["bias"]), expected=_load_ints(data["expected"]),
                                     act_scale=float(data["act_scale"]), scales=data["scales"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            raise VectorsError(f"{file}: not a readable vector file ({error})") from None
        t, k, n = entry["tokens"], entry["k"], entry["n"]
        shapes = {"x": (t, k), "codes": (k, n), "bias": (n,), "expected": (t, n), "scales": (n,)}
        for field, shape in shapes.items():
            if getattr(layer, field).shape != shape:
                raise VectorsError(f"{file}: {field} has shape {getattr(layer, field).shape}, "
                                   f"the manifest says {shape}")
        if check_golden:
            golden = expected_accumulators(pe, layer.x, layer.codes, layer.bias, bits, act_bits, acc_bits)
            if not np.array_equal(golden, layer.expected):
                raise VectorsError(f"{file}: expected accumulators disagree with the golden datapath; "
                                   f"the vectors are stale or wrong, regenerate them")
        layers[entry["name"]] = layer
    if not layers:
        raise VectorsError(f"{path}: lists no layers")
    return Vectors(directory, manifest, layers)


# -- command line ----------------------------------------------------------------------

def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m golden.vectors", formatter_class=HelpFormatter,
        description="Golden test vectors for the array: real activations of quantized layers and the exact "
                    "accumulators, one .npz per layer plus manifest.json with every file's SHA-256.",
        epilog="examples:\n"
               "  python -m golden.vectors --out build/vectors\n"
               "  python -m golden.vectors --bits 5 --layers h.0.attn.c_attn h.0.mlp.c_fc --tokens 64 --out v5\n"
               "  python -m golden.vectors --pe int8 --text prompt.txt --out build/vectors-int8")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(DEFAULT_MODEL_DIR),
                        help="Hugging Face GPT-2 directory or nanoGPT ckpt.pt")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--text", metavar="FILE", help="UTF-8 text to run, encoded with the checkpoint's tokenizer")
    source.add_argument("--data", metavar="FILE", help="uint16 .bin token file (or UTF-8 .txt) to run; "
                                                       "None: the checkpoint's val.bin")
    parser.add_argument("--start", metavar="I", type=int, default=0, help="first token of the text used")
    parser.add_argument("--tokens", metavar="T", type=int, default=DEFAULT_TOKENS,
                        help="tokens run through the model (at most the context, or a multiple of it)")
    parser.add_argument("--bits", metavar="B", type=int, default=DEFAULT_BITS, help="PoT code width, 3..8")
    parser.add_argument("--act-bits", metavar="A", type=int, default=DEFAULT_ACT_BITS, help="activation bits, 2..16")
    parser.add_argument("--method", metavar="M", default=DEFAULT_METHOD,
                        help=f"quantizer: {', '.join(method_names())}")
    parser.add_argument("--pe", choices=("pot", "int8"), default="pot",
                        help="PoT codes, or the INT8 reference's weights")
    parser.add_argument("--layers", metavar="NAME", nargs="+", default=["all"],
                        help="linear layers to write (e.g. h.0.attn.c_attn h.0.mlp.c_fc, or comma-separated), or all")
    parser.add_argument("--acc-bits", metavar="W", type=int,
                        help="accumulator width; None: exact for the chosen layers (a narrower one wraps)")
    add_calib_arguments(parser, DEFAULT_CALIB_TOKENS)
    parser.add_argument("--out", metavar="DIR", required=True, help="output folder (replaced whole)")
    return parser.parse_args(argv)


def read_input_tokens(checkpoint, *, text=None, data=None, vocab_size):
    """The token ids of `text` (a UTF-8 file), `data` (a .bin) or the checkpoint's val split, and their source."""
    if text is not None:
        return encode_text_file(text, checkpoint, vocab_size), {"text": str(text)}
    source = Path(data) if data else default_split(checkpoint_dir(checkpoint), "val")
    if source is None:
        raise UserError(f"No --text or --data given and the checkpoint {checkpoint} has no val.bin beside it")
    return read_token_file(source, checkpoint, vocab_size), {"data": str(source)}


def build_vectors(checkpoint=None, *, text=None, data=None, start=0, tokens=DEFAULT_TOKENS, bits=DEFAULT_BITS,
                  act_bits=DEFAULT_ACT_BITS, method=DEFAULT_METHOD, pe="pot", layers=None, acc_bits=None,
                  calib=None, calib_tokens=DEFAULT_CALIB_TOKENS, out):
    """Everything `python -m golden.vectors` does after parsing; returns the output folder."""
    checkpoint = checkpoint or DEFAULT_MODEL_DIR
    # Check every argument before any work starts.
    if pe not in ("pot", "int8"):
        raise UserError(f"--pe must be pot or int8, not {pe!r}")
    bits = check_bits(bits) if pe == "pot" else None
    act_bits = check_act_bits(act_bits)
    if pe == "pot" and method not in method_names():
        raise UserError(f"Unknown quantization method {method!r}; choose from {', '.join(method_names())}")
    for option, value, least in (("--tokens", tokens, 1), ("--calib-tokens", calib_tokens, 1), ("--start", start, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise UserError(f"--{option.lstrip('-')} must be an integer of at least {least}, not {value!r}")
    if acc_bits is not None:
        acc_bits = check_acc_bits(acc_bits)
    # Every layer is quantized, so each captured layer sees the activations of the whole integer model.
    im = load_integer_model(checkpoint, bits=bits or DEFAULT_BITS, method=method, act_bits=act_bits, pe=pe,
                            calib=calib, calib_tokens=calib_tokens)
    model = im.model
    layers = [name for arg in (layers or []) for name in str(arg).split(",") if name]   # "a,b" or "a b"
    names = model.linear_names if not layers or layers == ["all"] else list(dict.fromkeys(layers))
    unknown = [name for name in names if name not in model.linear_names]
    if unknown:
        raise UserError(f"No linear layer {unknown[0]!r} in {checkpoint}; it has "
                        f"{model.linear_names[0]} .. {model.linear_names[-1]} (or all)")
    block = model.config.n_positions
    if tokens > block and tokens % block:
        raise UserError(f"--tokens {tokens} must be at most the model's context {block} or a multiple of it")
    stream, source = read_input_tokens(checkpoint, text=text, data=data, vocab_size=model.config.vocab_size)
    stream = stream[start:]
    if len(stream) < tokens:
        raise UserError(f"The text has {len(stream)} tokens from --start {start}, fewer than --tokens {tokens}")
    inputs, _ = windows(np.append(stream[:tokens], 0).astype(np.int64), min(tokens, block))
    layer_vectors, acc_bits, exact = capture_vectors(im, inputs, names, acc_bits)
    return write_vectors(
        out, layer_vectors, pe=pe, bits=bits, act_bits=act_bits, acc_bits=acc_bits, exact_acc_bits=exact,
        method=method if pe == "pot" else None,
        checkpoint={"path": str(checkpoint), "sha256": sha256_of_checkpoint(checkpoint)},
        text={**source, "start": start, "tokens": tokens},
        extra={"calibration": {"data": str(calib) if calib else "the checkpoint's train.bin, else its val.bin",
                               "tokens": calib_tokens}})


def main(argv=None):
    args = parse_args(argv)
    out = build_vectors(args.checkpoint, text=args.text, data=args.data, start=args.start, tokens=args.tokens,
                        bits=args.bits, act_bits=args.act_bits, method=args.method, pe=args.pe, layers=args.layers,
                        acc_bits=args.acc_bits, calib=args.calib, calib_tokens=args.calib_tokens, out=args.out)
    vectors = load_vectors(out)
    print(f"{'layer':<20} {'tokens':>6} {'K':>5} {'N':>5} {'MACs':>10}")
    for layer in vectors.layers.values():
        print(f"{layer.name:<20} {layer.tokens:>6} {layer.k:>5} {layer.n:>5} {layer.macs:>10}")
    print(f"{len(vectors.layers)} layers, pe {vectors.pe}, bits {vectors.bits}, act_bits {vectors.act_bits}, "
          f"acc_bits {vectors.acc_bits} -> {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main, "python -m golden.vectors")
