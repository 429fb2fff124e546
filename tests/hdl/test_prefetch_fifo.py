# amaranth: UnusedElaboratable=no
"""`PrefetchFIFO` is Amaranth's `SyncFIFOBuffered` of one more entry, cycle for cycle, resets included."""

import numpy as np
import pytest
from amaranth import Module, ResetInserter
from amaranth.lib import wiring
from amaranth.lib.fifo import SyncFIFOBuffered
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from hdl.forward.prefetch_fifo import PrefetchFIFO


class Pair(wiring.Component):
    """Both FIFOs fed the same words, valids, readies and resets side by side."""

    def __init__(self, depth):
        self._depth = depth
        super().__init__({"w_valid": In(1), "w_data": In(8), "r_ready": In(1), "clear": In(1),
                          "ours": Out(11), "theirs": Out(11)})     # w.ready, r.valid, r.payload (when valid)

    def elaborate(self, platform):
        m = Module()
        ours = PrefetchFIFO(width=8, depth=self._depth)
        theirs = SyncFIFOBuffered(width=8, depth=self._depth + 1)
        m.submodules.ours = ResetInserter(self.clear)(ours)
        m.submodules.theirs = ResetInserter(self.clear)(theirs)
        m.d.comb += [ours.w.valid.eq(self.w_valid), ours.w.payload.eq(self.w_data), ours.r.ready.eq(self.r_ready),
                     theirs.w_en.eq(self.w_valid), theirs.w_data.eq(self.w_data), theirs.r_en.eq(self.r_ready),
                     self.ours.eq(ours.w.ready | ours.r.valid << 1 | (ours.r.payload & -ours.r.valid.as_signed()) << 2),
                     self.theirs.eq(theirs.w_rdy | theirs.r_rdy << 1 |
                                    (theirs.r_data & -theirs.r_rdy.as_signed()) << 2)]
        return m


@pytest.mark.parametrize("depth, fill", [(8, 0.8), (8, 0.3), (1, 0.5)])
def test_same_as_sync_fifo_buffered(depth, fill):
    """Random writes and reads (mostly writing, or mostly reading) and an occasional reset: every cycle the
    same readiness, validity and word."""
    dut = Pair(depth)
    rng = np.random.default_rng(depth + int(10 * fill))
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    mismatches, seen = [], set()

    async def bench(ctx):
        for cycle in range(600):
            ctx.set(dut.w_valid, int(rng.random() < fill))
            ctx.set(dut.w_data, int(rng.integers(256)))
            ctx.set(dut.r_ready, int(rng.random() < 1 - fill))
            ctx.set(dut.clear, int(rng.random() < 0.01))
            ours, theirs = ctx.get(dut.ours), ctx.get(dut.theirs)
            seen.add(theirs & 3)
            if ours != theirs:
                mismatches.append((cycle, ours, theirs))
            await ctx.tick()

    sim.add_testbench(bench)
    sim.run()
    assert not mismatches
    assert {0b01, 0b11} <= seen and (fill < 0.5 or 0b10 in seen)      # empty, between, and full when filling


def test_depth():
    assert PrefetchFIFO(width=8, depth=512).depth == 513
    with pytest.raises(ValueError, match="depth must be a power of two, not 6"):
        PrefetchFIFO(width=8, depth=6)
