"""QAT: golden's quantizer in torch bit for bit, straight-through gradients, a run that helps, its output."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0")
transformers = pytest.importorskip("transformers", reason="pip install 'potgen[torch]'")

from golden import qat  # noqa: E402
from golden.cli import run  # noqa: E402
from golden.checkpoint import load_checkpoint  # noqa: E402
from golden.data import write_tokens  # noqa: E402
from golden.integer_model import quantize_weights, with_quantized_weights  # noqa: E402
from golden.paths import DEFAULT_MODEL_DIR  # noqa: E402
from golden.pot_format import MAX_BITS, MIN_BITS  # noqa: E402
from golden.quantize import quantize  # noqa: E402


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models: more torch threads only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def checkpoint():
    """The shipped float model (HF directory with vocab and splits): a fixed file whose quantization loss is
    known and material (3-bit `paper` rounding costs 3.05 nats), so what a short QAT run must show does not
    depend on how a training run inside the test went on this machine."""
    return DEFAULT_MODEL_DIR


def weights_like_a_layer(seed, k=40, n=24):
    rng = np.random.default_rng(seed)
    weight = (rng.laplace(size=(k, n)) * np.exp(rng.uniform(-3, 0, n))).astype(np.float32)
    weight[0, :2] = 0.0
    weight[1, 0] = -0.0
    weight[:, 3] = 0.0                                       # an all-zero channel
    return weight


# -- the quantizer -----------------------------------------------------------------------------

@pytest.mark.parametrize("bits", range(MIN_BITS, MAX_BITS + 1))
@pytest.mark.parametrize("method", ["pot-channel", "pot-tensor", "paper"])
def test_fake_quant_equals_golden_bit_for_bit(bits, method):
    weight = weights_like_a_layer(bits)
    golden = quantize(weight, bits, method)
    rule = "paper" if method == "paper" else "nearest"
    values = qat.pot_values(torch.from_numpy(weight), torch.from_numpy(golden.scales), bits, rule).numpy()
    assert values.dtype == np.float32
    np.testing.assert_array_equal(values, golden.dequantize())


@pytest.mark.parametrize("bits", [3, 4, 6])
def test_moved_weights_stay_on_the_grid(bits):
    """After the latent weights move, the fake-quantized weight is still a fixed point of golden's quantizer."""
    weight = weights_like_a_layer(10 + bits)
    scales = quantize(weight, bits, "pot-channel").scales
    moved = weight * np.float32(1.3) + np.random.default_rng(bits).normal(0, 0.05, weight.shape).astype(np.float32)
    values = qat.pot_values(torch.from_numpy(moved), torch.from_numpy(scales), bits).numpy()
    again = quantize(values, bits, "pot-channel")
    np.testing.assert_array_equal(again.dequantize(), values)
    assert np.all(np.abs(values) <= scales)                   # clipped to the fixed scale


def test_straight_through_gradient():
    weight = torch.from_numpy(weights_like_a_layer(0)).requires_grad_(True)
    fake = qat.PotFakeQuant(quantize(weight.detach().numpy(), 4, "pot-channel").scales, 4)
    upstream = torch.randn(weight.shape, generator=torch.Generator().manual_seed(0))
    (fake(weight) * upstream).sum().backward()
    torch.testing.assert_close(weight.grad, upstream, rtol=0, atol=0)


def test_fake_quantized_model_equals_golden_pot_model(checkpoint):
    model, golden_model = qat.hf_model(checkpoint)
    settings = qat.QatSettings(bits=4, method="pot-channel")
    scales, latents, rule = qat.initial_quantization(golden_model, settings)
    qat.fake_quantize(model, scales, 4, rule, latents)
    # Gradients reach every latent linear weight through the fake quantizer.
    tokens = np.random.default_rng(0).integers(0, golden_model.config.vocab_size, (3, 32))
    logits = model(input_ids=torch.from_numpy(tokens)).logits
    logits.square().mean().backward()
    for module in qat._linear_modules(model).values():
        grad = module.parametrizations.weight.original.grad
        assert grad is not None and grad.abs().sum() > 0
    reference = with_quantized_weights(golden_model, quantize_weights(golden_model, bits=4)).forward(tokens)
    np.testing.assert_allclose(logits.detach().numpy(), reference, atol=1e-4, rtol=0)
    quantized = qat.quantized_state(model)
    for name, module in qat._linear_modules(quantized).items():
        np.testing.assert_array_equal(module.weight.detach().numpy(),
                                      quantize(golden_model.weight(name), 4, "pot-channel").dequantize())


def test_nanogpt_checkpoint_is_rebuilt(tmp_path):
    """A nanoGPT ckpt.pt (exact GELU, (out, in) weights) becomes a GPT2LMHeadModel with golden's logits."""
    rng = np.random.default_rng(0)
    n_embd, n_layer = 16, 2
    state = {"transformer.wte.weight": rng.normal(0, 0.3, (23, n_embd)),
             "transformer.wpe.weight": rng.normal(0, 0.3, (12, n_embd))}
    for i in range(n_layer):
        for name, shape in (("ln_1.weight", (n_embd,)), ("ln_1.bias", (n_embd,)), ("ln_2.weight", (n_embd,)),
                            ("ln_2.bias", (n_embd,)), ("attn.c_attn.weight", (3 * n_embd, n_embd)),
                            ("attn.c_attn.bias", (3 * n_embd,)), ("attn.c_proj.weight", (n_embd, n_embd)),
                            ("attn.c_proj.bias", (n_embd,)), ("mlp.c_fc.weight", (4 * n_embd, n_embd)),
                            ("mlp.c_fc.bias", (4 * n_embd,)), ("mlp.c_proj.weight", (n_embd, 4 * n_embd)),
                            ("mlp.c_proj.bias", (n_embd,))):
            state[f"transformer.h.{i}.{name}"] = (name.endswith("ln_1.weight") or name.endswith("ln_2.weight")) \
                + rng.normal(0, 0.3, shape)
    state["transformer.ln_f.weight"] = 1 + rng.normal(0, 0.1, n_embd)
    state["transformer.ln_f.bias"] = rng.normal(0, 0.1, n_embd)
    state["lm_head.weight"] = state["transformer.wte.weight"]
    args = {"n_layer": n_layer, "n_head": 2, "n_embd": n_embd, "block_size": 12, "vocab_size": 23, "bias": True}
    torch.save({"model_args": args, "model": {k: torch.tensor(v, dtype=torch.float32) for k, v in state.items()}},
               tmp_path / "ckpt.pt")
    model, golden_model = qat.hf_model(tmp_path / "ckpt.pt")
    tokens = rng.integers(0, 23, (2, 12))
    with torch.no_grad():
        logits = model(input_ids=torch.from_numpy(tokens)).logits.numpy()
    np.testing.assert_allclose(logits, golden_model.forward(tokens), atol=1e-4, rtol=0)


# -- a short run, end to end --------------------------------------------------------------------

def test_short_run_lowers_quantized_val_ce_and_eval_reproduces_it(checkpoint, tmp_path):
    from golden.eval import main as eval_main

    out, plot = tmp_path / "qat3", tmp_path / "qat3.png"
    assert qat.main(["--checkpoint", str(checkpoint), "--bits", "3", "--method", "paper", "--steps", "60",
                     "--lr", "3e-3", "--batch-size", "8", "--eval-interval", "30", "--threads", "1",
                     "--plot", str(plot), "--out", str(out), "--quiet"]) == 0
    record = json.loads((out / "qat.json").read_text())
    assert record["final_val_ce"] < record["start_val_ce"] - 0.01
    assert record["steps"] == 60 and len(record["train_losses"]) == 60
    assert {"vocab.json", "train.bin", "val.bin", "config.json", "model.safetensors"} <= {p.name for p in out.iterdir()}
    assert not any(p.name.startswith("optimizer") for p in out.iterdir())
    assert plot.stat().st_size > 10_000

    # Every linear weight is its own PoT quantization: re-quantizing changes no code.
    model = load_checkpoint(out)
    source = load_checkpoint(checkpoint)
    for name in model.linear_names:
        weight = model.weight(name)
        np.testing.assert_array_equal(quantize(weight, 3, "pot-channel").dequantize(), weight)
        assert not np.array_equal(weight, source.weight(name))

    result = tmp_path / "eval.json"
    assert eval_main(["--checkpoint", str(out), "--bits", "3", "--methods", "pot-channel", "--act-bits", "0",
                      "--json", str(result), "--quiet"]) == 0
    rows = json.loads(result.read_text())["rows"]
    assert rows[0]["ce"] == pytest.approx(record["final_val_ce"], abs=1e-4)


def test_gptq_start_is_the_gptq_solution(checkpoint):
    from golden.eval import windows
    from golden.gptq import gptq_pot

    golden_model = load_checkpoint(checkpoint)
    calib, _ = windows(np.fromfile(checkpoint / "train.bin", np.uint16), 32, 1024)
    settings = qat.QatSettings(bits=4, method="gptq-pot")
    scales, latents, rule = qat.initial_quantization(golden_model, settings, calib)
    expected = gptq_pot(golden_model, bits=4, calib_tokens=calib)
    for name in golden_model.linear_names:
        values = qat.pot_values(torch.from_numpy(latents[name]), torch.from_numpy(scales[name]), 4, rule).numpy()
        np.testing.assert_array_equal(values, expected[name].dequantize())


# -- errors -------------------------------------------------------------------------------------

@pytest.mark.parametrize("arguments, message", [
    (["--bits", "9"], "bits must be from 3 to 8"),
    (["--bits", "2"], "bits must be from 3 to 8"),
    (["--method", "nearest"], "Unknown quantization method 'nearest'"),
    (["--method", "paper", "--pot-scale"], "does not take --pot-scale"),
    (["--steps", "0"], "--steps must be a positive integer"),
    (["--lr", "-1"], "--lr must be a positive number"),
    (["--distill", "2"], "--distill must be in"),
])
def test_bad_settings(checkpoint, tmp_path, capsys, arguments, message):
    with pytest.raises(SystemExit) as exit_info:
        run(qat.main, "python -m golden.qat", ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "o"),
                                                    *arguments])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_bad_data_and_checkpoint(checkpoint, tmp_path, capsys):
    empty = tmp_path / "empty.bin"
    empty.write_bytes(b"")
    short = write_tokens(tmp_path / "short.bin", np.arange(10))
    not_gpt2 = tmp_path / "bert"
    not_gpt2.mkdir()
    (not_gpt2 / "config.json").write_text(json.dumps({"model_type": "bert"}))
    (not_gpt2 / "model.safetensors").write_bytes(b"")
    cases = [
        (["--checkpoint", str(checkpoint), "--train", str(empty)], "is empty"),
        (["--checkpoint", str(checkpoint), "--train", str(short)], "too few for one window"),
        (["--checkpoint", str(checkpoint), "--val", str(short)], "hold no window"),
        (["--checkpoint", str(not_gpt2)], "model_type 'bert' is not supported"),
        (["--checkpoint", str(tmp_path / "missing")], "does not exist"),
    ]
    for arguments, message in cases:
        with pytest.raises(SystemExit) as exit_info:
            run(qat.main, "python -m golden.qat", [*arguments, "--out", str(tmp_path / "o"), "--steps", "2",
                                                        "--quiet"])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2, err
        assert message in err and err.count("\n") == 1, err
    assert not (tmp_path / "o").exists()


def test_help_has_defaults_and_example(capsys):
    with pytest.raises(SystemExit):
        qat.main(["--help"])
    text = capsys.readouterr().out
    assert "--out DIR" in text and "(default: 4)" in text and "example:" in text
