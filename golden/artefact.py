"""The compiled integer forward as files: one image of every constant and a manifest with hashes.

    python -m golden.export --compiled [--checkpoint PATH] [--bits b] [--tables int|pot] --out DIR
    python -m golden.export --verify DIR

A compiled folder holds:

``compiled.bin``
    Every tensor of the `CompiledModel`, in the manifest's order, each
    little-endian in the narrowest of int8/uint8/int16/uint16/int32/uint32/int64
    that holds its values, starting at a multiple of 8 bytes (zero padding).
``manifest.json``
    ``kind`` ``"compiled-forward"``, format version, checkpoint path and
    sha256; the model's config, the formats (every width), the PoT bits, the
    program (the order of the operations, see `golden.compile.program_of`) and
    the two informative scales; per tensor its dtype, shape, offset, size and
    sha256; the image's size and sha256.

`read_compiled` checks every hash and returns a `CompiledModel` whose integer
forward is identical to the one that was written.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from .atomic import atomic_directory
from .checkpoint import sha256_of_checkpoint
from .cli import UserError
from .compile import CompiledModel

__all__ = ["COMPILED_KIND", "COMPILED_FORMAT_VERSION", "IMAGE_NAME", "write_compiled", "read_compiled",
           "read_manifest", "is_compiled", "summary"]

COMPILED_KIND = "compiled-forward"
COMPILED_FORMAT_VERSION = 1
IMAGE_NAME = "compiled.bin"
_ALIGN = 8
_DTYPES = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32, np.int64)


def _narrowest(values):
    values = np.asarray(values)
    low, high = (int(values.min()), int(values.max())) if values.size else (0, 0)
    for dtype in _DTYPES:
        info = np.iinfo(dtype)
        if info.min <= low and high <= info.max:
            return np.dtype(dtype).newbyteorder("<")
    raise ValueError(f"values {low}..{high} do not fit int64")


def write_compiled(compiled, out, *, checkpoint):
    """Write `compiled` into the folder `out` (whole or not at all). Returns the manifest."""
    entries, chunks, offset = [], [], 0
    for name, array in compiled.tensors.items():
        array = np.asarray(array)
        if array.dtype.kind not in "iu":
            raise ValueError(f"tensor {name!r} is {array.dtype}, not integer: the artefact holds integers only")
        data = np.ascontiguousarray(array.astype(_narrowest(array))).tobytes()
        entries.append({"name": name, "dtype": _narrowest(array).str, "shape": list(array.shape),
                        "offset": offset, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        padding = -len(data) % _ALIGN
        chunks += [data, b"\0" * padding]
        offset += len(data) + padding
    image = b"".join(chunks)
    manifest = {"kind": COMPILED_KIND, "format_version": COMPILED_FORMAT_VERSION, "checkpoint": str(checkpoint),
                "checkpoint_sha256": sha256_of_checkpoint(checkpoint), **compiled.describe(),
                "image": {"file": IMAGE_NAME, "bytes": len(image), "sha256": hashlib.sha256(image).hexdigest()},
                "tensors": entries}
    with atomic_directory(out) as tmp:
        (tmp / IMAGE_NAME).write_bytes(image)
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return manifest


def read_manifest(folder):
    """The parsed manifest.json of an export folder (either kind); UserError when absent or not JSON."""
    folder = Path(folder)
    try:
        return json.loads((folder / "manifest.json").read_text())
    except FileNotFoundError:
        raise UserError(f"{folder} is not a potgen export: no manifest.json") from None
    except json.JSONDecodeError as error:
        raise UserError(f"{folder}/manifest.json is not valid JSON: {error}") from None


def is_compiled(folder):
    """Whether `folder` holds a manifest of a compiled forward (not a ROM export)."""
    try:
        return json.loads((Path(folder) / "manifest.json").read_text()).get("kind") == COMPILED_KIND
    except (OSError, ValueError):
        return False


def read_compiled(folder):
    """Read a compiled folder back, checking every hash: (manifest, CompiledModel).

    Raises UserError naming the file or tensor that is missing or does not match.
    """
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest.get("kind") != COMPILED_KIND or manifest.get("format_version") != COMPILED_FORMAT_VERSION:
        raise UserError(f"{folder}: not a compiled forward of format version {COMPILED_FORMAT_VERSION}")
    path = folder / manifest["image"]["file"]
    if not path.is_file():
        raise UserError(f"{path} is missing from the export")
    image = path.read_bytes()
    if len(image) != manifest["image"]["bytes"] or hashlib.sha256(image).hexdigest() != manifest["image"]["sha256"]:
        raise UserError(f"{path} does not match its sha256 in the manifest: the export is corrupt or edited")
    tensors = {}
    for entry in manifest["tensors"]:
        data = image[entry["offset"]:entry["offset"] + entry["bytes"]]
        if hashlib.sha256(data).hexdigest() != entry["sha256"]:
            raise UserError(f"{path}: tensor {entry['name']!r} does not match its sha256 in the manifest")
        array = np.frombuffer(data, np.dtype(entry["dtype"])).reshape(entry["shape"])
        keep = entry["name"].endswith((".codes", ".table"))             # codes and tables keep their width
        tensors[entry["name"]] = array.astype(array.dtype.newbyteorder("=") if keep else np.int64)
    return manifest, CompiledModel.from_description(manifest, tensors)


def summary(manifest):
    """A few lines: model, formats, program length, image size."""
    formats = manifest["formats"]
    config = manifest["config"]
    return "\n".join([
        f"model      {config['n_layer']} layers, d {config['n_embd']}, {config['n_head']} heads, "
        f"vocab {config['vocab_size']}, context {config['n_positions']}",
        f"formats    w{manifest['bits']} a{formats['act_bits']} residual {formats['res_bits']} "
        f"logits {formats['logit_bits']} tables {formats['tables']}{formats['table_bits']} "
        f"head {formats['head']}{formats['head_bits']} "
        f"mult {formats['mult_bits']} exp {formats['exp_bits']}/{1 << formats['exp_frac_bits']} entries",
        f"program    {len(manifest['program'])} operations",
        f"image      {manifest['image']['bytes']} bytes in {len(manifest['tensors'])} tensors"])
