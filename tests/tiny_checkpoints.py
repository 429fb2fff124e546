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

