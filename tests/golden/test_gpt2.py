"""golden.gpt2: the numpy GPT-2 against transformers, torch and its own contract."""

import math

import numpy as np
import pytest
import torch

from golden.gpt2 import ACTIVATIONS, GPT2, GPT2Config, erf, gelu, gelu_new

CONFIG = GPT2Config(vocab_size=23, n_positions=12, n_embd=16, n_layer=2, n_head=2)


def random_params(config, seed=0):
    rng = np.random.default_rng(seed)
    params = {}
    for name, shape in config.param_shapes().items():
        centre = 1.0 if name.endswith(("ln_1.weight", "ln_2.weight", "ln_f.weight")) else 0.0
        params[name] = (centre + 0.3 * rng.standard_normal(shape)).astype(np.float32)
    return params


@pytest.fixture
def tiny():
    return GPT2(CONFIG, random_params(CONFIG))


def tokens(shape, vocab=CONFIG.vocab_size, seed=1):
    return np.random.default_rng(seed).integers(0, vocab, shape)


def from_hf(hf):
    """A GPT2 with the parameters of a transformers GPT2LMHeadModel, converted by hand (no loader)."""
    c = hf.config
    config = GPT2Config(c.vocab_size, c.n_positions, c.n_embd, c.n_layer, c.n_head,
                        activation=c.activation_function, tied_head=c.tie_word_embeddings)
    params = {}
    for key, tensor in hf.state_dict().items():
        name = key.removeprefix("transformer.")
        params[{"wte.weight": "wte", "wpe.weight": "wpe"}.get(name, name)] = tensor.numpy()
    if config.tied_head:
        del params["lm_head.weight"]
    return GPT2(config, params)


# -- configuration and construction --------------------------------------------------

@pytest.mark.parametrize("field, value", [("vocab_size", 0), ("n_positions", -3), ("n_embd", 2.5),
                                          ("n_layer", True), ("n_head", 5), ("activation", "prelu"),
                                          ("activation", "swiglu"), ("n_inner", 0), ("scale_attn_weights", 1),
                                          ("layer_norm_epsilon", 0.0), ("tied_head", "yes")])
def test_config_wrong(field, value):
    fields = dict(vocab_size=23, n_positions=12, n_embd=16, n_layer=2, n_head=2)
    fields[field] = value
    with pytest.raises(ValueError, match=repr(value).replace(".", r"\.")):
        GPT2Config(**fields)


def test_config_activation_wrong_lists_supported():
    with pytest.raises(ValueError, match="'swiglu'.*'gelu_new', 'gelu'"):
        GPT2Config(23, 12, 16, 2, 2, activation="swiglu")


def test_init_missing_tensor():
    params = random_params(CONFIG)
    del params["h.1.mlp.c_fc.bias"]
    with pytest.raises(ValueError, match=r"missing tensor 'h\.1\.mlp\.c_fc\.bias'"):
        GPT2(CONFIG, params)


def test_init_unexpected_tensor():
    params = random_params(CONFIG)
    params["lm_head.weight"] = params["wte"]  # the config says tied
    with pytest.raises(ValueError, match=r"unexpected tensor 'lm_head\.weight'"):
        GPT2(CONFIG, params)


def test_init_wrong_shape():
    params = random_params(CONFIG)
    params["h.0.attn.c_attn.weight"] = params["h.0.attn.c_attn.weight"].T
    with pytest.raises(ValueError, match=r"'h\.0\.attn\.c_attn\.weight' has shape \(48, 16\), expected \(16, 48\)"):
        GPT2(CONFIG, params)


def test_init_not_finite():
    params = random_params(CONFIG)
    params["wpe"][[0, 3, 5], 2] = [np.nan, np.inf, -np.inf]
    with pytest.raises(ValueError, match="'wpe' has 3 NaN/Inf"):
        GPT2(CONFIG, params)


def test_params_are_float32_and_read_only(tiny):
    assert all(p.dtype == np.float32 for p in tiny.params.values())
    with pytest.raises(ValueError):
        tiny.params["wte"][0, 0] = 1.0


def test_linear_names_and_layout(tiny):
    assert tiny.linear_names == ["h.0.attn.c_attn", "h.0.attn.c_proj", "h.0.mlp.c_fc", "h.0.mlp.c_proj",
                                 "h.1.attn.c_attn", "h.1.attn.c_proj", "h.1.mlp.c_fc", "h.1.mlp.c_proj"]
    d = CONFIG.n_embd
    expected = {"attn.c_attn": (d, 3 * d), "attn.c_proj": (d, d), "mlp.c_fc": (d, 4 * d), "mlp.c_proj": (4 * d, d)}
    for name in tiny.linear_names:
        assert tiny.weight(name).shape == expected[name[4:]]
        assert tiny.bias(name).shape == expected[name[4:]][1:]
    with pytest.raises(KeyError, match="'h.0.attn.c_attn.weight'"):
        tiny.weight("h.0.attn.c_attn.weight")


# -- the forward -----------------------------------------------------------------------

@pytest.mark.parametrize("n_layer, n_embd, n_head, tied, activation", [
    (1, 8, 1, True, "gelu_new"), (2, 16, 4, False, "gelu_new"), (3, 24, 3, True, "gelu"), (2, 32, 8, False, "gelu")])
def test_forward_matches_transformers(make_hf_model, n_layer, n_embd, n_head, tied, activation):
    hf = make_hf_model(n_layer=n_layer, n_embd=n_embd, n_head=n_head, tied=tied, activation=activation)
    model = from_hf(hf)
    batch = tokens((3, CONFIG.n_positions))
    with torch.no_grad():
        expected = hf(torch.from_numpy(batch)).logits.numpy()
    logits = model.forward(batch)
    assert logits.dtype == np.float32 and logits.shape == (3, 12, 23)
    assert np.abs(logits - expected).max() < 1e-4
    assert np.abs(expected).max() > 0.5  # the comparison is not between two near-zero tensors


def test_forward_unbatched_is_a_row_of_the_batch(tiny):
    batch = tokens((4, 7))
    assert tiny.forward(batch[2]).shape == (7, 23)
    np.testing.assert_allclose(tiny.forward(batch[2]), tiny.forward(batch)[2], rtol=0, atol=1e-5)


def test_forward_is_causal(tiny):
    a = tokens(10)
    b = a.copy()
    b[6] = (b[6] + 1) % CONFIG.vocab_size
    la, lb = tiny.forward(a), tiny.forward(b)
    np.testing.assert_allclose(la[:6], lb[:6], rtol=0, atol=1e-6)
    assert np.abs(la[6:] - lb[6:]).min(axis=-1).max() > 1e-3


@pytest.mark.parametrize("bad, message", [
    (np.array([1.0, 2.0]), "must be integers"), (np.zeros((1, 1, 3), int), r"\(1, 1, 3\)"),
    (np.zeros(13, int), "length 13 exceeds n_positions 12"), (np.array([3, 23]), "id 23"),
    (np.array([-1, 2]), "id -1"), (np.zeros(0, int), r"\(0,\)")])
def test_forward_tokens_wrong(tiny, bad, message):
    with pytest.raises(ValueError, match=message):
        tiny.forward(bad)


# -- the pluggable linear ------------------------------------------------------------

def test_linear_is_called_for_every_layer_in_order(tiny):
    calls = []

    def recording(name, x):
        calls.append((name, x.shape))
        return x @ tiny.weight(name) + tiny.bias(name)

    batch = tokens((2, 5))
    logits = tiny.forward(batch, linear=recording)
    assert [name for name, _ in calls] == tiny.linear_names
    assert [shape[-1] for _, shape in calls] == [tiny.weight(name).shape[0] for name in tiny.linear_names]
    assert all(shape[:-1] == (2, 5) for _, shape in calls)
    np.testing.assert_allclose(logits, tiny.forward(batch), rtol=0, atol=1e-5)


@pytest.mark.parametrize("layer", ["h.0.attn.c_attn", "h.0.mlp.c_proj", "h.1.attn.c_proj", "h.1.mlp.c_fc"])
def test_linear_that_perturbs_a_layer_changes_the_logits(tiny, layer):
    def perturbing(name, x):  # not a constant shift: the next layer norm would remove that
        y = x @ tiny.weight(name) + tiny.bias(name)
        return y + 0.1 * np.arange(y.shape[-1]) / y.shape[-1] if name == layer else y

    batch = tokens(8)
    assert np.abs(tiny.forward(batch, linear=perturbing) - tiny.forward(batch)).max() > 1e-3


def test_linear_head_is_not_pluggable(tiny):
    """The head is computed by the host: it never reaches the pluggable linear."""
    names = []
    tiny.forward(tokens(4), linear=lambda name, x: names.append(name) or x @ tiny.weight(name) + tiny.bias(name))
    assert "lm_head" not in names and len(names) == 4 * CONFIG.n_layer


def test_linear_wrong_shape(tiny):
    with pytest.raises(ValueError, match=r"linear 'h\.0\.attn\.c_attn' returned shape \(1, 4, 16\), expected \(1, 4, 48\)"):
        tiny.forward(tokens(4), linear=lambda name, x: x)


def test_with_weights(tiny):
    new = 0.5 * tiny.weight("h.1.mlp.c_fc")
    other = tiny.with_weights({"h.1.mlp.c_fc": new})
    assert other.config == tiny.config
    np.testing.assert_array_equal(other.weight("h.1.mlp.c_fc"), new)
    assert np.shares_memory(other.weight("h.0.mlp.c_fc"), tiny.weight("h.0.mlp.c_fc"))
    scaled = lambda name, x: x @ (new if name == "h.1.mlp.c_fc" else tiny.weight(name)) + tiny.bias(name)  # noqa: E731
    batch = tokens(9)
    np.testing.assert_allclose(other.forward(batch), tiny.forward(batch, linear=scaled), rtol=0, atol=1e-5)
    assert np.abs(other.forward(batch) - tiny.forward(batch)).max() > 1e-3  # the original is untouched
    with pytest.raises(KeyError, match="'wte'"):
        tiny.with_weights({"wte": tiny.params["wte"]})
    with pytest.raises(ValueError, match=r"'h\.0\.mlp\.c_fc\.weight' has shape \(64, 16\)"):
        tiny.with_weights({"h.0.mlp.c_fc": new.T})


# -- the loss --------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(12,), (3, 7)])
def test_loss_matches_torch_cross_entropy(tiny, shape):
    inputs, targets = tokens(shape, seed=2), tokens(shape, seed=3)
    logits = torch.from_numpy(tiny.forward(inputs))
    expected = torch.nn.functional.cross_entropy(logits.reshape(-1, CONFIG.vocab_size),
                                                 torch.from_numpy(targets).reshape(-1)).item()
    loss = tiny.loss(inputs, targets)
    assert isinstance(loss, float) and loss > 0.5
    assert loss == pytest.approx(expected, rel=1e-6)


def test_loss_with_linear(tiny):
    inputs, targets = tokens(10, seed=2), tokens(10, seed=3)
    scaled = lambda name, x: 1.2 * (x @ tiny.weight(name) + tiny.bias(name))  # noqa: E731
    assert tiny.loss(inputs, targets, linear=scaled) != pytest.approx(tiny.loss(inputs, targets), rel=1e-4)


def test_loss_targets_wrong(tiny):
    with pytest.raises(ValueError, match=r"shape of tokens \(6,\), not \(5,\)"):
        tiny.loss(tokens(6), tokens(5))
    with pytest.raises(ValueError, match="targets holds id 23"):
        tiny.loss(tokens(3), np.array([0, 23, 1]))


# -- activations -----------------------------------------------------------------------

def test_erf_matches_math_erf():
    x = np.linspace(-7, 7, 20001)
    assert np.abs(erf(x) - np.array([math.erf(v) for v in x])).max() < 1.5e-7
    assert erf(np.float32(0.5)).dtype == np.float32


def test_gelu_matches_torch():
    x = np.linspace(-12, 12, 40001, dtype=np.float32)
    exact = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    tanh = torch.nn.functional.gelu(torch.from_numpy(x), approximate="tanh").numpy()
    assert gelu(x).dtype == gelu_new(x).dtype == np.float32
    assert np.abs(gelu(x) - exact).max() < 2e-6
    assert np.abs(gelu_new(x) - tanh).max() < 2e-6
    tail = x[x < -2]  # the negative tail keeps its relative accuracy (torch's flushes to 0 below -5.5)
    reference = np.array([0.5 * v * math.erfc(-v / math.sqrt(2)) for v in tail.astype(np.float64)])
    assert np.max(np.abs(gelu(tail) / reference - 1)) < 3e-5  # float32 rounding of exp(-x^2 / 2)
    assert np.abs(gelu(x) - gelu_new(x)).max() > 1e-4  # the two are different functions
    assert ACTIVATIONS["gelu_new"] is gelu_new and ACTIVATIONS["gelu"] is gelu


def test_kv_cache_gives_the_logits_of_the_whole_sequence(tiny_checkpoint):
    """Feeding a sequence in pieces through a KVCache equals one forward over all of it."""
    from golden.checkpoint import load_checkpoint
    from golden.gpt2 import KVCache

    model = load_checkpoint(tiny_checkpoint)
    tokens = np.random.default_rng(3).integers(0, model.config.vocab_size, 20)
    whole = model.forward(tokens)
    cache = KVCache()
    pieces = [model.forward(tokens[:7], cache=cache)] + [model.forward(tokens[i:i + 1], cache=cache)
                                                          for i in range(7, 20)]
    np.testing.assert_allclose(np.concatenate(pieces), whole, atol=2e-5, rtol=0)
    assert cache.length == 20
    with pytest.raises(ValueError, match="after 20 cached exceeds n_positions 32"):
        model.forward(np.zeros(13, np.int64), cache=cache)
