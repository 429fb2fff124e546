# amaranth: UnusedElaboratable=no
"""The sampler's serial xorshift32 against golden: its bits, least significant first, 32 per state."""

import pytest
from hypothesis import given, settings, strategies as st

from golden.int_ops import XORSHIFT_SEED_MAX, seed_state, xorshift32
from hdl.forward.serial_xorshift32 import SerialXorshift32

from forward_cases import stream_through


def golden_bits(seed, values):
    state, bits = seed_state(seed), []
    for _ in range(values):
        state = xorshift32(state)
        bits += [(state >> i) & 1 for i in range(32)]
    return bits


@pytest.mark.parametrize("seed", [0, 1, 12345, XORSHIFT_SEED_MAX])
def test_sequence(seed):
    """12 states after a seed load, bit by bit, with a quarter of the cycles idle on the consumer's side."""
    got = stream_through(SerialXorshift32(), {"seed": [seed_state(seed)]}, "o", 12 * 32, seed=seed % 97)
    assert got == golden_bits(seed, 12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, XORSHIFT_SEED_MAX))
def test_random_seeds(seed):
    """Any seed: the first three states (every tap of every pass, at every bit position, meets some 1 bit)."""
    got = stream_through(SerialXorshift32(), {"seed": [seed_state(seed)]}, "o", 3 * 32, seed=seed % 89, gap=0.0)
    assert got == golden_bits(seed, 3)
