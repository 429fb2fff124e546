"""golden.checkpoint: Hugging Face and nanoGPT checkpoints load into GPT2 and compute what their own code computes."""

import dataclasses
import hashlib
import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn
from safetensors.numpy import load_file, save_file
from torch.nn import functional as F

from golden.checkpoint import CheckpointError, load_checkpoint, sha256_of_checkpoint
from golden.gpt2 import GPT2
from golden.paths import REPO_DIR


def tokens(shape, vocab, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, shape)


def hf_logits(hf, batch):
    with torch.no_grad():
        return hf(torch.from_numpy(batch)).logits.numpy()


def save_bin(hf, directory):
    """A Hugging Face directory with pytorch_model.bin (transformers 5 ignores safe_serialization=False)."""
    hf.save_pretrained(directory)
    (directory / "model.safetensors").unlink()
    torch.save(hf.state_dict(), directory / "pytorch_model.bin")
    return directory


# -- Hugging Face ----------------------------------------------------------------------

HF_SHAPES = [  # n_layer, n_embd, n_head, tied, activation
    (1, 8, 2, True, "gelu_new"), (2, 24, 3, False, "gelu_new"), (3, 16, 4, True, "gelu"), (2, 32, 1, False, "gelu")]


@pytest.mark.parametrize("n_layer, n_embd, n_head, tied, activation", HF_SHAPES)
@pytest.mark.parametrize("weights", ["model.safetensors", "pytorch_model.bin"])
def test_hf_logits_match_transformers(make_hf_model, tmp_path, weights, n_layer, n_embd, n_head, tied, activation):
    hf = make_hf_model(n_layer=n_layer, n_embd=n_embd, n_head=n_head, tied=tied, activation=activation, seed=n_layer)
    if weights == "model.safetensors":
        hf.save_pretrained(tmp_path)
    else:
        save_bin(hf, tmp_path)
    assert {"model.safetensors", "pytorch_model.bin"} & {p.name for p in tmp_path.iterdir()} == {weights}
    model = load_checkpoint(tmp_path)
    assert model.config.tied_head == tied and model.config.activation == activation
    assert ("lm_head.weight" in model.params) == (not tied)
    batch = tokens((2, 12), 23)
    expected = hf_logits(hf, batch)
    assert np.abs(model.forward(batch) - expected).max() < 1e-4
    assert np.abs(expected).max() > 0.5


def test_hf_keys_without_prefix_and_with_buffers(make_hf_model, tmp_path):
    """openai-community/gpt2's own file: no "transformer." prefix, causal-mask buffers stored beside the weights."""
    hf = make_hf_model()
    hf.save_pretrained(tmp_path)
    state = {k.removeprefix("transformer."): v for k, v in load_file(tmp_path / "model.safetensors").items()}
    for i in range(2):
        state[f"h.{i}.attn.bias"] = np.tril(np.ones((12, 12), np.float32))[None, None]
        state[f"h.{i}.attn.masked_bias"] = np.array(-1e4, np.float32)
    save_file(state, tmp_path / "model.safetensors")
    batch = tokens((1, 12), 23)
    assert np.abs(load_checkpoint(str(tmp_path)).forward(batch) - hf_logits(hf, batch)).max() < 1e-4


def test_hf_sharded_safetensors(make_hf_model, tmp_path):
    hf = make_hf_model(tied=False)
    hf.save_pretrained(tmp_path, max_shard_size="4KB")
    shards = sorted(tmp_path.glob("model-*.safetensors"))
    assert len(shards) > 1 and (tmp_path / "model.safetensors.index.json").is_file()
    batch = tokens((2, 12), 23)
    assert np.abs(load_checkpoint(tmp_path).forward(batch) - hf_logits(hf, batch)).max() < 1e-4
    assert sha256_of_checkpoint(tmp_path) == hashlib.sha256(b"".join(p.read_bytes() for p in shards)).hexdigest()


def test_hf_untied_config_with_head_equal_to_wte_is_tied(make_hf_model, tmp_path):
    hf = make_hf_model(tied=False)
    with torch.no_grad():
        hf.lm_head.weight.copy_(hf.transformer.wte.weight)
    hf.save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path)
    assert model.config.tied_head and "lm_head.weight" not in model.params
    batch = tokens(12, 23)
    assert np.abs(model.forward(batch) - hf_logits(hf, batch[None])[0]).max() < 1e-4


def test_hf_safetensors_read_without_torch(make_hf_model, tmp_path):
    make_hf_model().save_pretrained(tmp_path)
    code = ("import sys; from golden.checkpoint import load_checkpoint; "
            f"m = load_checkpoint({str(tmp_path)!r}); assert 'torch' not in sys.modules, 'torch was imported'; "
            "print(m.config.n_layer)")
    run = subprocess.run([sys.executable, "-c", code], cwd=REPO_DIR, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "2"


def test_hf_bin_without_torch_says_how_to_install(make_hf_model, tmp_path, monkeypatch):
    save_bin(make_hf_model(), tmp_path)
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(CheckpointError, match=r"pip install torch==2\.13\.0"):
        load_checkpoint(tmp_path)


# -- nanoGPT ---------------------------------------------------------------------------
# A faithful minimal copy of nanoGPT's model.py (karpathy/nanoGPT), written for this test:
# the same modules, parameter names and forward.

class LayerNorm(nn.Module):
    def __init__(self, ndim, bias):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(ndim))
        self.bias = nn.Parameter(torch.zeros(ndim)) if bias else None

    def forward(self, x):
        return F.layer_norm(x, self.weight.shape, self.weight, self.bias, 1e-5)


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.n_head, self.n_embd = n_head, n_embd

    def forward(self, x):
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=None, dropout_p=0, is_causal=True)
        return self.c_proj(y.transpose(1, 2).contiguous().view(B, T, C))


class MLP(nn.Module):
    def __init__(self, n_embd, bias):
        super().__init__()
        self.c_fc = nn.Linear(n_embd, 4 * n_embd, bias=bias)
        self.gelu = nn.GELU()
        self.c_proj = nn.Linear(4 * n_embd, n_embd, bias=bias)

    def forward(self, x):
        return self.c_proj(self.gelu(self.c_fc(x)))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.ln_1 = LayerNorm(n_embd, bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias)
        self.ln_2 = LayerNorm(n_embd, bias)
        self.mlp = MLP(n_embd, bias)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class NanoGPT(nn.Module):
    def __init__(self, n_layer, n_head, n_embd, block_size, bias, vocab_size, dropout=0.0):
        super().__init__()
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(vocab_size, n_embd), wpe=nn.Embedding(block_size, n_embd),
            h=nn.ModuleList([Block(n_embd, n_head, bias) for _ in range(n_layer)]), ln_f=LayerNorm(n_embd, bias)))
        self.lm_head = nn.Linear(n_embd, vocab_size, bias=False)
        self.transformer.wte.weight = self.lm_head.weight  # weight tying

    def forward(self, idx):
        """Logits of every position (nanoGPT's forward with targets; without, it keeps only the last)."""
        pos = torch.arange(0, idx.size(1), dtype=torch.long)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def make_nanogpt(*, n_layer=2, n_head=2, n_embd=16, block_size=12, bias=True, vocab_size=23, seed=0):
    torch.manual_seed(seed)
    args = dict(n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size, bias=bias,
                vocab_size=vocab_size, dropout=0.0)
    model = NanoGPT(**args).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 if "ln_" in name and name.endswith("weight") else 0.0) + 0.3 * torch.randn(p.shape))
    return model, args


def save_nanogpt(model, args, file, compiled=True, mask_buffers=False):
    """Save as nanoGPT's train.py does (torch.compile adds the "_orig_mod." prefix)."""
    state = model.state_dict()
    if mask_buffers:  # nanoGPT's slow-attention path (torch < 2) registers a causal mask "bias" buffer
        for i in range(args["n_layer"]):
            state[f"transformer.h.{i}.attn.bias"] = torch.tril(torch.ones(12, 12)).view(1, 1, 12, 12)
    if compiled:
        state = {"_orig_mod." + k: v for k, v in state.items()}
    optimizer = torch.optim.AdamW(model.parameters())
    torch.save({"model": state, "optimizer": optimizer.state_dict(), "model_args": args, "iter_num": 250,
                "best_val_loss": torch.tensor(1.47), "config": {"dataset": "shakespeare_char", "bias": args["bias"]}},
               file)
    return file


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("n_layer, n_embd, n_head", [(1, 8, 1), (3, 24, 4)])
def test_nanogpt_logits_match_nanogpt(tmp_path, bias, n_layer, n_embd, n_head):
    reference, args = make_nanogpt(n_layer=n_layer, n_embd=n_embd, n_head=n_head, bias=bias, seed=n_layer)
    assert any(k.endswith("c_attn.bias") for k in reference.state_dict()) == bias
    file = save_nanogpt(reference, args, tmp_path / "ckpt.pt")
    model = load_checkpoint(file)
    assert model.config.activation == "gelu" and model.config.tied_head and model.config.n_positions == 12
    if not bias:
        assert not np.any(model.bias("h.0.attn.c_attn")) and not np.any(model.params["ln_f.bias"])
    batch = tokens((2, 12), 23)
    with torch.no_grad():
        expected = reference(torch.from_numpy(batch)).numpy()
    assert np.abs(model.forward(batch) - expected).max() < 1e-4
    assert np.abs(expected).max() > 0.5
    # nanoGPT's nn.Linear weight is (out, in): the loader transposed it to (in, out)
    np.testing.assert_array_equal(model.weight("h.0.mlp.c_fc"), reference.transformer.h[0].mlp.c_fc.weight.detach().T)
    assert all(model.weight(name).flags.c_contiguous for name in model.linear_names)


def test_nanogpt_directory_uncompiled_with_mask_buffers(tmp_path):
    reference, args = make_nanogpt()
    save_nanogpt(reference, args, tmp_path / "ckpt.pt", compiled=False, mask_buffers=True)
    batch = tokens((1, 12), 23)
    with torch.no_grad():
        expected = reference(torch.from_numpy(batch)).numpy()
    assert np.abs(load_checkpoint(tmp_path).forward(batch) - expected).max() < 1e-4


def test_nanogpt_differs_from_hf_gelu(tmp_path):
    """The exact GELU matters: the same weights with GPT-2's tanh GELU give other logits."""
    reference, args = make_nanogpt()
    model = load_checkpoint(save_nanogpt(reference, args, tmp_path / "ckpt.pt"))
    tanh = GPT2(dataclasses.replace(model.config, activation="gelu_new"), model.params)
    batch = tokens(12, 23)
    assert np.abs(tanh.forward(batch) - model.forward(batch)).max() > 1e-4


# -- hashes ----------------------------------------------------------------------------

def test_sha256_of_checkpoint(make_hf_model, tmp_path):
    make_hf_model(seed=1).save_pretrained(tmp_path / "a")
    make_hf_model(seed=2).save_pretrained(tmp_path / "b")
    reference, args = make_nanogpt()
    ckpt = save_nanogpt(reference, args, tmp_path / "ckpt.pt")
    digest_a = sha256_of_checkpoint(tmp_path / "a")
    assert digest_a == hashlib.sha256((tmp_path / "a" / "model.safetensors").read_bytes()).hexdigest()
    assert digest_a != sha256_of_checkpoint(tmp_path / "b")
    assert sha256_of_checkpoint(str(ckpt)) == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    with pytest.raises(CheckpointError, match="does not exist"):
        sha256_of_checkpoint(tmp_path / "c")


# -- bad input: one CheckpointError line naming the offending value --------------------

@pytest.fixture
def hf_dir(make_hf_model, tmp_path):
    directory = tmp_path / "hf"
    make_hf_model().save_pretrained(directory)
    return directory


def edit_config(directory, **changes):
    config = json.loads((directory / "config.json").read_text())
    config.update(changes)
    (directory / "config.json").write_text(json.dumps(config))


def edit_tensors(directory, change):
    state = load_file(directory / "model.safetensors")
    change(state)
    save_file(state, directory / "model.safetensors")


def raises(path, pattern):
    with pytest.raises(CheckpointError, match=pattern) as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)
    return str(info.value)


def test_error_path_does_not_exist(tmp_path):
    raises(tmp_path / "nowhere", r"'.*nowhere' does not exist")


def test_error_directory_without_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    raises(tmp_path / "empty", r"'.*empty' holds neither config\.json .* nor ckpt\.pt")


def test_error_file_not_a_checkpoint(hf_dir):
    raises(hf_dir / "model.safetensors", r"model\.safetensors' is not a nanoGPT \.pt file; .* pass its directory")


def test_error_model_type(hf_dir):
    edit_config(hf_dir, model_type="llama")
    raises(hf_dir, r"model_type 'llama' is not supported; only 'gpt2'")


def test_error_no_weight_file(hf_dir):
    (hf_dir / "model.safetensors").unlink()
    raises(hf_dir, r"no weight file; expected model\.safetensors or pytorch_model\.bin")


def test_error_missing_tensor(hf_dir):
    edit_tensors(hf_dir, lambda state: state.pop("transformer.h.1.mlp.c_fc.bias"))
    raises(hf_dir, r"missing tensor 'h\.1\.mlp\.c_fc\.bias'")


def test_error_missing_untied_head(hf_dir):
    edit_config(hf_dir, tie_word_embeddings=False)
    raises(hf_dir, r"missing tensor 'lm_head\.weight'")


def test_error_wrong_shape(hf_dir):
    edit_tensors(hf_dir, lambda state: state.update({"transformer.h.0.attn.c_proj.weight": np.zeros((16, 17), np.float32)}))
    raises(hf_dir, r"tensor 'h\.0\.attn\.c_proj\.weight' has shape \(16, 17\), expected \(16, 16\)")


def test_error_not_finite(hf_dir):
    def poison(state):
        state["transformer.wte.weight"][[1, 4], 0] = np.nan
        state["transformer.wte.weight"][7, 3] = np.inf
    edit_tensors(hf_dir, poison)
    raises(hf_dir, r"tensor 'wte' has 3 NaN/Inf values")


@pytest.mark.parametrize("activation, message", [
    ("swiglu", "is not supported; supported: 'gelu_new', 'gelu'"),
    ("prelu", "is not supported: its learned slope"),
    ("xielu", "is not supported: its learned alpha_p"),
])
def test_error_activation(hf_dir, activation, message):
    edit_config(hf_dir, activation_function=activation)
    raises(hf_dir, rf"activation_function '{activation}' {message}")


@pytest.mark.parametrize("key, value, message", [
    ("n_inner", 0, "must be a positive integer or None, not 0"),
    ("n_inner", 7.5, "must be a positive integer or None, not 7.5"),
    ("scale_attn_weights", "yes", "must be a bool, not 'yes'"),
    ("scale_attn_by_inverse_layer_idx", 1, "must be a bool, not 1"),
    ("reorder_and_upcast_attn", None, "must be a bool, not None"),
    ("layer_norm_epsilon", -1e-5, r"must be a float in \(0, 1\), not -1e-05"),
    ("add_cross_attention", True, "True is not supported; only false"),
])
def test_error_config_options(hf_dir, key, value, message):
    edit_config(hf_dir, **{key: value})
    raises(hf_dir, rf"config\.json: {key} {message}")


def test_error_config_shape(hf_dir):
    edit_config(hf_dir, n_head=3)
    raises(hf_dir, r"n_embd must be a multiple of n_head, not 16 with n_head 3")


def test_error_config_key_missing(hf_dir):
    config = json.loads((hf_dir / "config.json").read_text())
    del config["n_embd"]
    (hf_dir / "config.json").write_text(json.dumps(config))
    raises(hf_dir, r"missing key 'n_embd'")


def test_error_tied_config_with_other_head(hf_dir):
    edit_tensors(hf_dir, lambda state: state.update({"lm_head.weight": state["transformer.wte.weight"] + 1}))
    raises(hf_dir, r"'lm_head\.weight' differs from 'wte' but the config ties")


def test_error_unexpected_tensor(hf_dir):
    edit_tensors(hf_dir, lambda state: state.update({"score.weight": np.zeros((2, 16), np.float32)}))
    raises(hf_dir, r"unexpected tensor 'score\.weight'")


def test_error_corrupt_weight_file(hf_dir):
    (hf_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    raises(hf_dir, r"model\.safetensors: cannot read safetensors")


def test_error_nanogpt_not_a_checkpoint(tmp_path):
    torch.save({"weights": torch.zeros(3)}, tmp_path / "ckpt.pt")
    raises(tmp_path, r"not a nanoGPT checkpoint; expected keys 'model_args' and 'model', found \['weights'\]")


def test_error_nanogpt_missing_tensor(tmp_path):
    reference, args = make_nanogpt()
    file = save_nanogpt(reference, args, tmp_path / "ckpt.pt")
    checkpoint = torch.load(file, weights_only=True)
    del checkpoint["model"]["_orig_mod.transformer.h.1.attn.c_attn.weight"]
    torch.save(checkpoint, file)
    raises(file, r"missing tensor 'h\.1\.attn\.c_attn\.weight'")


def test_error_nanogpt_not_finite(tmp_path):
    reference, args = make_nanogpt()
    with torch.no_grad():
        reference.transformer.h[0].mlp.c_proj.weight[2, 5] = math.nan
    raises(save_nanogpt(reference, args, tmp_path / "ckpt.pt"), r"tensor 'h\.0\.mlp\.c_proj\.weight' has 1 NaN/Inf")


def test_error_is_a_value_error(tmp_path):
    with pytest.raises(ValueError):
        load_checkpoint(Path(tmp_path) / "missing")
