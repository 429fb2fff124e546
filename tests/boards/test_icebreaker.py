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
