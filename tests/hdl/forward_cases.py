"""Simulation helpers for the whole-forward units (tests/hdl/test_forward_*.py)."""

from hdl.forward.simulation import run_streams, set_payload

__all__ = ["set_payload", "stream_through", "tiny_compiled"]


def stream_through(dut, inputs, output, count, *, seed=0, gap=0.25, setup=None):
    """`hdl.forward.simulation.run_streams` with a quarter of the cycles idle on each side: the payloads out."""
    return run_streams(dut, inputs, output, count, seed=seed, gap=gap, setup=setup)[0]


def tiny_compiled(directory, **shape):
    """A small random GPT-2 (`tiny_checkpoints.write_tiny_checkpoint` with `shape`) written to `directory` and
    compiled into the integer forward (golden's artefact, default formats)."""
    from golden.compile import compile_checkpoint
    from tiny_checkpoints import write_tiny_checkpoint

    return compile_checkpoint(write_tiny_checkpoint(directory, **shape))
