# amaranth: UnusedElaboratable=no
"""The vendor-primitive wrappers: PLL settings, SPRAM, the SPRAM code store; Instance on the
iCEBreaker, plain Amaranth (and simulable) anywhere else."""

import numpy as np
import pytest
from amaranth import ClockDomain, Elaboratable, Module, Signal
from amaranth.hdl import Fragment
from amaranth.lib import io
from amaranth.sim import Simulator
from amaranth_boards.icebreaker import ICEBreakerPlatform

from boards.ice40_pll import ICE40PLL, pll_settings
from hdl.ice40_spram import ICE40SPRAM
from boards.spram_code_store import SPRAMCodeBanks, SPRAMCodeStore
from golden.rom_layout import RomLayout
from hdl.engine import Engine


# Parts built only to check their parameters are never elaborated.
pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


# -- PLL ----------------------------------------------------------------------------------

@pytest.mark.parametrize("mhz, divr, divf, divq, filter_range", [
    (30, 0, 79, 5, 1), (36, 0, 47, 4, 1), (48, 0, 63, 4, 1), (27, 0, 71, 5, 1),
])
def test_pll_settings_as_icepll(mhz, divr, divf, divq, filter_range):
    """The dividers icepll -i 12 -o MHZ prints."""
    settings = pll_settings(12e6, mhz * 1e6)
    assert (settings.divr, settings.divf, settings.divq, settings.filter_range) == (divr, divf, divq, filter_range)
    assert settings.output_hz == mhz * 1e6


def test_pll_settings_closest():
    settings = pll_settings(12e6, 40e6)
    assert abs(settings.output_hz - 40e6) <= 0.375e6 / 2 + 0.1e6
    assert 533 <= 12 / (settings.divr + 1) * (settings.divf + 1) <= 1066


@pytest.mark.parametrize("mhz", [10, 300])
def test_pll_frequency_wrong(mhz):
    with pytest.raises(ValueError, match=f"from 16 to 275 MHz, not {mhz} MHz"):
        ICE40PLL(frequency=mhz * 1e6)


def test_pll_init():
    pll = ICE40PLL(frequency=36e6)
    assert pll.frequency == 36e6 and pll.domain == "sync" and pll.settings.divf == 47
    with pytest.raises(ValueError, match="positive number of Hz, not -1"):
        ICE40PLL(frequency=-1)


class _Counter(Elaboratable):
    """A PLL and something in its domain (and an SPRAM), for the platform's eyes."""

    def __init__(self, spram=False):
        self.spram = spram

    def elaborate(self, platform):
        m = Module()
        if platform is not None:
            m.domains.sync = ClockDomain("sync")
        m.submodules.pll = ICE40PLL(frequency=36e6)
        count = Signal(8)
        m.d.sync += count.eq(count + 1)
        if self.spram:
            m.submodules.spram = spram = ICE40SPRAM()
            m.d.comb += [spram.addr.eq(count), spram.w_data.eq(count), spram.w_en.eq(count[0]), spram.en.eq(1)]
            m.submodules.led = led = io.Buffer("o", platform.request("led", 0, dir="-"))
            m.d.comb += led.o.eq(spram.r_data.xor())
        return m


def test_primitives_on_the_icebreaker():
    plan = ICEBreakerPlatform().prepare(_Counter(spram=True), name="top")
    rtlil, pcf = plan.files["top.il"], plan.files["top.pcf"]
    assert "SB_PLL40_PAD" in rtlil and "SB_SPRAM256KA" in rtlil
    assert "\\DIVF 7'0101111" in rtlil or "DIVF 47" in rtlil
    assert "set_frequency" in pcf and "36.0" in pcf


def test_primitives_off_the_board():
    fragment = Fragment.get(_Counter(), None)
    assert "SB_PLL40_PAD" not in repr(fragment.subfragments)


# -- SPRAM --------------------------------------------------------------------------------

def test_sim_spram_read_write_hold():
    dut = ICE40SPRAM()
    seen = []

    async def testbench(ctx):
        for addr, value in ((0, 0x1234), (16383, 0xFFFF), (77, 0xBEEF)):
            ctx.set(dut.addr, addr)
            ctx.set(dut.w_data, value)
            ctx.set(dut.w_en, 1)
            await ctx.tick()
        ctx.set(dut.w_en, 0)
        for addr in (77, 0, 16383):
            ctx.set(dut.addr, addr)
            ctx.set(dut.en, 1)
            await ctx.tick()
            seen.append(ctx.get(dut.r_data))
        ctx.set(dut.en, 0)
        ctx.set(dut.addr, 0)
        await ctx.tick()
        seen.append(ctx.get(dut.r_data))          # held: en was low

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [0xBEEF, 0x1234, 0xFFFF, 0xFFFF]


# -- SPRAM code store ------------------------------------------------------------------------

@pytest.mark.parametrize("depth, sprams", [(100, 1), (16384, 1), (20000, 2), (40000, 3)])
def test_code_store_init(depth, sprams):
    store = SPRAMCodeStore(first_column=4, columns_per_word=4, depth=depth, word_width=16)
    assert store.sprams == sprams and store.addr_width == max(1, int(np.ceil(np.log2(depth))))
    assert store.latency == 1 and store.first_column == 4


@pytest.mark.parametrize("field, value, message", [
    ("first_column", -1, "First column must be a non-negative integer, not -1"),
    ("columns_per_word", 0, "Columns per word must be a positive integer, not 0"),
    ("depth", 0, "Depth must be a positive integer, not 0"),
    ("word_width", 17, "An SPRAM word holds at most 16 bits, not 17"),
])
def test_code_store_wrong(field, value, message):
    params = dict(first_column=0, columns_per_word=4, depth=100, word_width=16)
    params[field] = value
    with pytest.raises(ValueError, match=message):
        SPRAMCodeStore(**params)


def test_sim_code_store_across_sprams():
    """Words written anywhere read back from the right SPRAM, one cycle later."""
    dut = SPRAMCodeStore(first_column=0, columns_per_word=4, depth=40000, word_width=16)
    addresses = [0, 1, 16383, 16384, 20000, 32767, 32768, 39999]
    seen = []

    async def testbench(ctx):
        for addr in addresses:
            ctx.set(dut.write.addr, addr)
            ctx.set(dut.write.data, addr * 7 & 0xFFFF)
            ctx.set(dut.write.en, 1)
            await ctx.tick()
        ctx.set(dut.write.en, 0)
        for addr in reversed(addresses):
            ctx.set(dut.read.addr, addr)
            ctx.set(dut.read.en, 1)
            await ctx.tick()
            seen.append(ctx.get(dut.read.data))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(testbench)
    sim.run()
    assert seen == [addr * 7 & 0xFFFF for addr in reversed(addresses)]


def test_code_banks_factory_with_engine():
    rng = np.random.default_rng(0)
    layout = RomLayout([("a", rng.integers(0, 16, (6, 10)), np.zeros(10, int))], columns=8, bits=4)
    banks = SPRAMCodeBanks()
    engine = Engine(layout=layout, rows=1, columns_per_word=4, code_store=banks)
    assert [store.first_column for store in banks.stores] == [0, 4]
    assert banks.stores == engine.code_stores and banks.sprams == 2
    assert all(store.depth == layout.code_depth and store.word_width == 16 for store in banks.stores)
    Fragment.get(engine, None)
