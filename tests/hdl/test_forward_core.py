# amaranth: UnusedElaboratable=no
"""The whole forward in hardware against golden: ForwardCore's tokens (and logits) equal IntegerForward.generate's."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden import int_ops
from golden.int_forward import IntegerForward
from hdl.forward.forward_core import ForwardCore, core_steps

from forward_cases import tiny_compiled


def run_core(core, requests, *, seed=0, gap=0.0, max_cycles=2_000_000):
    """`requests`: [(prompt, count, inv_temperature, top_k, seed)]; per request (tokens, logits rows, token cycles).

    ``token cycles``: the cycle each token was taken, counted from the start
    being taken. `gap`: the share of cycles the token consumer and the prompt
    producer idle (seeded), so back-pressure is exercised.
    """
    sim = Simulator(core)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    results = []
    V = core.vocab_size

    async def bench(ctx):
        cycle = 0
        for prompt, count, inv_temperature, top_k, generator_seed in requests:
            p = core.start.payload
            for name, value in (("prompt_length", len(prompt)), ("count", count),
                                ("inv_temperature", inv_temperature), ("top_k", top_k), ("seed", generator_seed)):
                ctx.set(getattr(p, name), value)
            ctx.set(core.start.valid, 1)
            await ctx.tick().until(core.start.ready)
            ctx.set(core.start.valid, 0)
            begin = cycle = 0
            tokens, logits, times, row = [], [], [], []
            pending = list(prompt)
            while len(tokens) < count or (count == 0 and pending):
                if pending and rng.random() >= gap:
                    ctx.set(core.prompt.payload, pending[0])
                    ctx.set(core.prompt.valid, 1)
                else:
                    ctx.set(core.prompt.valid, 0)
                ready = rng.random() >= gap
                ctx.set(core.token.ready, ready)
                await ctx.delay(1e-8)
                assert ctx.get(core.busy)
                if pending and ctx.get(core.prompt.valid) and ctx.get(core.prompt.ready):
                    pending.pop(0)
                if ctx.get(core.logits.valid):
                    row.append(ctx.get(core.logits.payload))
                    if len(row) == V:
                        logits.append(row)
                        row = []
                if ready and ctx.get(core.token.valid):
                    tokens.append(ctx.get(core.token.payload))
                    times.append(cycle - begin)
                await ctx.tick()
                cycle += 1
                assert cycle < max_cycles, f"{len(tokens)} of {count} tokens after {cycle} cycles"
            ctx.set(core.prompt.valid, 0)
            ctx.set(core.token.ready, 0)
            await ctx.tick()
            assert not ctx.get(core.busy)
            results.append((tokens, logits, times))

    sim.add_testbench(bench)
    sim.run()
    return results


def golden_run(forward, prompt, count, inv_temperature, top_k, seed):
    """Golden's tokens (`IntegerForward.generate`) and the logits row of each sampled position."""
    V = forward.config.vocab_size
    tokens = list(forward.generate(prompt, count, inv_temperature=inv_temperature,
                                   top_k=None if top_k == V else top_k, seed=seed))
    cache = forward.new_cache()
    rows = [forward.forward(np.array(prompt), cache)[-1]]
    for token in tokens[:-1]:
        rows.append(forward.forward(np.array([token]), cache)[-1])
    return tokens, np.array(rows[:len(tokens)])


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return tiny_compiled(tmp_path_factory.mktemp("core") / "model", n_layer=2, n_embd=16, n_head=2, vocab_size=23,
                         n_positions=16)


def test_steps(tiny):
    kinds = [s["kind"] for s in core_steps(tiny)]
    assert len(kinds) == 2 * 7 + 2 and [s["gelu"] for s in core_steps(tiny) if s["gelu"] is not None] == [0, 1]


def test_generate(tiny):
    """Greedy, temperature, temperature + top-k (two seeds) and count 0, one core, back-pressure on both sides."""
    forward = IntegerForward(tiny)
    V = tiny.config.vocab_size
    core = ForwardCore(compiled=tiny, context=12, rows=2, columns=3, head_lanes=3)
    requests = [([3, 1, 4], 9, 0, V, 0), ([5], 6, 300, V, 7), ([2, 7, 1, 8], 5, 180, 4, 1),
                ([2, 7, 1, 8], 5, 180, 4, 2), ([9, 9], 0, 0, V, 0), ([0] * 11, 1, 256, 2, 3)]
    results = run_core(core, requests, gap=0.2, seed=1)
    for request, (tokens, logits, _) in zip(requests, results):
        want_tokens, want_logits = golden_run(forward, *request)
        assert tokens == want_tokens, request
        np.testing.assert_array_equal(np.array(logits).reshape(-1, V), want_logits.reshape(-1, V))
    assert len(set(results[1][0])) > 1
