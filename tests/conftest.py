"""Fixtures shared by every test folder."""

import os

import pytest
from hypothesis import settings

from tiny_checkpoints import write_tiny_checkpoint

# On CI every property test runs the same examples on every machine and every run (a failure there is
# reproducible from the log alone); elsewhere hypothesis keeps exploring with fresh random examples.
settings.register_profile("ci", derandomize=True)
if os.environ.get("CI"):
    settings.load_profile("ci")


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A small random GPT-2 checkpoint directory (2 layers, d=16) with its token splits."""
    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny_gpt2"))


def pytest_sessionfinish(session, exitstatus):
    """On CI (``CI`` set), a skipped test fails the run.

    Tests skip only when a tool or package is missing, and ./setup.sh installs every one of them, so on a
    machine it set up a skip means a missing install step, which a green run must not hide."""
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter is not None else []
    if os.environ.get("CI") and skipped and exitstatus == 0:
        reporter.write_line(f"CI: {len(skipped)} tests skipped on a machine set up by ./setup.sh; "
                            "each skip is a missing install step", red=True)
        session.exitstatus = 1
