# amaranth: UnusedElaboratable=no
"""The board top in Amaranth simulation: UART pins in, codes loaded into the (plain-Memory) SPRAM
banks, every layer of a small layout run through the real engine, accumulators checked against golden."""

import struct

import numpy as np
import pytest
from amaranth.hdl import Fragment
from amaranth.sim import Simulator

from boards.icebreaker import ICEBreakerTop, max_tokens
from boards.protocol import (Command, Identity, Status, code_banks, decode_results, encode_activations,
                             encode_load, encode_request, layout_digest, load_checksum)
from boards.spram_code_store import SPRAMCodeBanks
from golden.datapath import pot_accumulate
from golden.pot_format import PotFormat
from golden.rom_layout import RomLayout
from hdl.engine import Engine
from uart_host import receive_bytes, send_bytes

DIVISOR = 4



def small_layout(bits=4, columns=4, seed=0):
    rng = np.random.default_rng(seed)
    fmt = PotFormat(bits)
    layers = []
    for name, k, n in (("a", 6, 5), ("b", 3, 9)):
        codes = rng.integers(0, 1 << bits, size=(k, n))
        codes[0, 0] = fmt.zero_code
        layers.append((name, codes, rng.integers(-300, 300, size=n)))
    return RomLayout(layers, columns=columns, bits=bits), layers


def make_top(rows=2, columns=4, **kwargs):
    layout, layers = small_layout(columns=columns)
    banks = SPRAMCodeBanks()
    engine = Engine(layout=layout, rows=rows, columns_per_word=4, code_store=banks)
    return ICEBreakerTop(engine=engine, code_stores=banks.stores, frequency=36e6, divisor=DIVISOR,
                         **kwargs), layers


def test_init():
    top, _ = make_top()
    identity = top.identity
    layout = top.engine.layout
    assert (identity.rows, identity.columns, identity.bits, identity.banks) == (2, 4, 4, 1)
    assert identity.bank_words == layout.code_depth and identity.layers == 2
    assert identity.max_tokens == max_tokens(layout, 2, 8, top.engine.acc_bits) == 2
    assert identity.digest == layout_digest(layout) and identity.acc_bits == top.engine.acc_bits
    assert top.divisor == DIVISOR and top.frequency == 36e6
    Fragment.get(top, None)


def test_baud_wrong():
    layout, _ = small_layout()
    banks = SPRAMCodeBanks()
    engine = Engine(layout=layout, rows=1, columns_per_word=4, code_store=banks)
    with pytest.raises(ValueError, match="33.75 MHz cannot make 3 Mbaud"):
        ICEBreakerTop(engine=engine, code_stores=banks.stores, frequency=34e6)
    Fragment.get(engine, None)


def test_code_stores_wrong():
    layout, _ = small_layout()
    engine = Engine(layout=layout, rows=1, columns_per_word=4)
    with pytest.raises(ValueError, match="must be the engine's SPRAM code stores"):
        ICEBreakerTop(engine=engine, code_stores=[], frequency=36e6)
    with pytest.raises(ValueError, match="must be the engine's SPRAM code stores"):
        ICEBreakerTop(engine=engine, code_stores=engine.code_stores, frequency=36e6)
    Fragment.get(engine, None)


def test_sim_top_every_layer():
    """IDENTIFY, LOAD every bank, then every layer with 1 and with R tokens, over the UART pins."""
    top, layers = make_top()
    layout = top.engine.layout
    rng = np.random.default_rng(1)
    log = []

    async def request(ctx, command, payload=b""):
        await send_bytes(ctx, top.rx, encode_request(command, payload), DIVISOR)
        status, length = struct.unpack("<BH", await receive_bytes(ctx, top.tx, 3, DIVISOR, limit=20000))
        return Status(status), await receive_bytes(ctx, top.tx, length, DIVISOR, limit=20000)

    async def host(ctx):
        status, payload = await request(ctx, Command.IDENTIFY)
        log.append(("identify", status, Identity.unpack(payload)))
        for bank, words in enumerate(code_banks(layout, 4)):
            status, payload = await request(ctx, Command.LOAD, encode_load(bank, 0, words)[3:])
            log.append(("load", status, payload == struct.pack("<H", load_checksum(words))))
        for index, (name, codes, bias) in enumerate(layers):
            status, _ = await request(ctx, Command.LAYER, bytes([index]))
            log.append(("layer", status, None))
            for tokens in (1, 2):
                x = rng.integers(-128, 128, size=(tokens, codes.shape[0]))
                status, payload = await request(ctx, Command.RUN, encode_activations(x, 8))
                expected = pot_accumulate(x, codes, bias, 4, 8, top.engine.acc_bits)
                got = decode_results(payload, tokens, codes.shape[1], top.engine.acc_bits)
                log.append(("run", status, np.array_equal(got, expected)))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    assert log[0][1] == Status.OK and log[0][2] == top.identity
    assert [entry[1:] for entry in log[1:]] == [(Status.OK, True)] + [(Status.OK, None), (Status.OK, True),
                                                                      (Status.OK, True)] * 2


def test_sim_top_line_errors_and_a_run_cut_short():
    """The error paths of the real top, UART pins to engine: a byte with a bad stop bit (which the UART
    drops) inside LAYER and inside RUN is answered LINE_ERROR, never OK, and a RUN's results are dropped,
    both when the RUN then waits for its missing byte and when a later byte completes its length; a RUN
    the host stops sending is answered TIMEOUT; after each, the next LAYER and RUN are exact."""
    timeout = 4e-6                                      # 144 cycles at 36 MHz: 3.6 idle characters
    top, layers = make_top(timeout=timeout)
    layout = top.engine.layout
    rng = np.random.default_rng(2)
    log = []

    async def send(ctx, data, bad=None):
        """`data` over the pins; byte index `bad` (if any) with a bad stop bit."""
        for i, byte in enumerate(data):
            await send_bytes(ctx, top.rx, bytes([byte]), DIVISOR, bad_stop=i == bad)

    async def answer(ctx):
        status, length = struct.unpack("<BH", await receive_bytes(ctx, top.tx, 3, DIVISOR, limit=20000))
        return Status(status), await receive_bytes(ctx, top.tx, length, DIVISOR, limit=20000)

    async def exact_run(ctx, index):
        name, codes, bias = layers[index]
        await send(ctx, encode_request(Command.LAYER, bytes([index])))
        status, _ = await answer(ctx)
        x = rng.integers(-128, 128, size=(2, codes.shape[0]))
        await send(ctx, encode_request(Command.RUN, encode_activations(x, 8)))
        status_run, payload = await answer(ctx)
        got = decode_results(payload, 2, codes.shape[1], top.engine.acc_bits)
        expected = pot_accumulate(x, codes, bias, 4, 8, top.engine.acc_bits)
        return status, status_run, np.array_equal(got, expected)

    async def host(ctx):
        for bank, words in enumerate(code_banks(layout, 4)):
            await send(ctx, encode_request(Command.LOAD, encode_load(bank, 0, words)[3:]))
            log.append(("load", (await answer(ctx))[0]))
        # LAYER whose argument byte is damaged on the line.
        await send(ctx, encode_request(Command.LAYER, bytes([1])), bad=3)
        log.append(("bad layer", *await answer(ctx)))
        log.append(("exact after bad layer", *await exact_run(ctx, 0)))
        # RUN with a damaged activation byte in the middle of the batch.
        codes = layers[1][1]
        request = encode_request(Command.RUN, encode_activations(rng.integers(-128, 128, size=(2, codes.shape[0])), 8))
        await send(ctx, encode_request(Command.LAYER, bytes([1])))
        log.append(("layer", (await answer(ctx))[0]))
        await send(ctx, request, bad=len(request) // 2)                 # one byte short: it times out
        log.append(("bad run", *await answer(ctx)))
        log.append(("exact after bad run", *await exact_run(ctx, 1)))
        await send(ctx, encode_request(Command.LAYER, bytes([1])))
        log.append(("layer", (await answer(ctx))[0]))
        await send(ctx, request + b"\x00", bad=len(request) // 2)         # a later byte completes the length
        log.append(("bad run, full length", *await answer(ctx)))
        log.append(("exact after bad run", *await exact_run(ctx, 1)))
        # RUN that stops after half its activations: the link waits `timeout`, finishes the batch with zeros
        # and drops its results.
        await send(ctx, encode_request(Command.LAYER, bytes([0])))
        log.append(("layer", (await answer(ctx))[0]))
        codes = layers[0][1]
        request = encode_request(Command.RUN, encode_activations(rng.integers(-128, 128, size=(2, codes.shape[0])), 8))
        await send(ctx, request[:len(request) // 2])
        log.append(("cut run", *await answer(ctx)))
        log.append(("exact after cut run", *await exact_run(ctx, 0)))

    sim = Simulator(top)
    sim.add_clock(1e-8)
    sim.add_testbench(host)
    sim.run()
    assert log == [("load", Status.OK),
                   ("bad layer", Status.LINE_ERROR, b""), ("exact after bad layer", Status.OK, Status.OK, True),
                   ("layer", Status.OK),
                   ("bad run", Status.LINE_ERROR, b""), ("exact after bad run", Status.OK, Status.OK, True),
                   ("layer", Status.OK),
                   ("bad run, full length", Status.LINE_ERROR, b""),
                   ("exact after bad run", Status.OK, Status.OK, True),
                   ("layer", Status.OK),
                   ("cut run", Status.TIMEOUT, b""), ("exact after cut run", Status.OK, Status.OK, True)]
