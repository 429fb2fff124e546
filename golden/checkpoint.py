"""Loading GPT-2 checkpoints into one structure, :class:`golden.gpt2.GPT2`.

Two formats are read:

- a Hugging Face GPT-2 directory: ``config.json`` (``model_type`` "gpt2") and
  ``model.safetensors`` (or a sharded ``model.safetensors.index.json``), else
  ``pytorch_model.bin``. Its Conv1D weights are already ``(in, out)``.
- a nanoGPT ``ckpt.pt`` (the file, or a directory holding it). nanoGPT's
  ``nn.Linear`` weights are ``(out, in)`` and are transposed; its GELU is the
  exact one; its head is tied to ``wte``; with ``bias=False`` it has no biases
  at all (linear layers and layer norms), which become explicit zeros.

safetensors are read with numpy only; torch is imported only for the
torch-pickle formats (``pytorch_model.bin``, ``ckpt.pt``).

Every problem with the input raises :class:`CheckpointError`, one line that
names the path and the offending value.
"""

import hashlib
import json
from pathlib import Path

import numpy as np

from .gpt2 import GPT2, GPT2Config

__all__ = ["CheckpointError", "load_checkpoint", "sha256_of_checkpoint"]

#: nanoGPT keeps these as ``nn.Linear`` weights, ``(out, in)``; GPT2 wants ``(in, out)``.
NANOGPT_TRANSPOSED = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")

#: nanoGPT has these only when ``bias=True``.
NANOGPT_BIASES = ("ln_1.bias", "attn.c_attn.bias", "attn.c_proj.bias", "ln_2.bias", "mlp.c_fc.bias", "mlp.c_proj.bias")

_TORCH_HINT = "reading it needs torch: pip install torch==2.13.0"


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded; the message is one line naming the bad value."""


def load_checkpoint(path):
    """Load the GPT-2 checkpoint at ``path`` as a :class:`GPT2`.

    ``path`` is a Hugging Face GPT-2 directory, a nanoGPT ``ckpt.pt`` file, or
    a directory holding ``ckpt.pt``.

    Raises
    ------
    CheckpointError
        The path does not exist or is neither format; ``model_type`` is not
        gpt2; no weight file; a tensor is missing, unexpected, of the wrong
        shape or not finite; the activation is not supported.
    """
    path = Path(path)
    kind, files = _resolve(path)
    if kind == "hf":
        config, params = _read_hf(path, files)
    else:
        config, params = _read_nanogpt(files[0])
    try:
        return GPT2(config, params)
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None


def sha256_of_checkpoint(path):
    """Hex SHA-256 of the weight file(s) :func:`load_checkpoint` reads at ``path``.

    For one file it is that file's plain ``sha256sum``; a sharded checkpoint
    hashes its shards' bytes one after the other, in file-name order.
    """
    _, files = _resolve(Path(path))
    digest = hashlib.sha256()
    for file in files:
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


# -- finding the files ---------------------------------------------------------------

def _resolve(path):
    """``("hf", weight files)`` or ``("nanogpt", [ckpt.pt])`` for ``path``."""
    if not path.exists():
        raise CheckpointError(f"Checkpoint path {str(path)!r} does not exist")
    if path.is_file():
        if path.suffix in (".pt", ".pth", ".ckpt"):
            return "nanogpt", [path]
        raise CheckpointError(f"Checkpoint file {str(path)!r} is not a nanoGPT .pt file; "
                              f"for a Hugging Face checkpoint pass its directory")
    if (path / "config.json").is_file():
        if (path / "model.safetensors").is_file():
            return "hf", [path / "model.safetensors"]
        if (path / "model.safetensors.index.json").is_file():
            index = _read_json(path / "model.safetensors.index.json")
            shards = sorted(set(index.get("weight_map", {}).values()))
            if not shards:
                raise CheckpointError(f"{path}: model.safetensors.index.json names no shards")
            for shard in shards:
                if not (path / shard).is_file():
                    raise CheckpointError(f"{path}: shard {shard!r} of model.safetensors.index.json does not exist")
            return "hf", [path / shard for shard in shards]
        if (path / "pytorch_model.bin").is_file():
            return "hf", [path / "pytorch_model.bin"]
        raise CheckpointError(f"{path}: no weight file; expected model.safetensors or pytorch_model.bin "
                              f"beside config.json")
    if (path / "ckpt.pt").is_file():
        return "nanogpt", [path / "ckpt.pt"]
    raise CheckpointError(f"Directory {str(path)!r} holds neither config.json (Hugging Face GPT-2) nor ckpt.pt (nanoGPT)")


def _read_json(file):
    try:
        return json.loads(Path(file).read_text())
    except (OSError, ValueError) as error:
        raise CheckpointError(f"{file}: not readable JSON ({error})") from None


# -- Hugging Face ----------------------------------------------------------------------

def _read_hf(path, files):
    cfg = _read_json(path / "config.json")
    where = path / "config.json"
    if cfg.get("model_type") != "gpt2":
        raise CheckpointError(f"{where}: model_type {cfg.get('model_type')!r} is not supported; only 'gpt2'")
    for key in ("n_embd", "n_layer", "n_head", "vocab_size"):
        if key not in cfg:
            raise CheckpointError(f"{where}: missing key {key!r}")
    n_positions = cfg.get("n_positions", cfg.get("n_ctx"))
    if n_positions is None:
        raise CheckpointError(f"{where}: missing key 'n_positions' (or 'n_ctx')")
    options = _hf_options(cfg, where)
    state = {}
    for file in files:
        state.update(_read_safetensors(file) if file.suffix == ".safetensors" else _read_torch(file))
    params = {}
    for key, array in state.items():
        name = key.removeprefix("transformer.")
        if name.endswith((".attn.bias", ".attn.masked_bias")):  # causal-mask buffers, not parameters
            continue
        params[{"wte.weight": "wte", "wpe.weight": "wpe"}.get(name, name)] = array
    tied = _split_head(params, path, tied_in_config=cfg.get("tie_word_embeddings", True))
    return _config(where, vocab_size=cfg["vocab_size"], n_positions=n_positions, n_embd=cfg["n_embd"],
                   n_layer=cfg["n_layer"], n_head=cfg["n_head"], tied_head=tied, **options), params


#: config.json key -> (GPT2Config field, transformers' default) of the options that change the logits.
HF_OPTIONS = {
    "activation_function": ("activation", "gelu_new"),
    "layer_norm_epsilon": ("layer_norm_epsilon", 1e-5),
    "n_inner": ("n_inner", None),
    "scale_attn_weights": ("scale_attn_weights", True),
    "scale_attn_by_inverse_layer_idx": ("scale_attn_by_inverse_layer_idx", False),
    "reorder_and_upcast_attn": ("reorder_and_upcast_attn", False),
}


def _hf_options(cfg, where):
    """GPT2Config fields of a config.json's options; a value golden cannot compute is one line naming the key."""
    if cfg.get("add_cross_attention", False) is not False:
        raise CheckpointError(f"{where}: add_cross_attention {cfg['add_cross_attention']!r} is not supported; "
                              f"only false (a decoder without an encoder)")
    options = {field: cfg.get(key, default) for key, (field, default) in HF_OPTIONS.items()}
    try:
        GPT2Config(vocab_size=1, n_positions=1, n_embd=1, n_layer=1, n_head=1, **options)
    except ValueError as error:                 # GPT2Config's message names its field: name the key instead
        field, rest = str(error).split(" ", 1)
        key = next((key for key, (name, _) in HF_OPTIONS.items() if name == field), field)
        raise CheckpointError(f"{where}: {key} {rest}") from None
    return options


def _read_safetensors(file):
    from safetensors.numpy import load_file
    try:
        return load_file(file)
    except Exception as error:  # safetensors raises its own error types, and TypeError for bfloat16
        raise CheckpointError(f"{file}: cannot read safetensors ({str(error).splitlines()[0]})") from None


# -- nanoGPT ---------------------------------------------------------------------------

def _read_nanogpt(file):
    checkpoint = _read_torch(file, whole=True)
    if not isinstance(checkpoint, dict) or "model_args" not in checkpoint or "model" not in checkpoint:
        keys = sorted(checkpoint) if isinstance(checkpoint, dict) else type(checkpoint).__name__
        raise CheckpointError(f"{file}: not a nanoGPT checkpoint; expected keys 'model_args' and 'model', found {keys}")
    args = checkpoint["model_args"]
    if not isinstance(args, dict):
        raise CheckpointError(f"{file}: model_args is a {type(args).__name__}, not a dict")
    for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size"):
        if key not in args:
            raise CheckpointError(f"{file}: model_args lacks {key!r}")
    params = {}
    for key, tensor in checkpoint["model"].items():
        name = key.removeprefix("_orig_mod.").removeprefix("transformer.")  # torch.compile, then nanoGPT's ModuleDict
        if name.endswith(".attn.bias"):  # causal-mask buffer of nanoGPT's slow attention
            continue
        params[{"wte.weight": "wte", "wpe.weight": "wpe"}.get(name, name)] = _to_numpy(tensor)
    for i in range(args["n_layer"]):
        for suffix in NANOGPT_TRANSPOSED:
            name = f"h.{i}.{suffix}"
            if name not in params:
                raise CheckpointError(f"{file}: missing tensor {name!r}")
            params[name] = np.ascontiguousarray(params[name].T)
    tied = _split_head(params, file, tied_in_config=True)
    config = _config(file, vocab_size=args["vocab_size"], n_positions=args["block_size"], n_embd=args["n_embd"],
                     n_layer=args["n_layer"], n_head=args["n_head"], activation="gelu",  # nn.GELU(): exact
                     layer_norm_epsilon=1e-5, tied_head=tied)                            # F.layer_norm(..., 1e-5)
    if not args.get("bias", True):
        shapes = config.param_shapes()
        for name in [f"h.{i}.{suffix}" for i in range(config.n_layer) for suffix in NANOGPT_BIASES] + ["ln_f.bias"]:
            if name in params:
                raise CheckpointError(f"{file}: model_args has bias=False but the state holds tensor {name!r}")
            params[name] = np.zeros(shapes[name], np.float32)
    return config, params


# -- shared ----------------------------------------------------------------------------

def _read_torch(file, whole=False):
    """A torch pickle, loaded safely on the CPU; a state dict comes back as numpy arrays."""
    try:
        import torch
    except ImportError:
        raise CheckpointError(f"{file}: {_TORCH_HINT}") from None
    try:
        data = torch.load(file, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling errors have many types
        raise CheckpointError(f"{file}: cannot read torch checkpoint ({str(error).splitlines()[0]})") from None
    if whole:
        return data
    if not isinstance(data, dict):
        raise CheckpointError(f"{file}: expected a state dict, found {type(data).__name__}")
    return {key: _to_numpy(value) for key, value in data.items()}


def _to_numpy(tensor):
    if hasattr(tensor, "detach"):  # a torch tensor (bfloat16 has no numpy dtype: go through float32)
        return tensor.detach().float().numpy() if tensor.is_floating_point() else tensor.detach().numpy()
    return np.asarray(tensor)


def _split_head(params, where, tied_in_config):
    """Decide whether the head is tied; drop ``lm_head.weight`` when it is ``wte``."""
    head = params.get("lm_head.weight")
    if head is None:
        if not tied_in_config:
            raise CheckpointError(f"{where}: missing tensor 'lm_head.weight' (the config says the head is not tied)")
        return True
    wte = params.get("wte")
    if wte is not None and np.shape(head) == np.shape(wte) and np.array_equal(head, wte):
        del params["lm_head.weight"]
        return True
    if tied_in_config:
        raise CheckpointError(f"{where}: tensor 'lm_head.weight' differs from 'wte' but the config ties the head to it")
    return False


def _config(where, **fields):
    try:
        return GPT2Config(**fields)
    except ValueError as error:
        raise CheckpointError(f"{where}: {error}") from None
