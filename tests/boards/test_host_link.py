# amaranth: UnusedElaboratable=no
"""The host link behind a real UART: every command, every error answered, never a hang.

The engine here is a stand-in testbench process (a known function of the
activations and the layer), so these tests are about the protocol only; the
board top with the real engine is tested in test_icebreaker.py.
"""

import struct

import numpy as np
import pytest
from amaranth import Module
from amaranth.hdl import Fragment
from amaranth.lib import wiring
from amaranth.lib.memory import Memory

from boards.host_link import HostLink
from boards.protocol import (Command, Identity, Status, decode_results, encode_activations, encode_load,
                             encode_request, load_checksum)
from boards.hosted_top import connect_uart
from boards.uart import UART
from uart_host import run_link

DIVISOR = 4
LAYERS = [(3, 5), (4, 2)]
ACT_BITS, ACC_BITS = 8, 20
MAX_TOKENS = 3
BANKS, BANK_WORDS = 2, 40
TIMEOUT = 400
IDENTITY = Identity(rows=MAX_TOKENS, columns=8, bits=4, act_bits=ACT_BITS, acc_bits=ACC_BITS, columns_per_word=4,
                    banks=BANKS, bank_words=BANK_WORDS, layers=len(LAYERS), max_tokens=MAX_TOKENS,
                    clock_hz=100_000_000, divisor=DIVISOR, digest=bytes(range(8)))


def stand_in(layer, x):
    """What the stand-in engine answers for activations x (T, K) of `layer`: (T, N) accumulators."""
    k, n = LAYERS[layer]
    acc = x @ (np.arange(k)[:, None] + 1 + np.arange(n)[None, :] * 7) - 1000 * layer
    half = 1 << (ACC_BITS - 1)
    return (acc + half) % (2 * half) - half


def make_link(**overrides):
    params = dict(identity=IDENTITY, layers=LAYERS, act_bits=ACT_BITS, acc_bits=ACC_BITS, max_tokens=MAX_TOKENS,
                  banks=BANKS, bank_words=BANK_WORDS, timeout=TIMEOUT)
    params.update(overrides)
    return HostLink(**params)


class Bench(wiring.Component):
    """The link, code banks of plain Memory, and (with `uart`) a UART in front; else the host uses the streams."""

    def __init__(self, uart=True):
        self.uart = UART(divisor=DIVISOR) if uart else None
        self.link = make_link()
        self.banks = [Memory(shape=16, depth=BANK_WORDS, init=[]) for _ in range(BANKS)]
        super().__init__({"rx": wiring.In(1, init=1), "tx": wiring.Out(1, init=1)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.link = self.link
        if self.uart is not None:
            m.submodules.uart = self.uart
            connect_uart(m, platform, on_board=False, uart=self.uart, link=self.link, pll=None, led=None,
                         rx=self.rx, tx=self.tx)
        for i, memory in enumerate(self.banks):
            m.submodules[f"bank{i}"] = memory
            port = memory.write_port()
            m.d.comb += [port.addr.eq(self.link.code_write.addr), port.data.eq(self.link.code_write.data),
                         port.en.eq(self.link.code_write.en & (self.link.code_write.bank == i))]
        return m


def simulate(script, *, uart=False, cycles=200_000):
    """Run `script(ctx, host, bench)` against the bench with the stand-in engine; returns the engine's log.

    Without `uart` the host talks to the link's byte streams directly (a byte a
    cycle at most), which is what most protocol tests need and 40x faster.
    """
    bench = Bench(uart)
    link = bench.link
    batches = []

    async def engine(ctx, done):
        # Polls every cycle (rather than awaiting `until`) so that it ends with the host script.
        values, results = [], []
        while not done():
            ctx.set(link.activations.ready, not results)
            ctx.set(link.results.valid, bool(results))
            if results:
                ctx.set(link.results.payload, {"data": int(results[0]), "last": len(results) == 1})
            _, _, a_valid, a_payload, layer, r_ready = await ctx.tick().sample(
                link.activations.valid, link.activations.payload, link.layer, link.results.ready)
            if results and r_ready:
                results.pop(0)
            elif not results and a_valid:
                values.append(a_payload.data)
                if a_payload.last:
                    k = LAYERS[layer][0]
                    assert len(values) % k == 0, f"batch of {len(values)} values for K = {k}"
                    x = np.array(values, dtype=np.int64).reshape(-1, k)
                    batches.append((layer, x))
                    results, values = list(stand_in(layer, x).flat), []

    run_link(bench, link, lambda ctx, host: script(ctx, host, bench), engine, uart=uart, divisor=DIVISOR,
             limit=4 * TIMEOUT, cycles=cycles)
    return batches


def test_init():
    link = make_link()
    assert link.identity == IDENTITY and link.max_tokens == MAX_TOKENS and link.timeout == TIMEOUT
    assert len(link.layer) == 1 and len(link.code_write.addr) == 6
    Fragment.get(link, None)


@pytest.mark.parametrize("field, value, message", [
    ("identity", b"\x00" * 32, "Identity must be"),
    ("layers", [], "Layers must be"),
    ("layers", [(0, 3)], "Layers must be"),
    ("act_bits", 0, "Activation bits must be a positive integer, not 0"),
    ("act_bits", 17, "Activations must be at most 16 bits, not 17"),
    ("acc_bits", -1, "Accumulator bits must be a positive integer, not -1"),
    ("max_tokens", 0, "Token count must be a positive integer, not 0"),
    ("max_tokens", 10_000, "A RUN of 10000 tokens needs"),
    ("banks", 0, "Bank count must be a positive integer, not 0"),
    ("bank_words", None, "Bank words must be a positive integer, not None"),
    ("word_width", 17, "Code words must be at most 16 bits, not 17"),
    ("timeout", 0, "Timeout must be a positive integer, not 0"),
])
def test_params_wrong(field, value, message):
    with pytest.raises((TypeError, ValueError), match=message):
        make_link(**{field: value})


def test_sim_identify():
    answers = []

    async def script(ctx, host, bench):
        answers.append(await host.request(Command.IDENTIFY))

    simulate(script, uart=True)
    status, payload = answers[0]
    assert status == Status.OK and Identity.unpack(payload) == IDENTITY


def test_sim_load():
    """LOAD writes words where it says and answers their checksum."""
    words = np.array([0x1234, 0xFFFF, 0x0000, 0xBEEF, 0x8001], dtype=np.uint16)
    contents = {}

    async def script(ctx, host, bench):
        contents["answer"] = await host.request(Command.LOAD, encode_load(1, 35, words)[3:])
        contents["bank1"] = [ctx.get(bench.banks[1].data[i]) for i in range(BANK_WORDS)]
        contents["bank0"] = [ctx.get(bench.banks[0].data[i]) for i in range(BANK_WORDS)]

    simulate(script)
    assert contents["answer"] == (Status.OK, struct.pack("<H", load_checksum(words)))
    assert contents["bank1"][35:40] == list(words) and not any(contents["bank1"][:35])
    assert not any(contents["bank0"])


@pytest.mark.parametrize("tokens, uart", [(1, False), (MAX_TOKENS, True)])
def test_sim_layer_and_run(tokens, uart):
    """RUN feeds T tokens as one batch (last on its final value) and returns T x N accumulators."""
    rng = np.random.default_rng(tokens)
    answers = []
    xs = [rng.integers(-128, 128, size=(tokens, k)) for k, _ in LAYERS]
    xs[0][0, 0] = -128

    async def script(ctx, host, bench):
        for layer in (1, 0):
            answers.append(await host.request(Command.LAYER, bytes([layer])))
            answers.append(await host.request(Command.RUN, encode_activations(xs[layer], ACT_BITS)))

    batches = simulate(script, uart=uart)
    assert [status for status, _ in answers] == [Status.OK] * 4
    assert [layer for layer, _ in batches] == [1, 0]
    for (layer, x), (_, payload) in zip(batches, answers[1::2]):
        np.testing.assert_array_equal(x, xs[layer])
        n = LAYERS[layer][1]
        np.testing.assert_array_equal(decode_results(payload, tokens, n, ACC_BITS), stand_in(layer, xs[layer]))


def test_sim_errors_answered_and_in_step():
    """Each malformed request gets its error, its payload is dropped, and the next request works."""
    k0 = LAYERS[0][0]
    cases = [
        (encode_request(0x00, b"junk"), Status.BAD_COMMAND),
        (encode_request(Command.IDENTIFY, b"x"), Status.BAD_LENGTH),
        (encode_request(Command.LOAD, b"\x00\x00\x00\x01"), Status.BAD_LENGTH),          # no whole word
        (encode_request(Command.LOAD, b"\x00\x00\x00\x01\x02\x03"), Status.BAD_LENGTH),  # odd bytes of words
        (encode_load(2, 0, [1]), Status.BAD_ARGUMENT),                                    # no bank 2
        (encode_load(0, BANK_WORDS - 1, [1, 2]), Status.BAD_ARGUMENT),                    # runs past the bank
        (encode_load(0, 0xFFFF, [1]), Status.BAD_ARGUMENT),
        (encode_request(Command.LAYER, b""), Status.BAD_LENGTH),
        (encode_request(Command.LAYER, b"\x01\x00"), Status.BAD_LENGTH),
        (encode_request(Command.LAYER, bytes([len(LAYERS)])), Status.BAD_ARGUMENT),
        (encode_request(Command.RUN, b""), Status.BAD_LENGTH),
        (encode_request(Command.RUN, bytes(k0 + 1)), Status.BAD_LENGTH),
        (encode_request(Command.RUN, bytes(k0 * (MAX_TOKENS + 1))), Status.BAD_LENGTH),
    ]
    answers = []

    async def script(ctx, host, bench):
        for request, _ in cases:
            await host.send(request)
            answers.append(await host.response())
            answers.append(await host.request(Command.IDENTIFY))
        answers.append(await host.request(Command.LAYER, b"\x00"))

    batches = simulate(script)
    assert batches == [], "a rejected RUN reached the engine"
    for i, (_, expected) in enumerate(cases):
        assert answers[2 * i] == (expected, b""), f"case {i}"
        assert answers[2 * i + 1][0] == Status.OK and Identity.unpack(answers[2 * i + 1][1]) == IDENTITY
    assert answers[-1] == (Status.OK, b"")


def test_sim_timeouts():
    """A request cut short is answered TIMEOUT; a RUN cut short still hands the engine a whole batch."""
    k1 = LAYERS[1][0]
    answers = []

    async def script(ctx, host, bench):
        await host.send(bytes([Command.IDENTIFY]))                        # header cut short
        answers.append(await host.response())
        await host.send(encode_load(0, 0, [1, 2, 3])[:-3])                  # payload cut short
        answers.append(await host.response())
        answers.append(await host.request(Command.LAYER, b"\x01"))
        await host.send(encode_request(Command.RUN, bytes(range(2 * k1)))[:-3])   # RUN cut short
        answers.append(await host.response())
        answers.append(await host.request(Command.IDENTIFY))

    batches = simulate(script)
    assert answers[:4] == [(Status.TIMEOUT, b""), (Status.TIMEOUT, b""), (Status.OK, b""), (Status.TIMEOUT, b"")]
    assert answers[4][0] == Status.OK
    (layer, x), = batches
    assert layer == 1
    np.testing.assert_array_equal(x, [[0, 1, 2, 3], [4, 0, 0, 0]])


def test_sim_line_error():
    """A character with a bad stop bit inside a request makes its answer LINE_ERROR."""
    answers = []

    async def script(ctx, host, bench):
        request = encode_load(0, 0, [0x0102, 0x0304])
        await host.send(request[:5])
        await host.send(request[5:6], bad_stop=True)       # dropped by the UART
        await host.send(request[6:] + b"\x00")              # one byte more makes up the length
        answers.append(await host.response())
        answers.append(await host.request(Command.LAYER, b"\x01"))

    simulate(script, uart=True)
    assert answers == [(Status.LINE_ERROR, b""), (Status.OK, b"")]
