"""Fixtures of the simulation tests: the model to run, and the simulators (skipped, with how to get them)."""

import pytest

from golden.paths import DEFAULT_MODEL_DIR
from sim.tools import SimulatorMissing, find_simulator


@pytest.fixture(scope="session")
def default_checkpoint(tiny_checkpoint):
    """The default model (golden/models/shakespeare_char) when it is there, else the tiny random checkpoint."""
    return DEFAULT_MODEL_DIR if (DEFAULT_MODEL_DIR / "config.json").is_file() else tiny_checkpoint


@pytest.fixture
def need():
    """``need(simulator)`` skips the test, saying how to install `simulator`, when it is absent."""
    def need(simulator):
        try:
            find_simulator(simulator)
        except SimulatorMissing as error:
            pytest.skip(str(error))
    return need
