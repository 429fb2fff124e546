"""The board top as simulation sees it: its UART pins wired to a host-side UART."""

from amaranth import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .uart import UART

__all__ = ["SimHarness"]


class SimHarness(wiring.Component):
    """The whole board top with a UART of the same divisor on the host side of its pins.

    A testbench then moves bytes, not bits: it offers a byte on ``host_tx_*``
    and the host UART sends it as an 8N1 character into the top's ``rx`` pin;
    every character the top sends on ``tx`` comes out of ``host_rx_*`` for one
    cycle (``host_rx_valid``; there is no backpressure, as on a real line).
    The top's UART, host link, engine and code banks run exactly as on the
    board; only the far end of the wire is hardware rather than Python, which
    spares the testbench ten wake-ups per byte.

    A top that reads the SPI flash (``top.flash``: `boards.forward_top.ForwardTop`
    with its core's constants or codes there) gets the flash too: a
    `boards.spi_flash_model.SPIFlashModel` on its ``flash_*`` pins, holding
    ``top.flash_image()`` (the constants and the codes the top reads at reset)
    at `boards.forward_top.FLASH_CONSTANTS_OFFSET`, answering at the flash's
    rate and flagging any misuse on `flash_error`.

    Parameters
    ----------
    top : boards.icebreaker.ICEBreakerTop or boards.forward_top.ForwardTop
    image : bytes, optional
        What the flash holds instead of ``top.flash_image()`` (a test's wrong image).

    Members
    -------
    host_tx_data : In(8)
    host_tx_valid : In(1)
    host_tx_ready : Out(1)
        The host UART takes ``host_tx_data`` in a cycle with both high.
    host_rx_data : Out(8)
    host_rx_valid : Out(1)
    line_error : Out(1)
        The host UART saw a framing error or lost a byte (sticky).
    flash_error : Out(4)
        The flash model's first protocol error (`boards.spi_flash_model.FlashError`; 0: none, or no flash).
    """

    def __init__(self, top, *, image=None):
        self._top = top
        self._uart = UART(divisor=top.divisor)
        self._flash = None
        if getattr(top, "flash", None) is not None:
            from .forward_top import FLASH_CONSTANTS_OFFSET
            from .spi_flash_model import SPIFlashModel
            self._flash = SPIFlashModel(image=top.flash_image() if image is None else image,
                                        offset=FLASH_CONSTANTS_OFFSET,
                                        release_cycles=SPIFlashModel.release_cycles_at(top.frequency))
        super().__init__({
            "host_tx_data": In(8), "host_tx_valid": In(1), "host_tx_ready": Out(1),
            "host_rx_data": Out(8), "host_rx_valid": Out(1), "line_error": Out(1), "flash_error": Out(4),
        })

    @property
    def top(self):
        return self._top

    def elaborate(self, platform):
        m = Module()
        m.submodules.top = top = self._top
        m.submodules.host_uart = uart = self._uart
        m.d.comb += [
            top.rx.eq(uart.tx), uart.rx.eq(top.tx),
            uart.i_stream.payload.eq(self.host_tx_data), uart.i_stream.valid.eq(self.host_tx_valid),
            self.host_tx_ready.eq(uart.i_stream.ready),
            self.host_rx_data.eq(uart.o_stream.payload), self.host_rx_valid.eq(uart.o_stream.valid),
            uart.o_stream.ready.eq(1),
        ]
        with m.If(uart.overrun | uart.frame_error):
            m.d.sync += self.line_error.eq(1)
        if self._flash is not None:
            m.submodules.flash = flash = self._flash
            m.d.comb += [flash.cs.eq(top.flash_cs), flash.sck.eq(top.flash_sck), flash.dq_o.eq(top.flash_dq_o),
                         flash.dq_oe.eq(top.flash_dq_oe), top.flash_dq_i.eq(flash.dq_i), self.flash_error.eq(flash.error)]
        return m
