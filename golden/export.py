"""Exporting weight ROM images of a quantized checkpoint, and reading them back.

    python -m golden.export [--checkpoint PATH] [--bits b] [--method M] [--rows R] [--cols C]
                            [--layers NAMES|all] [--calib FILE] [--out DIR]
    python -m golden.export --compiled [--checkpoint PATH] [--bits b] [--tables int|pot] [--calib FILE] [--out DIR]
    python -m golden.export --verify DIR

The images are laid out exactly as the array's Memories hold them
(`golden.rom_layout`: output channel ``n`` in column ``n % C``, slot ``n // C``;
entry ``slot * K + k``), packed by `golden.pot_format`. An export folder holds:

``<layer>/codes_cNN.hex``
    Column NN's codes of that layer, one per line, for ``$readmemh``.
``<layer>/codes_cNN.bin``
    The same codes packed into bytes, ``8 // b`` codes a byte, little-endian.
``<layer>/bias_cNN.hex``
    Column NN's integer biases, one per slot, ``acc_bits`` two's complement.
``<layer>/scales.f32``
    The per-channel scales ``s_n`` (float32, little-endian, channel order); the
    activation scale is in the manifest.
``image.bin``
    One image of every layer for the 16-bit SPRAM or SPI flash: for each group
    of ``16 // b`` columns, its words (codes of those columns side by side,
    `RomLayout.group_words`), 16-bit little-endian; offsets in the manifest.
``manifest.json``
    Format version, checkpoint path and sha256, bits, method, array shape,
    per layer its K, N, tiling, offsets and files with their sha256.

`load` reads a folder back, checks every hash, and returns the codes, biases
and scales of each layer in channel order, identical to the quantizer's.

``--compiled`` writes instead the whole integer forward compiled from the
checkpoint (`golden.compile`, `golden.artefact`: one image of every constant
and a manifest with the formats, the program and hashes); ``--verify`` checks
either kind of folder.
"""

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .artefact import is_compiled, read_compiled, read_manifest, summary, write_compiled
from .atomic import atomic_directory
from .checkpoint import sha256_of_checkpoint
from .cli import HelpFormatter, UserError, run
from .datapath import DEFAULT_ACT_BITS, check_acc_bits
from .integer_model import method_names
from .model_loading import DEFAULT_CALIB_TOKENS, load_integer_model
from .paths import BUILD_DIR, HARDWARE_MODEL_DIR
from .pot_format import DEFAULT_BITS, check_bits, pack_codes, unpack_codes
from .quantize import DEFAULT_METHOD
from .rom_layout import check_columns
from .tokens import add_calib_arguments

__all__ = ["FORMAT_VERSION", "ExportedLayer", "export", "load", "main"]

FORMAT_VERSION = 1
IMAGE_WORD_BITS = 16
DEFAULT_ROWS = 4
DEFAULT_COLUMNS = 16


@dataclass(frozen=True)
class ExportedLayer:
    """One layer read back from an export: codes (K, N), biases (N,), scales (N,), act_scale."""

    name: str
    codes: np.ndarray
    bias: np.ndarray
    scales: np.ndarray
    act_scale: float


def _sha256(path):
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _hex_lines(values, width):
    """One ``width``-bit hex word a line; codes (uint8, at most 8 bits) go through a table of every line."""
    digits = -(-width // 4)
    if isinstance(values, np.ndarray) and values.dtype == np.uint8 and width <= 8:
        table = np.frombuffer("".join(f"{v:0{digits}x}\n" for v in range(1 << width)).encode(), np.uint8)
        return table.reshape(1 << width, digits + 1)[values].tobytes().decode()
    return "".join(f"{int(v):0{digits}x}\n" for v in values)


def export(integer_model, out, *, rows, columns, checkpoint, method, acc_bits=None, progress=True):
    """Write the ROM images of `integer_model`'s layers for an array of `rows` x `columns` into `out`.

    Returns the manifest. The folder appears whole or not at all (an older export is replaced whole).
    """
    layout = integer_model.layout(columns)
    bits = integer_model.bits
    acc_bits = check_acc_bits(acc_bits or integer_model.acc_bits())
    per_word = IMAGE_WORD_BITS // bits
    groups = -(-columns // per_word)
    manifest = {
        "format_version": FORMAT_VERSION, "checkpoint": str(checkpoint),
        "checkpoint_sha256": sha256_of_checkpoint(checkpoint), "bits": bits, "method": method,
        "act_bits": integer_model.act_bits, "acc_bits": acc_bits, "rows": rows, "columns": columns,
        "code_depth": layout.code_depth, "bias_depth": layout.bias_depth, "layers": [],
    }
    with atomic_directory(out) as tmp:
        for placement in tqdm(layout.layers, desc="export", unit="layer", disable=not progress, file=sys.stderr):
            layer = integer_model.layers[placement.name]
            folder = tmp / placement.name
            folder.mkdir()
            code_span = slice(placement.code_base, placement.code_base + placement.code_depth)
            bias_span = slice(placement.bias_base, placement.bias_base + placement.slots)
            for column in range(columns):
                codes = layout.code_images[column, code_span]
                (folder / f"codes_c{column:02d}.hex").write_text(_hex_lines(codes, bits))
                (folder / f"codes_c{column:02d}.bin").write_bytes(pack_codes(codes, bits, 8).astype(np.uint8).tobytes())
                biases = layout.bias_words(column, acc_bits)[bias_span]
                (folder / f"bias_c{column:02d}.hex").write_text(_hex_lines(biases, acc_bits))
            (folder / "scales.f32").write_bytes(layer.weights.scales.astype("<f4").tobytes())
            manifest["layers"].append({
                "name": placement.name, "k": placement.k, "n": placement.n, "slots": placement.slots,
                "code_base": placement.code_base, "bias_base": placement.bias_base,
                "act_scale": float(layer.act_scale),
                "image_offsets": [group * layout.code_depth * 2 + placement.code_base * 2 for group in range(groups)],
                "bytes": -(-layer.k * layer.n * bits // 8),
                "files": {path.relative_to(tmp).as_posix(): _sha256(path) for path in sorted(folder.iterdir())},
            })
        image = np.concatenate([layout.group_words(group * per_word, per_word) for group in range(groups)])
        (tmp / "image.bin").write_bytes(image.astype("<u2").tobytes())
        manifest["image"] = {"file": "image.bin", "sha256": _sha256(tmp / "image.bin"),
                             "word_bits": IMAGE_WORD_BITS, "columns_per_word": per_word, "groups": groups,
                             "group_bytes": layout.code_depth * 2}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def _sign_extend(value, width):
    return value - (1 << width) if value >> (width - 1) else value


def load(folder):
    """Read an export back, checking every hash. Returns (manifest, {name: ExportedLayer}).

    Raises UserError naming the file when a hash does not match or a file is missing.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{folder}: export format version {manifest.get('format_version')!r} "
                        f"is not the supported {FORMAT_VERSION}")
    expected = {entry["file"]: entry["sha256"] for entry in [manifest["image"]]}
    for layer in manifest["layers"]:
        expected.update(layer["files"])
    for name, digest in expected.items():
        path = folder / name
        if not path.is_file():
            raise UserError(f"{path} is missing from the export")
        if _sha256(path) != digest:
            raise UserError(f"{path} does not match its sha256 in the manifest: the export is corrupt or edited")
    bits, columns, acc_bits = manifest["bits"], manifest["columns"], manifest["acc_bits"]
    layers = {}
    for entry in manifest["layers"]:
        name, k, n, slots = entry["name"], entry["k"], entry["n"], entry["slots"]
        codes = np.empty((k, slots * columns), np.uint8)
        bias = np.empty(slots * columns, dtype=object)
        for column in range(columns):
            raw = np.frombuffer((folder / name / f"codes_c{column:02d}.bin").read_bytes(), np.uint8)
            codes[:, column::columns] = unpack_codes(raw, bits, 8, slots * k).reshape(slots, k).T
            lines = (folder / name / f"bias_c{column:02d}.hex").read_text().split()
            bias[column::columns] = [_sign_extend(int(line, 16), acc_bits) for line in lines]
        scales = np.frombuffer((folder / name / "scales.f32").read_bytes(), "<f4").astype(np.float32)
        layers[name] = ExportedLayer(name, codes[:, :n], np.array(list(bias[:n]), dtype=object),
                                     scales, entry["act_scale"])
    return manifest, layers


def summary_table(manifest):
    """Per layer: weights, bits, bytes, and the saving against fp32 and int8."""
    bits = manifest["bits"]
    lines = [f"{'layer':<18} {'K x N':>10} {'weights':>9} {'bits':>4} {'bytes':>8} {'vs fp32':>8} {'vs int8':>8}"]
    total_weights = total_bytes = 0
    for layer in manifest["layers"]:
        weights = layer["k"] * layer["n"]
        total_weights += weights
        total_bytes += layer["bytes"]
        lines.append(f"{layer['name']:<18} {layer['k']:>4} x {layer['n']:<4} {weights:>9} {bits:>4} {layer['bytes']:>8} "
                     f"{layer['bytes'] / (4 * weights):>7.1%} {layer['bytes'] / weights:>7.1%}")
    lines.append(f"{'total':<18} {'':>10} {total_weights:>9} {bits:>4} {total_bytes:>8} "
                 f"{total_bytes / (4 * total_weights):>7.1%} {total_bytes / total_weights:>7.1%}")
    lines.append(f"{len(manifest['layers'])} layers, {total_weights:,} weights: {total_bytes:,} bytes at {bits} bits "
                 f"against {4 * total_weights:,} in fp32 ({4 * total_weights / total_bytes:.1f}x) and "
                 f"{total_weights:,} in int8 ({total_weights / total_bytes:.1f}x)")
    return "\n".join(lines)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m golden.export", formatter_class=HelpFormatter,
        description="Export the weight ROM images of a quantized GPT-2 checkpoint, or verify an export.",
        epilog="examples:\n  python -m golden.export --bits 4 --cols 16 --out build/roms\n"
               "  python -m golden.export --verify build/roms\n"
               "  python -m golden.export --compiled --out build/compiled\n"
               "  python -m golden.export --verify build/compiled")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(HARDWARE_MODEL_DIR),
                        help="Hugging Face GPT-2 directory or nanoGPT ckpt.pt")
    parser.add_argument("--bits", metavar="B", type=int, default=DEFAULT_BITS, help="weight code bits, 3..8")
    parser.add_argument("--method", metavar="M", default=DEFAULT_METHOD, help="quantization method")
    parser.add_argument("--act-bits", metavar="A", type=int, default=DEFAULT_ACT_BITS, help="activation bits")
    parser.add_argument("--rows", metavar="R", type=int, default=DEFAULT_ROWS, help="array rows")
    parser.add_argument("--cols", metavar="C", type=int, default=DEFAULT_COLUMNS, help="array columns")
    parser.add_argument("--layers", metavar="NAME", nargs="+", default=["all"], help="linear layers, or all")
    parser.add_argument("--out", metavar="DIR", default=str(BUILD_DIR / "roms"), help="export folder")
    add_calib_arguments(parser, DEFAULT_CALIB_TOKENS)
    parser.add_argument("--verify", metavar="DIR", help="check an export's hashes and contents instead")
    parser.add_argument("--compiled", action="store_true",
                        help="export the compiled whole integer forward (default folder build/compiled)")
    parser.add_argument("--tables", metavar="T", choices=("int", "pot", "pot-head"), default="int",
                        help="with --compiled: embedding and head tables as 8-bit integers (int), PoT codes of "
                             "--bits (pot), or 8-bit embeddings and a PoT head (pot-head)")
    parser.add_argument("--int-format", metavar="NAME=VALUE", nargs="+", default=[],
                        help="with --compiled: override a width of golden.compile.IntFormats, e.g. exp_frac_bits=6")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.verify and is_compiled(args.verify):
        manifest, compiled = read_compiled(args.verify)
        print(summary(manifest))
        print(f"{args.verify}: {len(compiled.tensors)} tensors, every hash matches")
        return 0
    if args.verify:
        manifest, layers = load(args.verify)
        print(summary_table(manifest))
        print(f"{args.verify}: {len(layers)} layers, every hash matches")
        return 0
    bits = check_bits(args.bits)
    if args.method not in method_names():
        raise UserError(f"Unknown quantization method {args.method!r}; choose from {', '.join(method_names())}")
    check_columns(args.cols)
    if args.rows < 1:
        raise UserError(f"Row count must be a positive integer, not {args.rows}")
    if args.compiled:
        return _export_compiled(args, bits)
    names = None if args.layers == ["all"] else args.layers
    integer_model = load_integer_model(args.checkpoint, bits=bits, method=args.method, act_bits=args.act_bits,
                                       names=names, calib=args.calib, calib_tokens=args.calib_tokens)
    manifest = export(integer_model, args.out, rows=args.rows, columns=args.cols, checkpoint=args.checkpoint,
                      method=args.method, progress=not args.quiet)
    print(summary_table(manifest))
    print(f"wrote {args.out}")
    return 0


def _export_compiled(args, bits):
    from .compile import compile_checkpoint, parse_int_formats
    from .eval import integer_formats
    if args.layers != ["all"]:
        raise UserError("--compiled exports the whole forward; --layers does not apply")
    formats = integer_formats(args.act_bits, args.tables, bits, parse_int_formats(args.int_format))
    out = BUILD_DIR / "compiled" if args.out == str(BUILD_DIR / "roms") else args.out
    compiled = compile_checkpoint(args.checkpoint, bits=bits, method=args.method, formats=formats, calib=args.calib,
                                  calib_tokens=args.calib_tokens)
    manifest = write_compiled(compiled, out, checkpoint=args.checkpoint)
    print(summary(manifest))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    run(main, "python -m golden.export")
