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

    Parameters
    ----------
    top : boards.icebreaker.ICEBreakerTop

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
    """

    def __init__(self, top):
        self._top = top
        self._uart = UART(divisor=top.divisor)
        super().__init__({
            "host_tx_data": In(8), "host_tx_valid": In(1), "host_tx_ready": Out(1),
            "host_rx_data": Out(8), "host_rx_valid": Out(1), "line_error": Out(1),
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
        return m
