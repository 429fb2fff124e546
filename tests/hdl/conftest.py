"""Fixtures of tests/hdl."""

import pytest


@pytest.fixture(scope="session")
def compiled_default():
    """The default hardware model compiled into the integer forward (golden's artefact, as the board would load)."""
    from golden.compile import compile_checkpoint

    return compile_checkpoint()
