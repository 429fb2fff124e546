"""The system clock: the ECP5 PLL on the board, a plain clock domain anywhere else."""

from dataclasses import dataclass

from amaranth import ClockDomain, ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import io, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import Out
from amaranth.vendor import LatticePlatform

__all__ = ["ECP5PLLSettings", "ecp5_pll_settings", "ECP5PLL"]

# The ECP5 EHXPLLL's limits (Lattice TN1263; prjtrellis ecppll).
PFD_MHZ = (3.125, 400.0)
VCO_MHZ = (400.0, 800.0)
OUT_MHZ = (3.125, 400.0)


@dataclass(frozen=True)
class ECP5PLLSettings:
    """Dividers of an EHXPLLL fed back from CLKOP: ``f_out = f_in * clkfb_div / clki_div``,
    ``f_vco = f_out * clkop_div``."""

    input_hz: float
    clki_div: int
    clkfb_div: int
    clkop_div: int

    @property
    def output_hz(self):
        return self.input_hz * self.clkfb_div / self.clki_div

    @property
    def vco_hz(self):
        return self.output_hz * self.clkop_div


def ecp5_pll_settings(input_hz, output_hz):
    """The dividers whose output is closest to `output_hz` (as prjtrellis' ecppll chooses them).

    Raises
    ------
    ValueError
        If `output_hz` is outside the PLL's range or nothing comes near it.
    """
    if not OUT_MHZ[0] * 1e6 <= output_hz <= OUT_MHZ[1] * 1e6:
        raise ValueError(f"PLL output must be from {OUT_MHZ[0]:g} to {OUT_MHZ[1]:g} MHz, "
                         f"not {output_hz / 1e6:g} MHz")
    best = None
    for clki_div in range(1, 129):
        pfd = input_hz / clki_div / 1e6
        if not PFD_MHZ[0] <= pfd <= PFD_MHZ[1]:
            continue
        for clkfb_div in range(1, 81):
            out = pfd * clkfb_div
            for clkop_div in range(1, 129):
                if VCO_MHZ[0] <= out * clkop_div <= VCO_MHZ[1]:
                    settings = ECP5PLLSettings(input_hz, clki_div, clkfb_div, clkop_div)
                    if best is None or abs(settings.output_hz - output_hz) < abs(best.output_hz - output_hz):
                        best = settings
                    break
    if best is None:
        raise ValueError(f"No PLL setting turns {input_hz / 1e6:g} MHz into {output_hz / 1e6:g} MHz")
    return best


class ECP5PLL(wiring.Component):
    """The clock and reset of domain `domain`, at `frequency`, from the board's default clock pin.

    On an ECP5 platform it is an EHXPLLL on the default clock (the ULX3S's
    25 MHz oscillator) driving the domain's clock, and the domain is held in
    reset until the PLL has locked and for 1 us more. As with
    `boards.ice40_pll.ICE40PLL`, the domain is defined by the module that uses
    it, and anywhere else (simulation, Verilog for other tools) this adds
    nothing: the domain is the plain default one.

    Parameters
    ----------
    frequency : float
        Wanted output frequency in Hz; the closest the PLL makes is `settings`.
    input_hz : float
        The frequency of the board's clock pin.
    domain : str

    Members
    -------
    locked : Out(1)
        High once the clock is usable (always, off the ECP5).

    Raises
    ------
    ValueError
        If no PLL setting comes near `frequency`.
    """

    def __init__(self, *, frequency, input_hz=25e6, domain="sync"):
        if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency <= 0:
            raise ValueError(f"Frequency must be a positive number of Hz, not {frequency!r}")
        if not isinstance(domain, str):
            raise TypeError(f"Domain must be a string, not {domain!r}")
        self._settings = ecp5_pll_settings(input_hz, frequency)
        self._domain = domain
        super().__init__({"locked": Out(1)})

    @property
    def settings(self):
        return self._settings

    @property
    def frequency(self):
        """The frequency the PLL actually makes, in Hz."""
        return self._settings.output_hz

    @property
    def domain(self):
        return self._domain

    def elaborate(self, platform):
        m = Module()
        if not (isinstance(platform, LatticePlatform) and platform.family == "ecp5"):
            m.d.comb += self.locked.eq(1)
            return m

        settings, domain = self._settings, self._domain
        clock = Signal()
        platform.add_clock_constraint(clock, self.frequency)
        m.submodules.clock_pin = pin = io.Buffer("i", platform.request(platform.default_clk, dir="-"))
        lock = Signal()
        m.submodules.pll = Instance(
            "EHXPLLL",
            a_FREQUENCY_PIN_CLKI=f"{settings.input_hz / 1e6:g}",
            a_FREQUENCY_PIN_CLKOP=f"{self.frequency / 1e6:g}",
            a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
            p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
            p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
            p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
            p_CLKI_DIV=settings.clki_div, p_CLKFB_DIV=settings.clkfb_div,
            p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=settings.clkop_div,
            p_CLKOP_CPHASE=settings.clkop_div - 1, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP",
            i_RST=Const(0), i_STDBY=Const(0), i_CLKI=pin.i, i_CLKFB=clock,
            i_PHASESEL0=Const(0), i_PHASESEL1=Const(0), i_PHASEDIR=Const(1), i_PHASESTEP=Const(1),
            i_PHASELOADREG=Const(1), i_PLLWAKESYNC=Const(0), i_ENCLKOP=Const(0),
            o_CLKOP=clock, o_LOCK=lock,
        )
        m.d.comb += ClockSignal(domain).eq(clock)
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += ClockSignal("por").eq(clock)
        delay = max(1, int(1e-6 * self.frequency))
        timer = Signal(range(delay + 1))
        lock_sync = Signal()
        m.submodules.lock_sync = FFSynchronizer(lock, lock_sync, o_domain="por")
        with m.If(~lock_sync):
            m.d.por += timer.eq(0)
        with m.Elif(timer != delay):
            m.d.por += timer.eq(timer + 1)
        m.d.comb += [self.locked.eq(timer == delay), ResetSignal(domain).eq(timer != delay)]
        return m
