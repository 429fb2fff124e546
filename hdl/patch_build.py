"""The checkpoint-dependent block RAM of an iCEBreaker build, and swapping it for another checkpoint's.

The block RAMs whose contents come from the checkpoint are the bias memory
(`hdl.bias_store.BiasStore`), the host link's answer to IDENTIFY
(`boards.identity_rom.IdentityRom`, whose digest names the model, so a patched
board is known by the model it now holds) and, in a ``--codes ebr`` build, the code banks
(writable `hdl.code_store.CodeStore`s; with ``--codes spram``, the default, the
codes are in SPRAM, loaded by the host, and not in the bitstream at all). A
build (`hdl.build.build_icebreaker`) synthesises, places and routes them with
random placeholder words (`prepare`), then icebram-patches the real contents in
(`finish`), so every build goes through the same patch step. It keeps in
``patch/``:

``manifest.json``           shapes of the build (layers, columns, bits, widths) and its memories
``top.unpatched.asc``       nextpnr's bitstream with the placeholders
``<memory>.placeholder.hex``  the placeholder words, one per line

`patch` takes such a build and a `golden.export` folder of another checkpoint
of the same shapes and writes a build of it without synthesis or place and route:
the export is checked (hashes, by `golden.export.load`; shapes, against the
manifest), its biases and codes packed as the memories hold them
(`hdl.bias_store.bias_memory_words` and `golden.rom_layout.RomLayout.group_words`),
icebram swaps them in over the unpatched ``.asc``, icepack packs it, and the
output folder appears whole or not at all.
"""

import dataclasses
import json
import shutil
import sys
import time
from pathlib import Path

from golden.atomic import atomic_directory
from golden.cli import UserError
from golden.datapath import pot_acc_bits
from golden.rom_layout import RomLayout

from .bias_store import _signed_width, bias_memory_words
from .bram_patch import SLICE_WORDS, bit_slices, hex_lines, patch_asc, placeholder_words
from .code_store import CodeStore
from .toolchain import run_tool, tool_command

__all__ = ["PATCH_DIR", "FORMAT_VERSION", "prepare", "prepare_engine", "finish", "patch"]

PATCH_DIR = "patch"
FORMAT_VERSION = 1
UNPATCHED_ASC = "top.unpatched.asc"
#: Seed of the placeholder words (fixed: the same build gives the same bitstream).
PLACEHOLDER_SEED = 0x5eed


def _patchable(top):
    """(name, kind, store) of each block RAM of `top` whose contents come from the checkpoint."""
    stores = [("identity_rom", "identity", top.identity_rom), ("bias_store", "bias", top.engine.bias_store)]
    stores += [(f"code_store_{i}", "codes", store) for i, store in enumerate(top.engine.code_stores)
               if isinstance(store, CodeStore)]
    return stores


def prepare_engine(engine):
    """Give the bias store of an engine without a board top (`hdl.sweep_top.EngineHarness`) placeholder
    words, so that it is in block RAM as in a board build; returns its manifest record."""
    record, _ = _use_placeholder("bias_store", "bias", engine.bias_store, PLACEHOLDER_SEED + 1)
    return record


def _use_placeholder(name, kind, store, seed):
    width = store.memory_width
    depth = -(-store.depth // SLICE_WORDS) * SLICE_WORDS
    try:
        words = placeholder_words(width, depth, seed)
    except ValueError as error:
        raise UserError(f"the {name} memory cannot be made patchable: {error}") from None
    store.use_placeholder(words)
    return {"name": name, "kind": kind, "width": width, "depth": depth, "words": store.depth,
            "placeholder": f"{name}.placeholder.hex"}, words


def prepare(top):
    """Give each checkpoint-dependent block RAM of `top` (`_patchable`) random placeholder words;
    returns their records for the manifest. UserError if one is too narrow for icebram (under 4 bits)."""
    records, slices = [], set()
    for index, (name, kind, store) in enumerate(_patchable(top)):
        record, words = _use_placeholder(name, kind, store, PLACEHOLDER_SEED + index)
        slices.update(bit_slices(words, record["width"]))
        if kind == "codes":
            record.update(first_column=store.first_column, columns_per_word=store.columns_per_word)
        if kind == "identity":
            record.update(identity=store.identity.pack().hex())
        records.append(record)
    if len(slices) != sum(record["width"] * record["depth"] // SLICE_WORDS for record in records):
        raise UserError("two placeholder bit slices are equal; change PLACEHOLDER_SEED")   # 2**-256 odds
    return records


def finish(work, top, memories, *, pe, codes):
    """After place and route in `work`: keep the unpatched ``.asc``, the placeholders and the manifest in
    ``patch/``, patch the real contents into ``top.asc``. Returns the seconds icebram took."""
    start = time.perf_counter()
    folder = work / PATCH_DIR
    folder.mkdir()
    (work / "top.asc").replace(folder / UNPATCHED_ASC)
    stores = {name: store for name, _, store in _patchable(top)}
    for memory in memories:
        (folder / memory["placeholder"]).write_text(hex_lines(stores[memory["name"]].placeholder, memory["width"]))
    engine = top.engine
    manifest = {
        "format_version": FORMAT_VERSION, "asc": UNPATCHED_ASC, "codes": codes, "pe": pe,
        "columns": engine.columns, "bits": engine.bits, "act_bits": engine.act_bits, "acc_bits": engine.acc_bits,
        "layers": [{"name": layer.name, "k": layer.k, "n": layer.n} for layer in engine.layout.layers],
        "memories": memories,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    patch_asc(folder / UNPATCHED_ASC, work / "top.asc",
              [(m["name"], m["width"], stores[m["name"]].placeholder, stores[m["name"]].words) for m in memories],
              work=folder)
    return time.perf_counter() - start


def _contents(memory, layout):
    """The words `memory` (a manifest record) holds for `layout`, packed as the hardware packs them."""
    if memory["kind"] == "identity":     # the build's identity, naming the new model
        from boards.identity_rom import IdentityRom
        from boards.protocol import Identity, layout_digest
        built = Identity.unpack(bytes.fromhex(memory["identity"]))
        return IdentityRom.identity_words(dataclasses.replace(built, digest=layout_digest(layout)))
    if memory["kind"] == "bias":
        return bias_memory_words(layout, memory["width"])
    return [int(word) for word in layout.group_words(memory["first_column"], memory["columns_per_word"])]


def _read_manifest(build):
    path = Path(build) / PATCH_DIR / "manifest.json"
    if not (Path(build) / "report.json").is_file():
        raise UserError(f"{build} is not a finished build: no report.json")
    if not path.is_file():
        raise UserError(f"{build} has no {PATCH_DIR}/manifest.json: it was built without patchable block RAM; "
                        f"rebuild it with this hdl.build")
    manifest = json.loads(path.read_text())
    if manifest.get("format_version") != FORMAT_VERSION:
        raise UserError(f"{path}: patch manifest version {manifest.get('format_version')!r} is not the supported "
                        f"{FORMAT_VERSION}; rebuild")
    return manifest


def check_shapes(manifest, export_manifest, layers):
    """Raise UserError naming the first difference between the build (`manifest`) and the export."""
    if manifest["pe"] != "pot":
        raise UserError("only a PoT build (--pe pot) can take an export's codes; this one is --pe int8")
    for key, what in (("bits", "weight code bits"), ("columns", "array columns"), ("act_bits", "activation bits")):
        if export_manifest[key] != manifest[key]:
            raise UserError(f"the export has {export_manifest[key]} {what}, the build {manifest[key]}; "
                            f"export with the build's shapes")
    built = [layer["name"] for layer in manifest["layers"]]
    for name in built:
        if name not in layers:
            raise UserError(f"layer {name} of the build is not in the export (it holds {', '.join(layers)})")
    for name in layers:
        if name not in built:
            raise UserError(f"the export's layer {name} is not in the build (it holds {', '.join(built)})")
    for layer in manifest["layers"]:
        codes = layers[layer["name"]].codes
        if codes.shape != (layer["k"], layer["n"]):
            raise UserError(f"layer {layer['name']}: the build holds K x N = {layer['k']} x {layer['n']}, "
                            f"the export {codes.shape[0]} x {codes.shape[1]}")


def _check_widths(manifest, layout):
    bias_max = max([0] + [abs(int(b)) for b in layout.bias_images.flat])
    need = pot_acc_bits(layout.max_k, manifest["act_bits"], manifest["bits"], bias_max)
    if need > manifest["acc_bits"]:
        raise UserError(f"the export's layers need {need}-bit accumulators, the build has {manifest['acc_bits']}; "
                        f"rebuild for this checkpoint")
    (width,) = [memory["width"] for memory in manifest["memories"] if memory["kind"] == "bias"]
    for placement in layout.layers:
        span = layout.bias_images[:, placement.bias_base:placement.bias_base + placement.slots]
        need = max([2] + [_signed_width(b) for b in span.flat])
        if need > width:
            raise UserError(f"layer {placement.name}: its biases need {need} bits, the build's bias memory holds "
                            f"{width}-bit words; rebuild for this checkpoint")


def _say(message, quiet):
    if not quiet:
        print(f"hdl.build: {message}", file=sys.stderr, flush=True)


def patch(build, roms, out, *, quiet=False):
    """Write to `out` the build in `build` with the biases of the export in `roms` (see the module).

    Returns the new report dict, whose ``patch`` entry has the timings. `out` may be `build`: it is then
    replaced whole.
    """
    from boards.protocol import layout_digest
    from golden.export import load

    start = time.perf_counter()
    build, out = Path(build), Path(out)
    for variable in ("ICEBRAM", "ICEPACK"):
        tool_command(variable)
    manifest = _read_manifest(build)
    report = json.loads((build / "report.json").read_text())
    export_manifest, layers = load(roms)
    check_shapes(manifest, export_manifest, layers)
    layout = RomLayout([(layer["name"], layers[layer["name"]].codes, layers[layer["name"]].bias)
                        for layer in manifest["layers"]], columns=manifest["columns"], bits=manifest["bits"])
    _check_widths(manifest, layout)
    memories = []
    for memory in manifest["memories"]:
        lines = (build / PATCH_DIR / memory["placeholder"]).read_text().split()
        memories.append((memory["name"], memory["width"], [int(line, 16) for line in lines],
                         _contents(memory, layout)))
    _say(f"patching {', '.join(m['name'] for m in manifest['memories'])} of {build} with {roms} (icebram) ...", quiet)
    with atomic_directory(out) as work:
        shutil.copytree(build / PATCH_DIR, work / PATCH_DIR)
        for path in build.iterdir():
            if path.is_file() and path.name not in ("top.asc", "top.bin", "report.json"):
                shutil.copy2(path, work / path.name)
        stage = time.perf_counter()
        patch_asc(work / PATCH_DIR / manifest["asc"], work / "top.asc", memories, work=work / PATCH_DIR)
        icebram_seconds = time.perf_counter() - stage
        stage = time.perf_counter()
        run_tool("ICEPACK", ["top.asc", "top.bin"], cwd=work, log_path=work / "icepack.log")
        icepack_seconds = time.perf_counter() - stage
        built_model = report["model"]
        report = dict(report, model=export_manifest["checkpoint"], model_sha256=export_manifest["checkpoint_sha256"],
                      layout_digest=layout_digest(layout).hex())
        report["patch"] = {
            "from_build": str(build), "from_model": built_model,
            "roms": str(roms), "memories": [m["name"] for m in manifest["memories"]],
            "icebram_seconds": round(icebram_seconds, 2), "icepack_seconds": round(icepack_seconds, 2),
            "seconds": round(time.perf_counter() - start, 2),
            "from_layout_digest": report["layout_digest"],
        }
        (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
