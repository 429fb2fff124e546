"""One iCE40UP single-port RAM (SB_SPRAM256KA), or a plain Memory off the chip.

Under hdl/ (not boards/) so that components (`hdl.single_port_memory`) can use it."""

from amaranth import ClockSignal, Const, Instance, Module, Mux
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.vendor import SiliconBluePlatform

__all__ = ["ICE40SPRAM"]


class ICE40SPRAM(wiring.Component):
    """A 16,384 x 16-bit single-port RAM: one read or one write per cycle.

    On an iCE40 platform it is an SB_SPRAM256KA (whose contents the bitstream
    cannot set: they are undefined until written). Anywhere else it is an
    Amaranth `Memory` of the same shape, starting at zero, so a design that
    uses it simulates as it will run.

    Members
    -------
    addr : In(14)
    en : In(1)
        Read enable: ``r_data`` shows word ``addr`` one cycle after a cycle
        with ``en`` high and ``w_en`` low, and holds otherwise.
    w_en : In(1)
        Write ``w_data`` at ``addr`` this cycle (a write, not a read, whatever ``en`` is).
    w_data : In(16)
    w_mask : In(4)
        Nibbles written (bit ``i``: bits ``4 i .. 4 i + 3``; the SPRAM's MASKWREN); all by default.
    r_data : Out(16)
        After a write it is undefined on the chip; read again before use.

    Parameters
    ----------
    domain : str
        The clock domain of both ports.
    """

    DEPTH = 16384
    WIDTH = 16

    def __init__(self, *, domain="sync"):
        if not isinstance(domain, str):
            raise TypeError(f"Domain must be a string, not {domain!r}")
        self._domain = domain
        super().__init__({
            "addr": In(range(self.DEPTH)),
            "en": In(1),
            "w_en": In(1),
            "w_data": In(self.WIDTH),
            "w_mask": In(4, init=0b1111),
            "r_data": Out(self.WIDTH),
        })

    @property
    def domain(self):
        return self._domain

    def elaborate(self, platform):
        m = Module()
        if isinstance(platform, SiliconBluePlatform):
            m.submodules.spram = Instance(
                "SB_SPRAM256KA",
                i_ADDRESS=self.addr, i_DATAIN=self.w_data, i_MASKWREN=self.w_mask,
                i_WREN=self.w_en, i_CHIPSELECT=self.en | self.w_en,
                i_CLOCK=ClockSignal(self._domain),
                i_STANDBY=Const(0), i_SLEEP=Const(0), i_POWEROFF=Const(1),
                o_DATAOUT=self.r_data,
            )
            return m

        m.submodules.memory = memory = Memory(shape=self.WIDTH, depth=self.DEPTH, init=[])
        write = memory.write_port(domain=self._domain, granularity=4)
        read = memory.read_port(domain=self._domain)
        m.d.comb += [
            write.addr.eq(self.addr), write.data.eq(self.w_data), write.en.eq(Mux(self.w_en, self.w_mask, 0)),
            read.addr.eq(self.addr), read.en.eq(self.en & ~self.w_en), self.r_data.eq(read.data),
        ]
        return m
