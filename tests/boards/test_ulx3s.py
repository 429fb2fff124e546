# amaranth: UnusedElaboratable=no
"""The ULX3S (ECP5) board top: parameters, its PLL settings, and in Amaranth simulation every layer of a
small layout run over the UART pins with the codes the bitstream put in block RAM (no LOAD)."""

import gc
import struct

import numpy as np
import pytest
from amaranth.sim import Simulator

from boards.ecp5_pll import ECP5PLL, ecp5_pll_settings
from boards.protocol import (Command, Identity, Status, decode_results, encode_activations, encode_request,
                             layout_digest)
from boards.ulx3s import (LFE5U_85F, BlockRAMCodeBanks, ULX3STop, code_columns_per_word, estimate_resources,
                          fit_problems)
from golden.datapath import pot_accumulate
from golden.pot_format import PotFormat
from golden.rom_layout import RomLayout
from hdl.engine import Engine
from uart_host import receive_bytes, send_bytes

DIVISOR = 4

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def small_layout(bits=4, columns=4, seed=0):
    rng = np.random.default_rng(seed)
    fmt = PotFormat(bits)
    layers = []
    for name, k, n in (("a", 6, 5), ("b", 3, 9)):
        codes = rng.integers(0, 1 << bits, size=(k, n))
        codes[0, 0] = fmt.zero_code
        layers.append((name, codes, rng.integers(-300, 300, size=n)))
    return RomLayout(layers, columns=columns, bits=bits), layers


def make_top(rows=2, columns=4, frequency=60e6, **kwargs):
    layout, layers = small_layout(columns=columns)
    banks = BlockRAMCodeBanks(layout)
    engine = Engine(layout=layout, rows=rows, columns_per_word=code_columns_per_word(layout), code_store=banks)
    return ULX3STop(engine=engine, code_stores=banks.stores, frequency=frequency, **kwargs), layers


def test_init():
    top, _ = make_top(divisor=DIVISOR)
    identity = top.identity
    assert (identity.rows, identity.columns, identity.bits) == (2, 4, 4)
    assert (identity.banks, identity.columns_per_word) == (1, 4)
    assert identity.digest == layout_digest(top.engine.layout) and identity.layers == 2
    assert top.divisor == DIVISOR and top.frequency == 60e6 and identity.clock_hz == 60_000_000
    assert [store.words for store in top.code_stores] == [
        [int(w) for w in top.engine.layout.group_words(0, 4)]]


def test_baud():
    top, _ = make_top(frequency=90e6)
    assert top.divisor == 30 and top.baud == 3e6


def test_baud_wrong():
    with pytest.raises(ValueError, match="40 MHz cannot make 3 Mbaud"):
        make_top(frequency=40e6)
    gc.collect()                    # the engine and stores made before the error, never elaborated


def test_frequency_wrong():
    with pytest.raises(ValueError, match="Frequency must be a positive number of Hz, not -1"):
        make_top(frequency=-1)
    gc.collect()


def test_code_stores_wrong():
    layout, _ = small_layout()
    engine = Engine(layout=layout, rows=1, columns_per_word=4)
    with pytest.raises(ValueError, match="made no code stores"):
        ULX3STop(engine=engine, code_stores=[], frequency=60e6)
    del engine
    gc.collect()


@pytest.mark.parametrize("output_mhz", [30, 48, 60, 75, 90, 100, 120])
def test_pll_settings(output_mhz):
    settings = ecp5_pll_settings(25e6, output_mhz * 1e6)
    assert abs(settings.output_hz - output_mhz * 1e6) <= 0.03 * output_mhz * 1e6
    assert 3.125e6 <= 25e6 / settings.clki_div <= 400e6
    assert 400e6 <= settings.vco_hz <= 800e6


def test_pll_wrong():
    with pytest.raises(ValueError, match="PLL output must be from 3.125 to 400 MHz, not 500 MHz"):
        ECP5PLL(frequency=500e6)


def test_estimate():
    layout, _ = small_layout(columns=8)
    need = estimate_resources(layout, rows=2, act_bits=8, acc_bits=20, pe="pot")
    assert need["banks"] == 2 and need["lc"] < LFE5U_85F["lc"]
    assert fit_problems(layout, rows=2, act_bits=8, acc_bits=20, pe="pot") == []
    problems = fit_problems(layout, rows=2000, act_bits=8, acc_bits=20, pe="pot")
    assert any("LUT4s" in problem for problem in problems) and any("block RAMs" in problem for problem in problems)


def test_sim_top_every_layer_without_load():
    """IDENTIFY, then every layer with 1 and 2 tokens, with the codes the memories were initialised with."""
    top, layers = make_top(divisor=DIVISOR)
    rng = np.random.default_rng(1)
    log = []

    async def request(ctx, command, payload=b""):
        await send_bytes(ctx, top.rx, encode_request(command, payload), DIVISOR)
        status, length = struct.unpack("<BH", await receive_bytes(ctx, top.tx, 3, DIVISOR, limit=20000))
        return Status(status), await receive_bytes(ctx, top.tx, length, DIVISOR, limit=20000)

    async def host(ctx):
        status, payload = await request(ctx, Command.IDENTIFY)
        log.append(("identify", status, Identity.unpack(payload)))
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
    assert [entry[1:] for entry in log[1:]] == [(Status.OK, None), (Status.OK, True), (Status.OK, True)] * 2
