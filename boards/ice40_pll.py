"""The system clock: the iCE40 PLL on the board, a plain clock domain anywhere else."""

from dataclasses import dataclass

from amaranth import ClockDomain, ClockSignal, Const, Instance, Module, ResetSignal, Signal
from amaranth.lib import wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import Out
from amaranth.vendor import SiliconBluePlatform

__all__ = ["PLLSettings", "pll_settings", "ICE40PLL"]

# The iCE40 sysCLOCK PLL's limits (iCE40 sysCLOCK PLL Design and Usage Guide; icepll).
PFD_MHZ = (10.0, 133.0)
VCO_MHZ = (533.0, 1066.0)
OUT_MHZ = (16.0, 275.0)


@dataclass(frozen=True)
class PLLSettings:
    """Dividers of an SB_PLL40 in SIMPLE feedback: ``f_out = f_in * (divf + 1) / ((divr + 1) * 2**divq)``."""

    input_hz: float
    divr: int
    divf: int
    divq: int

    @property
    def output_hz(self):
        return self.input_hz * (self.divf + 1) / ((self.divr + 1) * 2 ** self.divq)

    @property
    def filter_range(self):
        pfd = self.input_hz / (self.divr + 1) / 1e6
        return next(i for i, limit in enumerate((17, 26, 44, 66, 101), 1) if pfd < limit) if pfd < 101 else 6


def pll_settings(input_hz, output_hz):
    """The dividers whose output is closest to `output_hz` (as icepll chooses them).

    Raises
    ------
    ValueError
        If `output_hz` is outside the PLL's 16 to 275 MHz.
    """
    if not OUT_MHZ[0] * 1e6 <= output_hz <= OUT_MHZ[1] * 1e6:
        raise ValueError(f"PLL output must be from {OUT_MHZ[0]:g} to {OUT_MHZ[1]:g} MHz, "
                         f"not {output_hz / 1e6:g} MHz")
    best = None
    for divr in range(16):
        pfd = input_hz / (divr + 1) / 1e6
        if not PFD_MHZ[0] <= pfd <= PFD_MHZ[1]:
            continue
        for divf in range(128):
            if not VCO_MHZ[0] <= pfd * (divf + 1) <= VCO_MHZ[1]:
                continue
            for divq in range(1, 7):
                settings = PLLSettings(input_hz, divr, divf, divq)
                if best is None or abs(settings.output_hz - output_hz) < abs(best.output_hz - output_hz):
                    best = settings
    if best is None:
        raise ValueError(f"No PLL setting turns {input_hz / 1e6:g} MHz into {output_hz / 1e6:g} MHz")
    return best


class ICE40PLL(wiring.Component):
    """The clock and reset of domain `domain`, at `frequency`, from the board's default clock pin.

    On an iCE40 platform it is an SB_PLL40_PAD on the default clock pin (which
    must be a PLL pad, as the iCEBreaker's 12 MHz pin 35 is) driving the
    domain's clock, and the domain is held in reset until the PLL has locked
    and then for 15 us more, past the ~3 us after configuration during which
    iCE40 block RAMs read as zero. The domain itself is defined by the module
    that uses it (the board top, when on the platform), as Amaranth wants
    domains defined above their users. Anywhere else (simulation, Verilog for
    other tools) it adds nothing: the domain is then the plain default one the
    user provides (a simulator's clock, or the ``clk``/``rst`` ports of the
    converted top).

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
        High once the clock is usable (always, off the iCE40).

    Raises
    ------
    ValueError
        If no PLL setting comes near `frequency`.
    """

    def __init__(self, *, frequency, input_hz=12e6, domain="sync"):
        if not isinstance(frequency, (int, float)) or frequency <= 0:
            raise ValueError(f"Frequency must be a positive number of Hz, not {frequency!r}")
        if not isinstance(domain, str):
            raise TypeError(f"Domain must be a string, not {domain!r}")
        self._settings = pll_settings(input_hz, frequency)
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
        if not isinstance(platform, SiliconBluePlatform):
            m.d.comb += self.locked.eq(1)
            return m

        settings, domain = self._settings, self._domain
        clock = Signal()                       # constrained here, then driven into the domain
        platform.add_clock_constraint(clock, self.frequency)
        pad = platform.request(platform.default_clk, dir="-")
        lock = Signal()
        m.submodules.pll = Instance(
            "SB_PLL40_PAD",
            p_FEEDBACK_PATH="SIMPLE",
            p_DIVR=settings.divr, p_DIVF=settings.divf, p_DIVQ=settings.divq,
            p_FILTER_RANGE=settings.filter_range,
            i_PACKAGEPIN=pad.io,
            i_RESETB=Const(1), i_BYPASS=Const(0),
            o_PLLOUTGLOBAL=clock,
            o_LOCK=lock,
        )
        m.d.comb += ClockSignal(domain).eq(clock)
        # Hold the domain in reset until lock, then 15 us (5x the BRAM start-up time).
        m.domains.por = ClockDomain("por", reset_less=True, local=True)
        m.d.comb += ClockSignal("por").eq(clock)
        delay = int(15e-6 * self.frequency)
        timer = Signal(range(delay + 1))
        lock_sync = Signal()
        m.submodules.lock_sync = FFSynchronizer(lock, lock_sync, o_domain="por")
        with m.If(~lock_sync):
            m.d.por += timer.eq(0)
        with m.Elif(timer != delay):
            m.d.por += timer.eq(timer + 1)
        reset = Signal(init=1)                 # a flip-flop: the reset's fan-out starts at a register
        m.d.por += reset.eq(timer != delay)
        m.d.comb += [self.locked.eq(~reset), ResetSignal(domain).eq(reset)]
        return m
