"""Fixtures of the board tests."""

import pytest


@pytest.fixture(scope="session")
def verilator():
    """Skip the test, naming what to install, when Verilator is missing (./setup.sh installs it)."""
    from sim.tools import SimulatorMissing, find_simulator
    try:
        find_simulator("verilator")
    except SimulatorMissing as error:
        pytest.skip(str(error))
