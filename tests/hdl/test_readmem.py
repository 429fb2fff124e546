# amaranth: UnusedElaboratable=no

import pytest
from amaranth import Module, unsigned
from amaranth.back import verilog
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from hdl.readmem import ReadmemError, RomFile, readmem_roms


class _Rom(wiring.Component):
    """A ROM of `words` behind a read port, as the stores are built."""

    def __init__(self, words, width):
        self._words, self._width = words, width
        super().__init__({"addr": In(4), "data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.memory = mem = memory.Memory(shape=unsigned(self._width), depth=len(self._words),
                                                  init=self._words)
        port = mem.read_port()
        m.d.comb += [port.addr.eq(self.addr), self.data.eq(port.data)]
        return m


class _Top(wiring.Component):
    def __init__(self, words, width):
        self.rom = _Rom(words, width)
        super().__init__({"addr": In(4), "data": Out(width)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.store = self.rom
        m.d.comb += [self.rom.addr.eq(self.addr), self.data.eq(self.rom.data)]
        return m


WORDS = [0x5, 0x0, 0x1f, 0x13, 0x7, 0x0, 0x2, 0x1c, 0x9, 0x11]


@pytest.fixture(scope="module")
def text():
    return verilog.convert(_Top(WORDS, 5), name="top", emit_src=False)


def test_readmem(text):
    assert "memory[9] = 5'h11;" in text
    out = readmem_roms(text, [RomFile(module="top.store", memory="memory", file="rom.hex", words=tuple(WORDS),
                                      width=5)])
    assert 'initial $readmemh("rom.hex", memory );' in out
    assert "memory[0] =" not in out and "memory[9] =" not in out
    # Nothing else changed: the text around the initialiser is the same.
    before, after = text.split("  initial begin\n", 1)[0], out.split('  initial $readmemh', 1)[0]
    assert before == after
    assert out.split("memory );\n", 1)[1] == text.split("    memory[9] = 5'h11;\n  end\n", 1)[1]


@pytest.mark.parametrize("rom, message", [
    (RomFile("top.store", "memory", "rom.hex", tuple(WORDS[:9]) + (0x12,), 5), "word 9 is 17, but rom.hex holds 18"),
    (RomFile("top.store", "memory", "rom.hex", tuple(WORDS[:9]), 5), "is 5 x 10, but rom.hex holds 9 words of 5"),
    (RomFile("top.store", "memory", "rom.hex", tuple(WORDS), 6), "is 5 x 10, but rom.hex holds 10 words of 6"),
    (RomFile("top.store", "other", "rom.hex", tuple(WORDS), 5), "no memory 'other'"),
    (RomFile("top.missing", "memory", "rom.hex", tuple(WORDS), 5), "no module 'top.missing'"),
])
def test_readmem_wrong(text, rom, message):
    with pytest.raises(ReadmemError, match=message):
        readmem_roms(text, [rom])
