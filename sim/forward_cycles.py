"""Cycles per token of the whole-forward design, measured on its board top in Verilator.

`measure_cycles` runs one GENERATE on `boards.forward_sim.ForwardSim` (the
board top `hdl.build --design forward` builds, UART included): a prompt of
one id, then ``context - 1`` greedy tokens, the most a context holds. Token
``j`` is sampled from the logits of position ``j``, so the simulated time
between tokens ``j - 1`` and ``j`` arriving at the host is the cycles of
position ``j``: its embedding, every layer, ``ln_f``, the head and the
sampler (the UART's delay is the same for every token and cancels). The
first interval is position 1; the last is position ``context - 2``, the
furthest a token can be made from (its attention reads ``context - 1`` keys).
"""

__all__ = ["measure_cycles"]


def measure_cycles(compiled, *, board, context, say=None, **core_options):
    """``{"position_1", "full_context", "full_context_position", "per_position"}``: simulated cycles.

    `core_options` go to `ForwardCore` (array shape, lanes). ``per_position[j - 1]`` is the cycles of position ``j`` (1 .. ``context - 2``). Needs ``context >= 3``.
    The tokens are checked against `golden.int_forward.IntegerForward.generate` (a mismatch raises
    `AssertionError` naming the first differing token): a cycle count of wrong hardware is no figure.
    """
    from boards.board_sim import clock_period_ps
    from boards.forward_sim import ForwardSim
    from golden.int_forward import IntegerForward

    if context < 3:
        raise ValueError(f"cycles per token need a context of at least 3 positions, not {context}")
    sim = ForwardSim(compiled, board=board, context=context, say=say, **core_options)
    prompt, count = [0], context - 1
    (result,) = sim.generate([{"prompt": prompt, "count": count, "inv_temperature": 0, "top_k": None, "seed": 0}])
    expected = [int(t) for t in IntegerForward(compiled).generate(prompt, count, inv_temperature=0, top_k=None,
                                                                  seed=0)]
    got = result.get("tokens", [])
    if got != expected:
        first = next((i for i, (a, b) in enumerate(zip(got, expected)) if a != b), min(len(got), len(expected)))
        raise AssertionError(f"the simulated board's tokens differ from golden's at token {first} "
                             f"({got[first:first + 4]} against {expected[first:first + 4]}, status "
                             f"{result.get('status')})")
    period_s = clock_period_ps(sim.top.frequency) * 1e-12        # the period the testbench's clock runs at
    times = result["token_s"]
    per_position = [round((later - earlier) / period_s) for earlier, later in zip(times, times[1:])]
    return {"position_1": per_position[0], "full_context": per_position[-1], "full_context_position": context - 2,
            "per_position": per_position}
