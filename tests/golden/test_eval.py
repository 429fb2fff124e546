"""The quality study CLI on checkpoints it has never seen, against transformers."""

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="pip install torch==2.13.0 (the potgen[torch] extra)")
transformers = pytest.importorskip("transformers", reason="pip install 'potgen[torch]'")

from golden.data import write_tokens  # noqa: E402
from golden.eval import main, windows  # noqa: E402
from golden.integer_model import method_names  # noqa: E402


@pytest.fixture(scope="module")
def hf_checkpoint(tmp_path_factory):
    """A small random GPT-2 (weights std 0.3, so every layer moves the logits) saved as Hugging Face saves
    it, with a patterned token stream beside it. Nothing is trained: what the tests assert of it (eval equals
    transformers, the rows it writes) does not depend on how a training run went on this machine."""
    path = tmp_path_factory.mktemp("hf_gpt2")
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=29, n_positions=32, n_embd=32, n_layer=2, n_head=4,
                                     resid_pdrop=0, embd_pdrop=0, attn_pdrop=0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_((1.0 if "ln_" in name and name.endswith("weight") else 0.0) + 0.3 * torch.randn(p.shape))
    rng = np.random.default_rng(0)
    stream = np.zeros(6000, np.uint16)
    for i in range(1, len(stream)):
        stream[i] = rng.integers(29) if rng.random() < 0.1 else (5 * stream[i - 1] + 3) % 29
    model.save_pretrained(path, safe_serialization=True)
    write_tokens(path / "train.bin", stream[:5000])
    write_tokens(path / "val.bin", stream[5000:])
    return path, model


def transformers_ce(model, tokens, block):
    inputs, targets = windows(tokens, block)
    with torch.no_grad():
        logits = model(torch.tensor(inputs)).logits
        return float(torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]),
                                                       torch.tensor(targets).reshape(-1)))


def test_float_ce_equals_transformers_and_pot_rows(hf_checkpoint, tmp_path, capsys):
    path, model = hf_checkpoint
    out = tmp_path / "eval.json"
    plot = tmp_path / "eval.png"
    assert main(["--checkpoint", str(path), "--bits", "3", "4", "6", "--json", str(out), "--plot", str(plot),
                 "--quiet", "--calib-tokens", "512"]) == 0
    result = json.loads(out.read_text())
    tokens = np.fromfile(path / "val.bin", np.uint16)
    assert result["tokens"] == (len(tokens) - 1) // 32 * 32
    assert result["float"]["ce"] == pytest.approx(transformers_ce(model, tokens, 32), abs=1e-4)
    rows = {(r["method"], r["bits"], r["act_bits"]): r for r in result["rows"]}
    assert len(rows) == len(method_names()) * 3 * 2      # every method x bits, float and integer activations
    for (method, bits, act_bits), row in rows.items():
        assert row["delta"] == pytest.approx(row["ce"] - result["float"]["ce"])
        assert row["ppl"] == pytest.approx(np.exp(row["ce"]))
    assert plot.stat().st_size > 10_000
    table = capsys.readouterr().out
    assert "pot-channel" in table and "float" in table


def test_more_bits_and_nearest_rounding_cost_less_on_the_shipped_model(tmp_path):
    """On the shipped float model, a fixed file whose quantization loss is known and material (README: 4-bit
    pot-channel +0.17, paper +0.26, 3-bit pot-channel +0.32 nats), more bits cost less and nearest per-channel
    rounding beats the paper's method, on the first 4,096 val tokens."""
    from golden.paths import DEFAULT_MODEL_DIR

    out = tmp_path / "eval.json"
    assert main(["--checkpoint", str(DEFAULT_MODEL_DIR), "--bits", "3", "4", "6", "--methods", "paper", "pot-channel",
                 "--act-bits", "0", "--max-tokens", "4096", "--json", str(out), "--quiet"]) == 0
    rows = {(r["method"], r["bits"]): r["delta"] for r in json.loads(out.read_text())["rows"]}
    assert rows[("pot-channel", 6)] < rows[("pot-channel", 3)] - 0.05
    assert rows[("pot-channel", 4)] < rows[("paper", 4)] - 0.03


def test_block_and_max_tokens(hf_checkpoint, tmp_path):
    path, _ = hf_checkpoint
    out = tmp_path / "eval.json"
    main(["--checkpoint", str(path), "--bits", "4", "--methods", "pot-channel", "--act-bits", "0",
          "--block", "16", "--max-tokens", "100", "--json", str(out), "--quiet"])
    result = json.loads(out.read_text())
    assert result["tokens"] == 96 and result["block"] == 16
    assert [r["act_bits"] for r in result["rows"]] == [None]


@pytest.mark.parametrize("args, message", [
    (["--bits", "9"], "Weight bits must be from 3 to 8, not 9"),
    (["--bits", "2"], "Weight bits must be from 3 to 8, not 2"),
    (["--act-bits", "17"], "Activation bits must be from 2 to 16, not 17"),
    (["--methods", "log2"], "Unknown quantization method 'log2'"),
    (["--block", "33"], "--block 33 is larger than the model's n_positions 32"),
])
def test_bad_arguments_one_line_and_no_output(hf_checkpoint, tmp_path, args, message, capsys):
    from golden.cli import run
    path, _ = hf_checkpoint
    out = tmp_path / "eval.json"
    with pytest.raises(SystemExit) as exit_info:
        run(main, "eval", ["--checkpoint", str(path), "--json", str(out), "--quiet", *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists()


def test_bad_data_files(hf_checkpoint, tmp_path, capsys):
    from golden.cli import run
    path, _ = hf_checkpoint
    odd = tmp_path / "odd.bin"
    odd.write_bytes(b"\x01\x00\x02")
    big = tmp_path / "big.bin"
    np.array([1, 2, 29], np.uint16).tofile(big)
    for data, message in ((odd, "odd"), (big, "29")):
        with pytest.raises(SystemExit):
            run(main, "eval", ["--checkpoint", str(path), "--data", str(data), "--quiet"])
        assert message in capsys.readouterr().err


def test_not_a_gpt2_checkpoint(tmp_path, capsys):
    from golden.cli import run
    from safetensors.numpy import save_file
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llama"}))
    save_file({"model.embed_tokens.weight": np.zeros((8, 4), np.float32)}, str(tmp_path / "model.safetensors"))
    with pytest.raises(SystemExit):
        run(main, "eval", ["--checkpoint", str(tmp_path), "--quiet"])
    assert "llama" in capsys.readouterr().err


def test_reference_is_the_baseline_and_must_score_the_same_text(hf_checkpoint, tiny_checkpoint, tmp_path, capsys):
    from golden.cli import run
    path, _ = hf_checkpoint
    out = tmp_path / "eval.json"
    # The model as its own reference: every ΔCE is the same as without one.
    assert main(["--checkpoint", str(path), "--reference", str(path), "--bits", "4", "--methods", "pot-channel",
                 "--act-bits", "0", "--json", str(out), "--quiet"]) == 0
    result = json.loads(out.read_text())
    assert result["reference"]["ce"] == result["float"]["ce"] and result["float"]["delta"] == 0
    assert result["rows"][0]["delta"] == result["rows"][0]["ce"] - result["float"]["ce"]
    assert capsys.readouterr().out.splitlines()[1].startswith("reference")
    # A reference of another vocabulary cannot score this text.
    with pytest.raises(SystemExit):
        run(main, "eval", ["--checkpoint", str(path), "--reference", str(tiny_checkpoint), "--quiet"])
    err = capsys.readouterr().err
    assert "vocabulary of 23 tokens" in err and err.count("\n") == 1


def test_integer_forward_rows(hf_checkpoint, tmp_path, capsys):
    """--forward integer adds whole-integer-forward rows, one per table format, beside float and linear."""
    path, _ = hf_checkpoint
    out = tmp_path / "eval.json"
    assert main(["--checkpoint", str(path), "--bits", "4", "--methods", "pot-channel", "--forward", "float",
                 "linear", "integer", "--tables", "int", "pot", "pot-head", "--json", str(out), "--quiet",
                 "--calib-tokens", "512"]) == 0
    rows = json.loads(out.read_text())["rows"]
    assert [(r["forward"], r.get("tables")) for r in rows] == [("float", None), ("linear", None),
                                                                ("integer", "int8"), ("integer", "pot4"),
                                                                ("integer", "int8+pot4 head")]
    float_row, linear_row, integer_row, _, _ = rows
    assert integer_row["act_bits"] == 8 and abs(integer_row["ce"] - linear_row["ce"]) < 0.1
    assert integer_row["delta"] == pytest.approx(integer_row["ce"] - json.loads(out.read_text())["float"]["ce"])
    assert "integer  int8+pot4 head" in capsys.readouterr().out


def test_integer_forward_needs_activation_bits(hf_checkpoint, capsys):
    from golden.cli import run
    path, _ = hf_checkpoint
    with pytest.raises(SystemExit):
        run(main, "eval", ["--checkpoint", str(path), "--forward", "integer", "--act-bits", "0", "--quiet"])
    assert "--forward integer needs activation bits" in capsys.readouterr().err
