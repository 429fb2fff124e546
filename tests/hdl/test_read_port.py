# amaranth: UnusedElaboratable=no
"""`hdl.read_port.ReadPort`: a block-RAM read port with a read port's timing and no read-during-write logic."""

import pytest
from amaranth import Module
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.bench import synthesize
from hdl.read_port import NO_COLLISIONS, ReadPort
from hdl.toolchain import ToolError, tool_command


class Buffer(wiring.Component):
    """A 256 x 16 buffer: one write port, one read port (`ReadPort`, or Amaranth's ``read_port()``)."""

    def __init__(self, collision_free):
        self._free = collision_free
        super().__init__({"w_addr": In(8), "w_data": In(16), "w_en": In(1),
                          "r_addr": In(8), "r_en": In(1), "r_data": Out(16)})

    def elaborate(self, platform):
        m = Module()
        m.submodules.mem = mem = memory.Memory(shape=16, depth=256, init=[],
                                               attrs=NO_COLLISIONS if self._free else None)
        write = mem.write_port()
        read = ReadPort(m, mem, "read") if self._free else mem.read_port()
        m.d.comb += [write.addr.eq(self.w_addr), write.data.eq(self.w_data), write.en.eq(self.w_en),
                     read.addr.eq(self.r_addr), read.en.eq(self.r_en), self.r_data.eq(read.data)]
        return m


def test_timing():
    """Data the cycle after the address, held while en is low, the old word when written in the same cycle:
    the same words as Amaranth's synchronous port, cycle for cycle."""
    def run(dut):
        sim = Simulator(dut)
        sim.add_clock(1e-6)
        got = []

        async def bench(ctx):
            # (write address, data, enable, read address, read enable) per cycle
            for wa, wd, we, ra, re in [(3, 111, 1, 0, 1), (4, 222, 1, 3, 1), (3, 333, 1, 3, 1), (0, 0, 0, 3, 1),
                                       (3, 444, 1, 4, 0), (0, 0, 0, 4, 1), (0, 0, 0, 3, 1), (0, 0, 0, 0, 1)]:
                for port, value in ((dut.w_addr, wa), (dut.w_data, wd), (dut.w_en, we), (dut.r_addr, ra),
                                    (dut.r_en, re)):
                    ctx.set(port, value)
                await ctx.tick()
                got.append(ctx.get(dut.r_data))

        sim.add_testbench(bench)
        sim.run()
        return got

    got = run(Buffer(True))
    assert got == [0, 111, 111, 333, 333, 222, 444, 0]
    assert got == run(Buffer(False))


def test_no_bypass_logic(tmp_path):
    """With `YOSYS_AFTER_READ` (`hdl.bench.synthesize` runs it), Yosys maps the collision-free buffer to one
    block RAM and a LUT4 (the write mask); Amaranth's port costs a delayed copy of the write and a bypass
    multiplexer in logic."""
    try:
        tool_command("YOSYS")
    except ToolError as error:
        pytest.skip(str(error))
    free = synthesize(Buffer(True), "free", tmp_path, pack=False)
    plain = synthesize(Buffer(False), "plain", tmp_path, pack=False)
    assert (free["ebr"], free["lut4"], free["dff"]) == (1, 1, 0)
    assert plain["ebr"] == 1 and plain["dff"] >= 16 and plain["lut4"] >= 16
