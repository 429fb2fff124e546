"""The whole-forward board top: PLL clock, UART, the forward link and the forward core (iCEBreaker or ULX3S)."""

from dataclasses import dataclass

from amaranth import Module, Mux
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .forward_link import ForwardLink
from .forward_protocol import ForwardIdentity
from .hosted_top import UARTBoardTop, connect_uart
from .icebreaker import DEFAULT_BAUD, uart_divisor
from .uart import UART

__all__ = ["BOARDS", "ForwardTop", "compose_forward", "default_context", "DEFAULT_TIMEOUT",
           "FLASH_CONSTANTS_OFFSET"]

#: Seconds without a byte inside a request before it is answered TIMEOUT (far longer than any gap in a
#: host's write).
DEFAULT_TIMEOUT = 0.1
#: The context the iCEBreaker holds by default (the issue's floor).
ICEBREAKER_CONTEXT = 64
#: Where the core's constant image (`ForwardCore.constant_image`) sits in the iCEBreaker's SPI flash: 1 MiB,
#: past the bitstream (104 KB for the iCE40UP5K) at 0. ``iceprog -o 1M constants.bin`` writes it there.
FLASH_CONSTANTS_OFFSET = 0x100000


@dataclass(frozen=True)
class Board:
    """What the top needs to know of a board: its PLL, the LED that shows the PLL's lock, its platform."""

    name: str
    led: str
    default_mhz: float
    #: The core's options on this board unless the caller gives them (`hdl.build_forward.FORWARD_CORES` adds
    #: the array's): on the iCE40 the codes are in SPRAM, read from the SPI flash at reset (SPRAM has no initial
    #: contents: `hdl.code_boot.CodeBoot`),
    #: and two attention lanes make the KV cache's word 16 bits, one SPRAM wide (four lanes' 32-bit word
    #: would take two SPRAMs side by side, and three hold the codes); the layer norms', linear layers' and wpe's
    #: constants are streamed from the SPI flash (174.7 Kbit of them against the 120 Kbit of EBR); a 2 x 3
    #: array (each code SPRAM's 16-bit word holds two beats of a column: 6 PEs, their work hidden behind the
    #: flash stream at 0.25 B/cycle).
    core_defaults: tuple = ()

    def pll(self, frequency):
        if self.name == "icebreaker":
            from .ice40_pll import ICE40PLL
            return ICE40PLL(frequency=frequency)
        from .ecp5_pll import ECP5PLL
        return ECP5PLL(frequency=frequency)

    def on_board(self, platform):
        from amaranth.vendor import LatticePlatform, SiliconBluePlatform
        if self.name == "icebreaker":
            return isinstance(platform, SiliconBluePlatform)
        return isinstance(platform, LatticePlatform) and platform.family == "ecp5"


#: The boards a forward top is made for: the iCEBreaker (iCE40UP5K, 12 MHz pin, FT2232H UART) and the
#: ULX3S (ECP5-85F, 25 MHz oscillator, FT231X UART). Default clocks are the linear builds'.
BOARDS = {"icebreaker": Board("icebreaker", led="led_g", default_mhz=36.0,
                              core_defaults=(("codes", "loaded"), ("attention_lanes", 2), ("head_lanes", 1),
                                             ("constants", "flash"), ("rows", 2), ("columns", 3))),
          "ulx3s": Board("ulx3s", led="led", default_mhz=45.0)}


def _board(name):
    if name not in BOARDS:
        raise ValueError(f"Board must be one of {', '.join(BOARDS)}, not {name!r}")
    return BOARDS[name]


class ForwardTop(UARTBoardTop, wiring.Component):
    """Everything on the board: the whole-forward core behind a UART serving IDENTIFY and GENERATE.

    The host sends a prompt and the generation's settings and reads the tokens
    as the core samples them (`boards.forward_protocol`); `ForwardLink` checks
    each request before the core starts. On the board's platform the clock is
    the board's PLL (`frequency`), the UART is the board's USB serial pins, and
    an LED lights once the PLL has locked. Anywhere else the same top
    simulates: `rx` and `tx` are its ports and the clock is the plain ``sync``
    domain (`boards.sim_harness.SimHarness` puts a host-side UART on them).

    A core whose constants come from the flash (``ForwardCore(constants="flash")``,
    the iCEBreaker's) gets an `hdl.spi_flash_reader.SPIFlashReader` on its
    ``constants_seek`` / ``constants`` ports, reading the image at
    `FLASH_CONSTANTS_OFFSET`: on the board from the iCEBreaker's quad-SPI flash
    (``spi_flash_4x``: the configuration flash, whose pins are user IO once the
    iCE40 is configured), anywhere else through the ``flash_*`` ports, where
    `boards.sim_harness.SimHarness` puts `boards.spi_flash_model.SPIFlashModel`
    holding `flash_image`.

    A core whose codes are loaded (``codes="loaded"``: SPRAM, which the
    bitstream cannot initialise) gets them from the same flash at reset: an
    `hdl.code_boot.CodeBoot` owns the reader first, seeks it to the codes'
    part of the image (`codes_base`, after the constants), checks the part's
    check and writes every word into the core's ``code_write``, then hands the
    reader to the core. Until then the link sees the core busy (a GENERATE
    waits at its start) and IDENTIFY says whether the codes are in, or that the
    flash holds no image of this build.

    Parameters
    ----------
    core : hdl.forward.forward_core.ForwardCore
        The core, with ``compiled``, ``context``, ``vocab_size`` and the ports
        ``start``, ``prompt``, ``token``, ``busy``.
    board : str
        ``"icebreaker"`` or ``"ulx3s"``.
    frequency : float
        The system clock in Hz (the PLL's target; the identity reports what it makes).
    baud : float
        UART bit rate; the divisor is ``round(clock / baud)``, whose rate must be within 2% of `baud`.
    divisor : int, optional
        UART clock cycles per bit, overriding `baud` (simulation uses 4).
    timeout : float
        Seconds without a byte inside a request before it is answered TIMEOUT.

    Members
    -------
    rx : In(1)
        UART input (simulation; on the board it is the pin).
    tx : Out(1)
        UART output.
    flash_cs, flash_sck : Out(1)
    flash_dq_o, flash_dq_oe : Out(4)
    flash_dq_i : In(4)
        The flash reader's ports (`hdl.spi_flash_reader.SPIFlashReader`: ``flash_sck`` is an SCK pulse a cycle,
        not a pin level), only with the constants in the flash.

    Raises
    ------
    ValueError
        On an unknown board, a clock the PLL or the baud rate cannot be made from, a bad timeout,
        or constants or codes in the flash on a board other than the iCEBreaker.
    """

    def __init__(self, *, core, board, frequency, baud=DEFAULT_BAUD, divisor=None, timeout=DEFAULT_TIMEOUT):
        self._board = _board(board)
        if isinstance(frequency, bool) or not isinstance(frequency, (int, float)) or frequency <= 0:
            raise ValueError(f"Frequency must be a positive number of Hz, not {frequency!r}")
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"Timeout must be a positive number of seconds, not {timeout!r}")
        self._pll = self._board.pll(frequency)
        if divisor is None:
            divisor = uart_divisor(self._pll.frequency, baud)
        self._uart = UART(divisor=divisor)
        self._core = core
        loads = core.linear.codes == "loaded"
        self._identity = ForwardIdentity.of(core.compiled, context=core.context, clock_hz=self._pll.frequency,
                                            divisor=divisor, rows=core.rows, columns=core.columns,
                                            code_words=core.linear.code_depth if loads else 0, loads_codes=loads)
        self._link = ForwardLink(identity=self._identity, timeout=max(16, round(timeout * self._pll.frequency)))
        ports = {"rx": In(1, init=1), "tx": Out(1, init=1)}
        self._flash = self._boot = None
        self._image = None
        if getattr(core, "constant_source", "rom") == "flash" or loads:
            if self._board.name != "icebreaker":
                raise ValueError(f"Constants and codes from the SPI flash are built for the iCEBreaker only, not "
                                 f"{board!r}")
            from hdl.spi_flash_reader import SPIFlashReader
            self._flash = SPIFlashReader(offset=FLASH_CONSTANTS_OFFSET, clock_hz=self._pll.frequency)
            ports.update(flash_cs=Out(1), flash_sck=Out(1), flash_dq_o=Out(4), flash_dq_oe=Out(4), flash_dq_i=In(4))
        if loads:
            from hdl.code_boot import CodeBoot
            _, base, check = self._flash_image()
            self._boot = CodeBoot(base=base, check=check, columns=core.columns, depth=core.linear.code_depth,
                                  word_bits=core.linear.code_bits)
        super().__init__(ports)

    @property
    def core(self):
        return self._core

    @property
    def board(self):
        return self._board.name

    @property
    def link(self):
        return self._link

    @property
    def boot(self):
        """The boot sequencer (`hdl.code_boot.CodeBoot`) that reads the codes from the flash at reset if the core's
        codes are loaded (``codes="loaded"``), else None."""
        return self._boot

    def _flash_image(self):
        if self._image is None:
            from hdl.code_boot import flash_image

            core = self._core
            constants = core.constant_image() if getattr(core, "constant_source", "rom") == "flash" else b""
            if core.linear.codes == "loaded":
                self._image = flash_image(constants, core.linear.code_banks, core.linear.code_bits)
            else:
                self._image = (bytes(constants), None, None)
        return self._image

    def flash_image(self):
        """The bytes the board's flash holds at `FLASH_CONSTANTS_OFFSET` (`hdl.code_boot.flash_image`: the core's
        constant image, then the codes' part if the codes come from the flash), or None if the top reads no
        flash."""
        return None if self._flash is None else self._flash_image()[0]

    @property
    def codes_base(self):
        """Image address of the codes' part (`hdl.code_boot.codes_base`), or None if the codes are not in the
        flash."""
        return None if self._boot is None else self._boot.base

    @property
    def flash(self):
        """The flash reader (`hdl.spi_flash_reader.SPIFlashReader`) if the core's constants are in the flash,
        else None."""
        return self._flash

    def elaborate(self, platform):
        m = Module()
        m.submodules.pll = pll = self._pll
        m.submodules.uart = uart = self._uart
        m.submodules.link = link = self._link
        m.submodules.core = core = self._core
        connect_uart(m, platform, on_board=self._board.on_board(platform), uart=uart, link=link, pll=pll,
                     led=self._board.led, rx=self.rx, tx=self.tx)
        # Field by field: the link's start layout and the core's are the same fields in the same order.
        m.d.comb += [core.start.valid.eq(link.start.valid), link.start.ready.eq(core.start.ready),
                     core.start.payload.as_value().eq(link.start.payload.as_value())]
        wiring.connect(m, link.prompt, core.prompt)
        wiring.connect(m, core.token, link.token)
        if self._flash is not None:
            m.submodules.flash = flash = self._flash
            self._flash_pins(m, platform, flash)
        if self._boot is not None:
            # The boot sequencer owns the reader until every code word is written; then the core has it. The core
            # is held idle meanwhile (the link sees it busy: a GENERATE waits at its start), so it seeks nothing.
            m.submodules.boot = boot = self._boot
            wiring.connect(m, boot.code_write, core.code_write)
            m.d.comb += [link.busy.eq(core.busy | ~boot.loaded), link.codes_loaded.eq(boot.loaded),
                         link.codes_failed.eq(boot.failed)]
            owner = boot.loaded
            if self._core.constant_source == "flash":
                # The boot's one seek address (a power of two, `hdl.code_boot.codes_base`) is ORed into the core's:
                # the core's seek payload is 0 from reset until its first seek, which comes after the boot.
                m.d.comb += [flash.seek.valid.eq(Mux(owner, core.constants_seek.valid, boot.seek.valid)),
                             flash.seek.payload.eq(core.constants_seek.payload | Mux(owner, 0, boot.base)),
                             core.constants_seek.ready.eq(flash.seek.ready & owner),
                             boot.seek.ready.eq(flash.seek.ready & ~owner),
                             core.constants.payload.eq(flash.data.payload), boot.data.payload.eq(flash.data.payload),
                             core.constants.valid.eq(flash.data.valid & owner),
                             boot.data.valid.eq(flash.data.valid & ~owner),
                             flash.data.ready.eq(Mux(owner, core.constants.ready, boot.data.ready))]
            else:
                wiring.connect(m, boot.seek, flash.seek)
                wiring.connect(m, flash.data, boot.data)
        else:
            m.d.comb += link.busy.eq(core.busy)
            if self._flash is not None:
                wiring.connect(m, core.constants_seek, flash.seek)
                wiring.connect(m, flash.data, core.constants)
        return m

    def _flash_pins(self, m, platform, flash):
        """The reader's pins: the board's flash (``spi_flash_4x``: DQ0-3 are DI, DO, /WP, /HOLD), or the
        ``flash_*`` ports off the board."""
        if self._board.on_board(platform):
            m.submodules.flash_pins = flash.pin_buffers(platform.request("spi_flash_4x", 0, dir="-"))
        else:
            m.d.comb += [self.flash_cs.eq(flash.cs), self.flash_sck.eq(flash.sck), self.flash_dq_o.eq(flash.dq_o),
                         self.flash_dq_oe.eq(flash.dq_oe), flash.dq_i.eq(self.flash_dq_i)]


def default_context(board, compiled):
    """The positions a forward top of `board` holds for `compiled` by default: the model's whole context on
    the ULX3S, 64 (at most the model's) on the iCEBreaker."""
    n_positions = compiled.config.n_positions
    return n_positions if _board(board).name == "ulx3s" else min(ICEBREAKER_CONTEXT, n_positions)


def compose_forward(compiled, *, board, context=None, frequency=None, divisor=None, timeout=DEFAULT_TIMEOUT,
                    **core_options):
    """The forward top of `board` for `compiled` (a `golden.compile.CompiledModel`) holding `context` positions
    (default `default_context`), clocked at `frequency` Hz (default the board's), with `core_options` for
    `hdl.forward.forward_core.ForwardCore` (default the board's `Board.core_defaults`: on the iCEBreaker the
    codes are read from the flash into SPRAM at reset; on the ULX3S they are in the bitstream). `hdl.build` builds this
    top and `boards.generate --backend sim` simulates it, so both run the same hardware."""
    from hdl.forward.forward_core import ForwardCore

    spec = _board(board)
    context = default_context(board, compiled) if context is None else context
    core = ForwardCore(compiled=compiled, context=context, **{**dict(spec.core_defaults), **core_options})
    return ForwardTop(core=core, board=board, frequency=frequency or spec.default_mhz * 1e6, divisor=divisor,
                      timeout=timeout)
