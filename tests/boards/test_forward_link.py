# amaranth: UnusedElaboratable=no
"""The forward link behind a real UART: IDENTIFY, GENERATE, every error answered, the next request served.

The core's side of the link (start, prompt, token, busy) is driven by a
testbench process that plays the core's protocol (`hdl.forward.forward_core`):
it takes a start, the prompt's ids, and answers a known function of them, a
token at a time with pauses; so these tests are about the link only. The
board top with the real core is tested in test_forward_top.py.
"""

import struct

import numpy as np
import pytest
from amaranth import Module
from amaranth.hdl import Fragment
from amaranth.lib import wiring

from boards.forward_link import ForwardLink
from boards.forward_protocol import Command, ForwardIdentity, encode_generate
from boards.protocol import Status, encode_request
from boards.hosted_top import connect_uart
from boards.uart import UART
from uart_host import run_link

DIVISOR = 4
VOCAB, CONTEXT = 23, 8
TIMEOUT = 400
IDENTITY = ForwardIdentity(vocab_size=VOCAB, context=CONTEXT, n_layer=2, n_head=2, n_embd=16,
                           clock_hz=36_000_000, divisor=DIVISOR, digest=bytes(range(8)))


def core_tokens(settings, prompt):
    """What the testbench core answers: a known function of the settings and the prompt."""
    base = sum((i + 1) * token for i, token in enumerate(prompt)) + settings["seed"]
    return [(base + i * (settings["top_k"] + settings["inv_temperature"])) % VOCAB for i in range(settings["count"])]


class Bench(wiring.Component):
    """The link with (`uart`) a UART in front; else the host uses the link's byte streams."""

    def __init__(self, uart=True, identity=IDENTITY):
        self.uart = UART(divisor=DIVISOR) if uart else None
        self.link = ForwardLink(identity=identity, timeout=TIMEOUT)
        super().__init__({"rx": wiring.In(1, init=1), "tx": wiring.Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        if self.uart is not None:
            m.submodules.uart = self.uart
            connect_uart(m, platform, on_board=False, uart=self.uart, link=self.link, pll=None, led=None,
                         rx=self.rx, tx=self.tx)
        return m


def simulate(script, *, uart=False, cycles=100_000, seed=0, identity=IDENTITY, bench=None, extra=None,
             busy=lambda: False):
    """Run `script(ctx, host)` against the link and the testbench core; returns the core's log:
    a (settings, prompt, tokens) per generation it was started for. ``extra(ctx)`` is called every cycle
    (it drives the link's other inputs); ``busy()`` holds the core busy (its codes not in)."""
    bench = bench or Bench(uart, identity)
    link = bench.link
    log = []
    rng = np.random.default_rng(seed)

    async def core(ctx, done):
        # Polls every cycle (rather than awaiting `until`) so that it ends with the host script, and
        # stalls at random, as the real core does while it computes.
        pending, prompt, settings, tokens = 0, [], None, []
        while not done():
            stall = rng.random() < 0.3
            ctx.set(link.start.ready, settings is None and not stall)
            ctx.set(link.prompt.ready, pending > 0 and not stall)
            ctx.set(link.token.valid, bool(tokens) and not pending and not stall)
            if tokens:
                ctx.set(link.token.payload, tokens[0])
            ctx.set(link.busy, settings is not None or busy())
            if extra is not None:
                extra(ctx)
            _, _, s_valid, s_ready, start, p_valid, p_ready, p_payload, t_valid, t_ready = \
                await ctx.tick().sample(link.start.valid, link.start.ready, link.start.payload, link.prompt.valid,
                                        link.prompt.ready, link.prompt.payload, link.token.valid, link.token.ready)
            if s_valid and s_ready:
                settings = {name: int(getattr(start, name)) for name in
                            ("prompt_length", "count", "inv_temperature", "top_k", "seed")}
                pending, prompt = settings["prompt_length"], []
            elif p_valid and p_ready:
                prompt.append(int(p_payload))
                pending -= 1
                if not pending:
                    tokens = core_tokens(settings, prompt)
                    log.append((settings, prompt, list(tokens)))
            elif t_valid and t_ready:
                tokens.pop(0)
                if not tokens:
                    settings = None

    run_link(bench, link, script, core, uart=uart, divisor=DIVISOR, limit=4 * TIMEOUT, cycles=cycles)
    return log


def generate(ids, count, inv_temperature=200, top_k=VOCAB, seed=7):
    return encode_generate(ids, count, inv_temperature=inv_temperature, top_k=top_k, seed=seed)


def tokens_of(payload):
    return list(struct.unpack(f"<{len(payload) // 2}H", payload))


def test_init():
    link = ForwardLink(identity=IDENTITY, timeout=TIMEOUT)
    assert (link.identity, link.context, link.vocab_size, link.timeout) == (IDENTITY, CONTEXT, VOCAB, TIMEOUT)
    assert len(link.prompt.payload) == 5 and len(link.start.payload.top_k) == 5
    Fragment.get(link, None)


@pytest.mark.parametrize("identity, timeout, message", [
    (b"\x00" * 36, TIMEOUT, "Identity must be"),
    (IDENTITY.__class__(**{**IDENTITY.__dict__, "context": 0}), TIMEOUT, "Context must be 1 to 32762"),
    (IDENTITY.__class__(**{**IDENTITY.__dict__, "vocab_size": 0}), TIMEOUT, "Vocabulary size must be"),
    (IDENTITY, 0, "Timeout must be a positive integer, not 0"),
])
def test_params_wrong(identity, timeout, message):
    with pytest.raises((TypeError, ValueError), match=message):
        ForwardLink(identity=identity, timeout=timeout)


def test_sim_identify():
    answers = []

    async def script(ctx, host):
        answers.append(await host.request(Command.IDENTIFY))

    simulate(script, uart=True)
    status, payload = answers[0]
    assert status == Status.OK and ForwardIdentity.unpack(payload) == IDENTITY


@pytest.mark.parametrize("uart", [False, True])
def test_sim_generate(uart):
    """The core gets the settings with count = min(count, context - n) and the prompt; the host gets its tokens."""
    requests = [([3, 1, 4, 1, 5], 2, 256, 10, 0),          # count below the room left
                ([22], 50, 0, VOCAB, 0xFFFF_FFFE),          # count cut to context - n, greedy, the largest seed
                ([9, 2, 6, 5, 3, 5, 8, 9][:CONTEXT], 5, 1, 1, 3)]    # a full context: no token
    if not uart:
        requests += [([0, 0], 0, 7, 3, 1),                  # count 0
                     ([21, 0, 13], 0xFFFF, 65535, 22, 12345)]
    answers = []

    async def script(ctx, host):
        for ids, count, inv_t, top_k, seed in requests:
            await host.send(generate(ids, count, inv_t, top_k, seed))
            answers.append(await host.response())

    log = simulate(script, uart=uart)
    started = [r for r in requests if min(r[1], CONTEXT - len(r[0]))]
    assert len(log) == len(started), "the core was started for a generation with no token"
    for (ids, count, inv_t, top_k, seed), (settings, prompt, tokens) in zip(started, log):
        assert settings == {"prompt_length": len(ids), "count": min(count, CONTEXT - len(ids)),
                            "inv_temperature": inv_t, "top_k": top_k, "seed": seed}
        assert prompt == ids
    expected = iter(tokens for _, _, tokens in log)
    for (ids, count, *_), (status, payload) in zip(requests, answers):
        assert status == Status.OK
        assert tokens_of(payload) == (next(expected) if min(count, CONTEXT - len(ids)) else [])


def test_sim_errors_answered_and_in_step():
    """Each malformed request gets its error with its payload dropped, never reaches the core, and the
    next request works."""
    good = ([1, 2, 3], 4)
    cases = [
        (encode_request(0x00, b"junk"), Status.BAD_COMMAND),
        (encode_request(Command.IDENTIFY, b"x"), Status.BAD_LENGTH),
        (encode_request(Command.GENERATE, b""), Status.BAD_LENGTH),
        (encode_request(Command.GENERATE, bytes(10)), Status.BAD_LENGTH),               # no id
        (encode_request(Command.GENERATE, bytes(13)), Status.BAD_LENGTH),               # odd
        (generate(list(range(CONTEXT + 1)), 1), Status.BAD_LENGTH),                    # longer than the context
        (generate([1, VOCAB, 2], 3), Status.BAD_ARGUMENT),                              # an id outside the vocab
        (generate([1, 2, 0xFFFF], 3), Status.BAD_ARGUMENT),
        (generate([1, 2], 3, top_k=0), Status.BAD_ARGUMENT),
        (generate([1, 2], 3, top_k=VOCAB + 1), Status.BAD_ARGUMENT),
        (generate([1, 2], 3, seed=0xFFFF_FFFF), Status.BAD_ARGUMENT),                  # sampler state 0
    ]
    answers = []

    async def script(ctx, host):
        for request, _ in cases:
            await host.send(request)
            answers.append(await host.response())
            await host.send(generate(*good))
            answers.append(await host.response())

    log = simulate(script, cycles=200_000)
    assert len(log) == len(cases), "a rejected GENERATE reached the core"
    for i, (_, expected) in enumerate(cases):
        assert answers[2 * i] == (expected, b""), f"case {i}"
        assert answers[2 * i + 1][0] == Status.OK and tokens_of(answers[2 * i + 1][1]) == log[i][2]
        assert log[i][1] == good[0]


def test_sim_timeouts():
    """A request cut short anywhere is answered TIMEOUT without starting the core; the next one works."""
    request = generate([5, 6, 7], 2)
    answers = []

    async def script(ctx, host):
        for cut in (1, 2, 3 + 4, len(request) - 1):                 # command, length, arguments, ids
            await host.send(request[:cut])
            answers.append(await host.response())
        await host.send(request)
        answers.append(await host.response())

    log = simulate(script)
    assert answers[:4] == [(Status.TIMEOUT, b"")] * 4
    assert len(log) == 1 and log[0][1] == [5, 6, 7]
    assert answers[4] == (Status.OK, struct.pack("<2H", *log[0][2]))


def test_sim_line_error():
    """A character with a bad stop bit inside a GENERATE makes its answer LINE_ERROR; the core is not started."""
    request = generate([5, 6, 7], 2)
    answers = []

    async def script(ctx, host):
        await host.send(request[:14])
        await host.send(request[14:15], bad_stop=True)       # dropped by the UART
        await host.send(request[15:] + b"\x00")               # one byte more makes up the length
        answers.append(await host.response())
        await host.send(request)
        answers.append(await host.response())

    log = simulate(script, uart=True)
    assert answers[0] == (Status.LINE_ERROR, b"")
    assert len(log) == 1 and answers[1] == (Status.OK, struct.pack("<2H", *log[0][2]))


BOOTING = ForwardIdentity(**{**IDENTITY.__dict__, "rows": 4, "columns": 3, "code_words": 6, "loads_codes": True})


def test_sim_codes_from_the_flash():
    """A build whose codes come from the flash: IDENTIFY's flags follow the boot (not in, in, missing); a
    GENERATE sent while the codes are not in waits for them (the top holds busy), and once the boot has
    failed it is answered NOT_LOADED with its payload read; LOAD (the linear design's, and protocol 3's)
    is a BAD_COMMAND."""
    answers, waiting = [], []
    boot = {"loaded": 0, "failed": 0}

    async def script(ctx, host):
        answers.append(await host.request(Command.IDENTIFY))
        await host.send(generate([1, 2], 3))
        await ctx.tick().repeat(3000)                       # the codes are not in: no answer yet
        waiting.append(ctx.get(bench.link.tx.valid))
        boot["loaded"] = 1
        answers.append(await host.response())
        answers.append(await host.request(Command.IDENTIFY))
        answers.append(await host.request(0x4C, b"\x00\x00\x00\x01\x00"))
        boot.update(loaded=0, failed=1)
        await ctx.tick().repeat(2)
        answers.append(await host.request(Command.IDENTIFY))
        await host.send(generate([1, 2], 3))
        answers.append(await host.response())

    def codes(ctx):
        ctx.set(bench.link.codes_loaded, boot["loaded"])
        ctx.set(bench.link.codes_failed, boot["failed"])

    bench = Bench(False, BOOTING)
    log = simulate(script, identity=BOOTING, bench=bench, extra=codes, busy=lambda: not boot["loaded"])
    identities = [ForwardIdentity.unpack(answers[i][1]) for i in (0, 2, 4)]
    assert [(i.codes_loaded, i.codes_missing) for i in identities] == [(False, False), (True, False), (False, True)]
    assert not identities[0].mismatches(BOOTING) and identities[0].loads_codes
    assert waiting == [0] and answers[1][0] == Status.OK and len(log) == 1 and tokens_of(answers[1][1]) == log[0][2]
    assert answers[3] == (Status.BAD_COMMAND, b"")
    assert answers[5] == (Status.NOT_LOADED, b"") and len(log) == 1


@pytest.mark.parametrize("constant", [-1, 0, 1, 11, 22, 23, 128, 137, 254, 255, 256, 1000])
def test_above_is_greater_than(constant):
    """`above(value, c)`, the carry-free comparison the link's checks use: ``value > c`` for every 8-bit value."""
    from amaranth import Module, Signal
    from amaranth.sim import Simulator

    from boards.link_framing import above

    value = Signal(8)
    m = Module()
    result = Signal()
    m.d.comb += result.eq(above(value, constant))
    seen = []

    async def bench(ctx):
        for v in range(256):
            ctx.set(value, v)
            seen.append(ctx.get(result))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert seen == [int(v > constant) for v in range(256)]


def test_sim_wide_vocabulary():
    """A vocabulary above 256 ids: the buffer holds 16-bit words (the identity two bytes a word); IDENTIFY,
    an id of 299 taken, one of 300 refused."""
    wide = ForwardIdentity(**{**IDENTITY.__dict__, "vocab_size": 300})
    answers = []

    async def script(ctx, host):
        answers.append(await host.request(Command.IDENTIFY))
        await host.send(generate([299, 0], 2, top_k=300))
        answers.append(await host.response())
        await host.send(generate([300, 0], 2, top_k=300))
        answers.append(await host.response())
        await host.send(generate([1, 0], 2, top_k=301))
        answers.append(await host.response())

    log = simulate(script, identity=wide)
    assert ForwardLink(identity=wide, timeout=TIMEOUT).buffer_width == 16
    assert answers[0][0] == Status.OK and ForwardIdentity.unpack(answers[0][1]) == wide
    assert answers[1][0] == Status.OK and len(log) == 1 and log[0][1] == [299, 0] and log[0][0]["top_k"] == 300
    assert answers[2:] == [(Status.BAD_ARGUMENT, b"")] * 2
