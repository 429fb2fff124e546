"""Simulation helpers for the whole-forward units (tests/hdl/test_forward_*.py)."""

from hdl.forward.simulation import run_streams, set_payload

__all__ = ["set_payload", "stream_through"]


def stream_through(dut, inputs, output, count, *, seed=0, gap=0.25, setup=None):
    """`hdl.forward.simulation.run_streams` with a quarter of the cycles idle on each side: the payloads out."""
    return run_streams(dut, inputs, output, count, seed=seed, gap=gap, setup=setup)[0]
