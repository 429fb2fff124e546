"""Text generation: the host's share of the model, with the linear layers on a back-end."""

import numpy as np
import pytest

from boards.generate import Generator, main, sample
from golden.cli import run
from golden.data import load_vocab
from golden.model_loading import load_integer_model


def generate(model, vocab, linear, tokens=16, seed=0):
    return "".join(Generator(model, vocab, linear).stream("abc", tokens, temperature=1.0, seed=seed))


def test_offloaded_integer_work_gives_identical_text(tiny_checkpoint):
    """Any back-end that returns golden's accumulators yields golden's text, token for token."""
    integer = load_integer_model(tiny_checkpoint)
    vocab = load_vocab(tiny_checkpoint)
    calls = []

    def accumulate(name, x_int):
        calls.append((name, x_int.shape))
        return integer.layers[name].accumulate(x_int)

    golden_text = generate(integer.model, vocab, integer.linear)
    offloaded_text = generate(integer.model, vocab, integer.offloaded_linear(accumulate))
    assert offloaded_text == golden_text and len(golden_text) == 16
    # The prompt goes through every layer at once, then one token per step (batch-1 decode).
    assert calls[0] == ("h.0.attn.c_attn", (3, 16)) and calls[len(integer.layers)] == ("h.0.attn.c_attn", (1, 16))


def test_a_wrong_accumulator_changes_the_text(tiny_checkpoint):
    integer = load_integer_model(tiny_checkpoint)
    vocab = load_vocab(tiny_checkpoint)

    def off_by_a_lot(name, x_int):
        acc = integer.layers[name].accumulate(x_int)
        return acc + (1 << 20) * (name == "h.1.mlp.c_fc")

    assert generate(integer.model, vocab, integer.offloaded_linear(off_by_a_lot), 32) != \
        generate(integer.model, vocab, integer.linear, 32)


def test_greedy_and_top_k_sampling():
    rng = np.random.default_rng(0)
    logits = np.array([0.0, 3.0, 2.9, -1.0])
    assert sample(logits, rng, 0, None) == 1
    assert {sample(logits, rng, 5.0, 2) for _ in range(200)} == {1, 2}


def test_cli_streams_text(tiny_checkpoint, capsys):
    assert main(["--checkpoint", str(tiny_checkpoint), "--prompt", "ab", "--tokens", "10", "--seed", "3"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("ab") and len(out.rstrip("\n")) == 12


@pytest.mark.parametrize("args, message", [
    (["--prompt", "aZ"], "Character 'Z' at position 1 is not in the vocabulary"),
    (["--backend", "board"], "needs --port"),
    (["--tokens", "0"], "--tokens must be a positive integer, not 0"),
])
def test_bad_input(tiny_checkpoint, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(main, "generate", ["--checkpoint", str(tiny_checkpoint), *args])
    assert exit_info.value.code == 2 and message in capsys.readouterr().err


def integer_text(checkpoint, capsys, *args):
    assert main(["--checkpoint", str(checkpoint), "--backend", "integer", "--prompt", "ab", "--tokens", "24",
                 *args]) == 0
    return capsys.readouterr().out


def test_integer_backend_same_seed_same_text(tiny_checkpoint, tmp_path, capsys):
    """The whole integer forward, sampler included: a seed gives one text; another seed, another text."""
    first = integer_text(tiny_checkpoint, capsys, "--seed", "3")
    assert first.startswith("ab") and len(first.rstrip("\n")) == 26
    assert integer_text(tiny_checkpoint, capsys, "--seed", "3") == first
    assert integer_text(tiny_checkpoint, capsys, "--seed", "4") != first
    from golden.export import main as export_main
    export_main(["--checkpoint", str(tiny_checkpoint), "--compiled", "--out", str(tmp_path / "c"), "--quiet"])
    capsys.readouterr()
    assert integer_text(tiny_checkpoint, capsys, "--seed", "3", "--compiled", str(tmp_path / "c")) == first
    greedy = integer_text(tiny_checkpoint, capsys, "--temperature", "0", "--seed", "1")
    assert integer_text(tiny_checkpoint, capsys, "--top-k", "1", "--seed", "2") == greedy


@pytest.mark.parametrize("args, message", [
    (["--temperature", "0.001"], "--temperature 0.001 does not fit the integer sampler"),
    (["--top-k", "24"], "--top-k must be at most the vocabulary size 23, not 24"),
    (["--seed", "-1"], "Seed must be an integer from 0 to 4294967294, not -1"),
])
def test_integer_backend_bad_input(tiny_checkpoint, args, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run(main, "generate", ["--checkpoint", str(tiny_checkpoint), "--backend", "integer", "--prompt", "a", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1


def test_compiled_needs_the_integer_backend(tiny_checkpoint, capsys):
    with pytest.raises(SystemExit):
        run(main, "generate", ["--checkpoint", str(tiny_checkpoint), "--compiled", "x"])
    assert "--compiled runs on the integer back-end or the forward design, not golden" in capsys.readouterr().err
