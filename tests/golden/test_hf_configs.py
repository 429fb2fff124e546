"""Every GPT-2 config transformers runs: golden computes what transformers computes, or refuses in one line."""

import json

import numpy as np
import pytest
import torch

from golden.activations import ACTIVATIONS, REFUSED
from golden.checkpoint import CheckpointError, load_checkpoint

transformers = pytest.importorskip("transformers", reason="needs transformers: pip install transformers")


@pytest.fixture
def random_hf(make_hf_model):
    """A random 3-layer transformers GPT2LMHeadModel with config fields `options` (as config.json names them)."""
    def make(seed=0, activation_function="gelu_new", tie_word_embeddings=True, **options):
        return make_hf_model(n_layer=3, seed=seed, activation=activation_function, tied=tie_word_embeddings,
                             **options)
    return make


def compare(hf, directory):
    """Save `hf`, load it with golden; return (largest logit difference, largest logit)."""
    hf.save_pretrained(directory)
    batch = np.random.default_rng(1).integers(0, 23, (2, 12))
    with torch.no_grad():
        expected = hf(torch.from_numpy(batch)).logits.numpy()
    return np.abs(load_checkpoint(directory).forward(batch) - expected).max(), np.abs(expected).max()


def test_every_activation_of_transformers_is_computed_or_refused():
    from transformers.activations import ACT2CLS
    assert set(ACTIVATIONS) | set(REFUSED) == set(ACT2CLS)
    assert not set(ACTIVATIONS) & set(REFUSED)


@pytest.mark.parametrize("activation", sorted(ACTIVATIONS))
def test_activation_logits_match_transformers(random_hf, tmp_path, activation):
    difference, scale = compare(random_hf(activation_function=activation), tmp_path)
    assert difference < 1e-4 and scale > 0.5


@pytest.mark.parametrize("activation", ["relu", "quick_gelu", "tanh", "laplace"])
def test_activation_changes_the_logits(random_hf, tmp_path, activation):
    """The activation is not lost on the way: golden's logits differ from the same weights with gelu_new."""
    hf = random_hf(activation_function=activation)
    hf.save_pretrained(tmp_path)
    batch = np.arange(12) % 23
    logits = load_checkpoint(tmp_path).forward(batch)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "activation_function": "gelu_new"}))
    assert np.abs(load_checkpoint(tmp_path).forward(batch) - logits).max() > 1e-2


OPTIONS = [
    {"n_inner": 40},
    {"n_inner": 144, "activation_function": "gelu"},
    {"layer_norm_epsilon": 1e-2},
    {"scale_attn_by_inverse_layer_idx": True},
    {"scale_attn_weights": False},
    {"reorder_and_upcast_attn": True},
    {"tie_word_embeddings": False},
    {"n_inner": 24, "scale_attn_by_inverse_layer_idx": True, "reorder_and_upcast_attn": True,
     "layer_norm_epsilon": 1e-3, "scale_attn_weights": False, "tie_word_embeddings": False,
     "activation_function": "silu"},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_config_options_match_transformers(random_hf, tmp_path, options, attention):
    hf = random_hf(seed=3, **options)
    hf.config._attn_implementation = attention            # reorder_and_upcast_attn is eager's own path
    difference, scale = compare(hf, tmp_path)
    assert difference < 1e-4 and scale > 0.5
    model = load_checkpoint(tmp_path)
    assert model.config.inner_dim == options.get("n_inner", 64)
    assert model.weight("h.2.mlp.c_proj").shape == (options.get("n_inner", 64), 16)


@pytest.mark.parametrize("options", [{"scale_attn_by_inverse_layer_idx": True}, {"scale_attn_weights": False},
                                     {"layer_norm_epsilon": 1e-1}])
def test_config_option_changes_the_logits(random_hf, tmp_path, options):
    random_hf(seed=3, **options).save_pretrained(tmp_path)
    batch = np.arange(12) % 23
    logits = load_checkpoint(tmp_path).forward(batch)
    config = json.loads((tmp_path / "config.json").read_text())
    for key in options:
        del config[key]
    (tmp_path / "config.json").write_text(json.dumps(config))
    assert np.abs(load_checkpoint(tmp_path).forward(batch) - logits).max() > 1e-2


def test_refused_activation_from_the_command_line(random_hf, tmp_path, cli):
    """A config value golden cannot compute: one line, status 2, nothing written."""
    from golden.export import main
    random_hf().save_pretrained(tmp_path / "model")
    config = json.loads((tmp_path / "model" / "config.json").read_text())
    (tmp_path / "model" / "config.json").write_text(json.dumps({**config, "activation_function": "prelu"}))
    status, _, err = cli(main, ["--checkpoint", tmp_path / "model", "--out", tmp_path / "roms"])
    assert status == 2 and err.count("\n") == 1
    assert "activation_function 'prelu' is not supported" in err
    assert not (tmp_path / "roms").exists()
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "model")


def test_long_sequences_attend_in_blocks(make_hf_model, tmp_path):
    """Past 128 positions golden's attention runs in blocks of queries: still transformers' logits, and a KV
    cache fed in two pieces (the second starting mid-block) gives the logits of the whole sequence."""
    from golden.gpt2 import KVCache
    hf = make_hf_model(n_layer=2, n_embd=16, n_head=2, n_positions=300, seed=5)
    hf.save_pretrained(tmp_path)
    model = load_checkpoint(tmp_path)
    batch = np.random.default_rng(2).integers(0, 23, (2, 300))
    with torch.no_grad():
        expected = hf(torch.from_numpy(batch)).logits.numpy()
    assert np.abs(model.forward(batch) - expected).max() < 1e-4
    cache = KVCache()
    pieces = [model.forward(batch[0, :170], cache=cache), model.forward(batch[0, 170:], cache=cache)]
    assert np.abs(np.concatenate(pieces) - expected[0]).max() < 1e-4
