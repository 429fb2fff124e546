"""Small GPT-2 checkpoints that tests make for themselves (no download, numpy only)."""

import json

import numpy as np


def write_tiny_checkpoint(path, *, n_layer=2, n_embd=16, n_head=2, vocab_size=23, n_positions=32, seed=0,
                          tokens=4000):
    """A random GPT-2 in the Hugging Face layout (config.json + model.safetensors, Conv1D (in, out)
    weights, tied head), with vocab.json and train.bin / val.bin token splits beside it. numpy only."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    d = n_embd
    tensors = {"transformer.wte.weight": rng.normal(0, 0.3, (vocab_size, d)),
               "transformer.wpe.weight": rng.normal(0, 0.1, (n_positions, d)),
               "transformer.ln_f.weight": 1 + rng.normal(0, 0.1, d), "transformer.ln_f.bias": rng.normal(0, 0.1, d)}
    shapes = {"attn.c_attn": (d, 3 * d), "attn.c_proj": (d, d), "mlp.c_fc": (d, 4 * d), "mlp.c_proj": (4 * d, d)}
    for i in range(n_layer):
        for ln in ("ln_1", "ln_2"):
            tensors[f"transformer.h.{i}.{ln}.weight"] = 1 + rng.normal(0, 0.1, d)
            tensors[f"transformer.h.{i}.{ln}.bias"] = rng.normal(0, 0.1, d)
        for name, shape in shapes.items():
            tensors[f"transformer.h.{i}.{name}.weight"] = rng.normal(0, 1 / np.sqrt(shape[0]), shape)
            tensors[f"transformer.h.{i}.{name}.bias"] = rng.normal(0, 0.05, shape[1])
    path.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v, np.float32) for k, v in tensors.items()}, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "vocab_size": vocab_size, "n_positions": n_positions, "n_embd": d,
        "n_layer": n_layer, "n_head": n_head, "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5,
        "tie_word_embeddings": True}))
    (path / "vocab.json").write_text(json.dumps({"itos": [chr(ord("a") + i) for i in range(vocab_size)]}))
    stream = rng.integers(0, vocab_size, tokens).astype(np.uint16)
    stream[: tokens * 9 // 10].tofile(path / "train.bin")
    stream[tokens * 9 // 10:].tofile(path / "val.bin")
    return path


#: GPT-2 124M's exact configuration (openai-community/gpt2's config.json, less its task-specific keys).
GPT2_124M = {"vocab_size": 50257, "n_positions": 1024, "n_embd": 768, "n_layer": 12, "n_head": 12,
             "activation_function": "gelu_new", "layer_norm_epsilon": 1e-5}


def write_gpt2_124m_shape_checkpoint(path, *, n_layer=12, seed=0):
    """A randomly initialised GPT-2 of 124M's exact shapes, saved as Hugging Face saves it (config.json +
    model.safetensors, nothing beside it: no tokenizer, no splits), as a downloaded checkpoint is; `n_layer`
    may cut the depth. The init is GPT-2's (transformers' ``_init_weights``): weights normal with std 0.02,
    the residual projections 0.02 / sqrt(2 n_layer), biases 0, layer norms 1 and 0. numpy only (a few seconds)."""
    from safetensors.numpy import save_file

    rng = np.random.default_rng(seed)
    config = {**GPT2_124M, "n_layer": n_layer}
    d, vocab = config["n_embd"], config["vocab_size"]

    def normal(shape, std=0.02):
        array = rng.standard_normal(shape, dtype=np.float32)
        array *= np.float32(std)
        return array

    tensors = {"transformer.wte.weight": normal((vocab, d)), "transformer.wpe.weight": normal((config["n_positions"], d)),
               "transformer.ln_f.weight": np.ones(d, np.float32), "transformer.ln_f.bias": np.zeros(d, np.float32)}
    for i in range(n_layer):
        for name, (k, n) in {"attn.c_attn": (d, 3 * d), "attn.c_proj": (d, d), "mlp.c_fc": (d, 4 * d),
                             "mlp.c_proj": (4 * d, d)}.items():
            std = 0.02 / np.sqrt(2 * n_layer) if name.endswith("c_proj") else 0.02
            tensors[f"transformer.h.{i}.{name}.weight"] = normal((k, n), std)
            tensors[f"transformer.h.{i}.{name}.bias"] = np.zeros(n, np.float32)
        for ln in ("ln_1", "ln_2"):
            tensors[f"transformer.h.{i}.{ln}.weight"] = np.ones(d, np.float32)
            tensors[f"transformer.h.{i}.{ln}.bias"] = np.zeros(d, np.float32)
    path.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path / "model.safetensors"))
    (path / "config.json").write_text(json.dumps({"model_type": "gpt2", "architectures": ["GPT2LMHeadModel"],
                                                  **config, "tie_word_embeddings": True}))
    return path


def train_bpe_tokenizer(vocab_size=500):
    """A byte-level BPE (GPT-2's kind) trained with Hugging Face's tokenizers on tiny Shakespeare."""
    import tokenizers

    from golden.paths import SHAKESPEARE_TEXT

    tokenizer = tokenizers.ByteLevelBPETokenizer()
    tokenizer.train([str(SHAKESPEARE_TEXT)], vocab_size=vocab_size, min_frequency=2, show_progress=False)
    return tokenizer


def write_bpe_checkpoint(path, tokenizer, *, form="tokenizer.json", **shape):
    """A random GPT-2 (as `write_tiny_checkpoint`) of `tokenizer`'s vocabulary, with that tokenizer beside it as
    ``tokenizer.json`` (`form` "tokenizer.json") or GPT-2's ``vocab.json`` + ``merges.txt`` ("vocab+merges"),
    and no token splits (as a downloaded checkpoint)."""
    write_tiny_checkpoint(path, vocab_size=tokenizer.get_vocab_size(), **shape)
    for name in ("vocab.json", "train.bin", "val.bin"):
        (path / name).unlink()
    if form == "tokenizer.json":
        tokenizer.save(str(path / "tokenizer.json"))
    else:
        tokenizer.save_model(str(path))
    return path
