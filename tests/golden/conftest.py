"""Random Hugging Face GPT-2 models for the golden tests to compare against."""

import pytest


@pytest.fixture
def make_hf_model():
    """Factory of random ``transformers.GPT2LMHeadModel`` in eval mode, dropout 0.

    Weights are drawn with std 0.3 (layer-norm gains around 1), much larger
    than GPT-2's init, so that every layer moves the logits.
    """
    torch = pytest.importorskip("torch", reason="needs torch: pip install torch==2.13.0")
    transformers = pytest.importorskip("transformers", reason="needs transformers: pip install transformers")

    def make(*, n_layer=2, n_embd=16, n_head=2, vocab_size=23, n_positions=12, tied=True,
             activation="gelu_new", seed=0, **options):
        """`options` are further GPT2Config fields (n_inner, scale_attn_by_inverse_layer_idx, ...)."""
        config = transformers.GPT2Config(
            vocab_size=vocab_size, n_positions=n_positions, n_embd=n_embd, n_layer=n_layer, n_head=n_head,
            activation_function=activation, tie_word_embeddings=tied, resid_pdrop=0.0, embd_pdrop=0.0,
            attn_pdrop=0.0, bos_token_id=0, eos_token_id=0, **options)
        model = transformers.GPT2LMHeadModel(config).eval()
        generator = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for name, p in model.named_parameters():
                centre = 1.0 if "ln_" in name and name.endswith("weight") else 0.0
                p.copy_(centre + 0.3 * torch.randn(p.shape, generator=generator))
        return model
    return make


@pytest.fixture
def cli(capsys):
    """Run a command's ``main`` as its ``__main__`` does: ``cli(main, argv) -> (status, stdout, stderr)``."""
    from golden.cli import run

    def call(main, argv):
        capsys.readouterr()
        with pytest.raises(SystemExit) as exit_info:
            run(main, "python -m potgen-command", [str(arg) for arg in argv])
        captured = capsys.readouterr()
        return exit_info.value.code, captured.out, captured.err
    return call
