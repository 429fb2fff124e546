"""Fixtures shared by every test folder."""

import pytest

from tiny_checkpoints import write_tiny_checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A small random GPT-2 checkpoint directory (2 layers, d=16) with its token splits."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_gpt2"))
