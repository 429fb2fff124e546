import json
import re
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="training needs torch: pip install torch")
transformers = pytest.importorskip("transformers", reason="training needs transformers: pip install transformers")

from golden.data import Vocab, load_vocab, read_tokens  # noqa: E402
from golden.paths import REPO_DIR, SHAKESPEARE_TEXT  # noqa: E402
from golden.train import TrainSettings, evaluate_ce, main  # noqa: E402

TINY = ["--n-layer", "1", "--n-embd", "16", "--n-head", "2", "--block", "32",
        "--steps", "30", "--batch-size", "16", "--lr", "1e-2", "--min-lr", "1e-3",
        "--warmup", "5", "--eval-interval", "10", "--threads", "1", "--seed", "0", "--quiet"]


def _exit_code(argv):
    """``main(argv)``'s exit status, also when argparse exits."""
    try:
        return main(argv)
    except SystemExit as e:
        return e.code


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(SHAKESPEARE_TEXT.read_text(encoding="utf-8")[:20000], encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def tiny_run(corpus, tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "tiny"
    assert main(["--text", str(corpus), "--out", str(out), *TINY]) == 0
    return out


def test_tiny_run_is_a_gpt2_checkpoint(tiny_run, corpus):
    model = transformers.GPT2LMHeadModel.from_pretrained(tiny_run)
    config = model.config
    assert (config.model_type, config.n_layer, config.n_embd, config.n_head, config.n_positions) == \
        ("gpt2", 1, 16, 2, 32)
    assert config.activation_function == "gelu_new"
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()  # tied
    assert (tiny_run / "model.safetensors").is_file()
    vocab = load_vocab(tiny_run)
    assert vocab == Vocab.from_text(corpus.read_text(encoding="utf-8"))
    assert config.vocab_size == vocab.size
    assert len(read_tokens(tiny_run / "train.bin", vocab.size)) == 18000
    assert len(read_tokens(tiny_run / "val.bin", vocab.size)) == 2000
    assert not [p for p in tiny_run.parent.iterdir() if p.name.startswith(".")]  # no temporaries left


def test_tiny_run_learned(tiny_run):
    record = json.loads((tiny_run / "train.json").read_text())
    assert record["steps"] == 30
    assert record["settings"]["n_embd"] == 16
    history = record["history"]
    assert [h["step"] for h in history] == [0, 10, 20, 30]
    first, last = history[0], history[-1]
    assert first["train_ce"] > np.log(record["vocab_size"]) - 0.3  # untrained: about uniform
    assert last["train_ce"] < first["train_ce"] - 0.5
    assert last["val_ce"] < first["val_ce"] - 0.5
    assert record["final_train_loss"] < first["train_ce"] - 0.5

    # train.json's final val CE is the saved model's CE on the whole val split:
    # every non-overlapping window of 32 inputs predicting the next 32 tokens.
    model = transformers.GPT2LMHeadModel.from_pretrained(tiny_run).eval()
    val = torch.from_numpy(read_tokens(tiny_run / "val.bin").astype(np.int64))
    starts = range(0, len(val) - 32, 32)
    x = torch.stack([val[i:i + 32] for i in starts])
    y = torch.stack([val[i + 1:i + 33] for i in starts])
    assert y.numel() == 1984
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=x).logits.double(), dim=-1)
    ce = -logp.gather(-1, y[..., None]).mean().item()
    assert record["final_val_ce"] == pytest.approx(ce, rel=1e-5)
    assert evaluate_ce(model, val.numpy(), 32) == pytest.approx(ce, rel=1e-5)


def test_seeded(tiny_run, corpus, tmp_path):
    out = tmp_path / "again"
    assert main(["--text", str(corpus), "--out", str(out), *TINY]) == 0
    a = json.loads((tiny_run / "train.json").read_text())
    b = json.loads((out / "train.json").read_text())
    assert a["final_val_ce"] == b["final_val_ce"]
    assert (tiny_run / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()


def test_evaluate_ce_windows():
    # A model that predicts uniformly has CE log(V) on any windows.
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(
        vocab_size=5, n_positions=8, n_embd=8, n_layer=1, n_head=2))
    with torch.no_grad():
        model.lm_head.weight.zero_()
    tokens = np.arange(100) % 5
    assert evaluate_ce(model, tokens, 8) == pytest.approx(np.log(5), rel=1e-6)


def test_lr_schedule():
    s = TrainSettings(steps=100, warmup=10, lr=1e-2, min_lr=1e-3)
    assert s.lr_at(0) == pytest.approx(1e-2 / 11)
    assert s.lr_at(9) == pytest.approx(1e-2 * 10 / 11)
    assert s.lr_at(10) == pytest.approx(1e-2)
    assert s.lr_at(99) == pytest.approx(1e-3)
    lrs = [s.lr_at(i) for i in range(10, 100)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


@pytest.mark.parametrize("args, match", [
    (["--n-embd", "18", "--n-head", "4"], r"--n-embd must be divisible by --n-head \(4\), not 18"),
    (["--steps", "0"], r"--steps must be a positive integer, not 0"),
    (["--warmup", "30", "--steps", "30"], r"--warmup must be in 0\.\.29 .*not 30"),
    (["--lr", "-1"], r"--lr must be a positive number, not -1"),
    (["--min-lr", "1", "--lr", "0.1"], r"--min-lr must be in 0\.\.0\.1 .*not 1"),
    (["--steps", "many"], r"invalid int value: 'many'"),
])
def test_arguments_wrong(corpus, tmp_path, capsys, args, match):
    assert _exit_code(["--text", str(corpus), "--out", str(tmp_path / "out"), *TINY, *args]) != 0
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert re.search(match, err), err
    assert not (tmp_path / "out").exists()


def test_missing_text_file(tmp_path):
    """Run as a user would: one line on stderr, non-zero exit, no output, no traceback."""
    missing = tmp_path / "missing.txt"
    proc = subprocess.run(
        [sys.executable, "-m", "golden.train", "--text", str(missing), "--out", str(tmp_path / "out"), *TINY],
        cwd=REPO_DIR, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert str(missing) in lines[0] and "does not exist" in lines[0]
    assert not (tmp_path / "out").exists()


def test_out_is_a_file(corpus, tmp_path, capsys):
    out = tmp_path / "file"
    out.write_text("keep me")
    assert main(["--text", str(corpus), "--out", str(out), *TINY]) != 0
    assert "is a file" in capsys.readouterr().err
    assert out.read_text() == "keep me"
