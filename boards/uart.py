"""An 8N1 UART: one start bit, eight data bits (LSB first), one stop bit, no parity."""

from amaranth import Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UART"]

#: The smallest divisor: the receiver samples each bit in its middle, so it needs
#: a few clock cycles per bit to find the middle of the start bit.
MIN_DIVISOR = 4


class UART(wiring.Component):
    """A full-duplex 8N1 UART of ``clock / divisor`` baud.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4. At 36 MHz, 12 gives the 3 Mbaud of
        the iCEBreaker's FT2232H.

    Members
    -------
    rx : In(1)
        The serial input pin (idle high); asynchronous, synchronised inside.
    tx : Out(1)
        The serial output pin (idle high).
    i_stream : In(stream.Signature(8))
        Bytes to send. `ready` is high while the transmitter is idle; a byte
        taken leaves on the wire at once, so bytes offered back to back go out
        with no gap between the stop bit and the next start bit.
    o_stream : Out(stream.Signature(8))
        Bytes received. A byte stays valid until taken; the receiver keeps
        receiving meanwhile, so a consumer has one whole character time to take
        it. A byte completed while the previous one is still untaken is dropped
        and `overrun` pulses.
    overrun : Out(1)
        Pulses for one cycle when a received byte is dropped.
    frame_error : Out(1)
        Pulses for one cycle when a stop bit reads 0; that byte is dropped and
        the receiver waits for the line to go idle (high) again.

    Raises
    ------
    ValueError
        If `divisor` is not an integer of at least 4.
    """

    def __init__(self, *, divisor):
        if isinstance(divisor, bool) or not isinstance(divisor, int) or divisor < MIN_DIVISOR:
            raise ValueError(f"UART divisor must be an integer of at least {MIN_DIVISOR}, not {divisor!r}")
        self._divisor = divisor
        super().__init__({
            "rx": In(1, init=1),
            "tx": Out(1, init=1),
            "i_stream": In(stream.Signature(8)),
            "o_stream": Out(stream.Signature(8)),
            "overrun": Out(1),
            "frame_error": Out(1),
        })

    @property
    def divisor(self):
        return self._divisor

    def baud(self, clock_hz):
        """The bit rate at a clock of `clock_hz`."""
        return clock_hz / self._divisor

    def elaborate(self, platform):
        m = Module()
        divisor = self._divisor

        # -- receiver: find the start bit's falling edge, then sample mid-bit --
        rx = Signal(init=1)
        m.submodules.rx_sync = FFSynchronizer(self.rx, rx, init=1)
        rx_timer = Signal(range(divisor))
        # The data bits shift in from the top behind a marker bit: the marker reaching bit 0 means all eight
        # are in (bits 1-8), so no bit counter is needed.
        rx_shift = Signal(9)
        with m.If(self.o_stream.ready):
            m.d.sync += self.o_stream.valid.eq(0)
        with m.If(rx_timer != 0):
            m.d.sync += rx_timer.eq(rx_timer - 1)
        with m.FSM(name="rx_fsm"):
            with m.State("Idle"):
                with m.If(~rx):
                    m.d.sync += rx_timer.eq(divisor // 2 - 1)
                    m.next = "Start"
            with m.State("Start"):
                with m.If(rx_timer == 0):
                    with m.If(rx):                      # a glitch, not a start bit
                        m.next = "Idle"
                    with m.Else():
                        m.d.sync += [rx_timer.eq(divisor - 1), rx_shift.eq(1 << 8)]
                        m.next = "Data"
            with m.State("Data"):
                with m.If(rx_timer == 0):
                    m.d.sync += [rx_timer.eq(divisor - 1), rx_shift.eq(Cat(rx_shift[1:], rx))]
                    with m.If(rx_shift[1]):             # the marker moves to bit 0: the eighth bit is in
                        m.next = "Stop"
            with m.State("Stop"):
                with m.If(rx_timer == 0):
                    with m.If(rx):
                        with m.If(self.o_stream.valid & ~self.o_stream.ready):
                            m.d.comb += self.overrun.eq(1)
                        with m.Else():
                            m.d.sync += [self.o_stream.payload.eq(rx_shift[1:]), self.o_stream.valid.eq(1)]
                        m.next = "Idle"
                    with m.Else():
                        m.d.comb += self.frame_error.eq(1)
                        m.next = "Break"
            with m.State("Break"):
                with m.If(rx):
                    m.next = "Idle"

        # -- transmitter: start bit, 8 data bits, stop bit, LSB first, then a marker bit: the character is out
        # when only the marker is left (the register shifts in zeros behind it; the line is its bit 0) --
        tx_timer = Signal(range(divisor))
        tx_shift = Signal(11, init=1)
        idle = tx_shift[1:] == 0
        m.d.comb += [self.tx.eq(tx_shift[0]), self.i_stream.ready.eq(idle)]
        with m.If(idle):
            with m.If(self.i_stream.valid):
                m.d.sync += [tx_shift.eq(Cat(0, self.i_stream.payload, 1, 1)), tx_timer.eq(divisor - 1)]
        with m.Elif(tx_timer == 0):
            m.d.sync += [tx_shift.eq(tx_shift >> 1), tx_timer.eq(divisor - 1)]
        with m.Else():
            m.d.sync += tx_timer.eq(tx_timer - 1)
        return m
