"""What the board ends of both host protocols share: the framing of requests and responses in hardware.

`boards.host_link.HostLink` (the linear design) and `boards.forward_link.ForwardLink`
(the whole forward) parse the same frames (``command u8 | length u16 | payload``
in, ``status u8 | length u16 | payload`` out) with the same rules: a request cut
short (no byte for `timeout` cycles) is answered TIMEOUT, a byte the UART lost
turns an error answer into LINE_ERROR, a malformed request has its payload read
and dropped before its error is answered. `LinkFraming` builds those parts into
a link's module and its FSM, so each link writes only its commands.
"""

from amaranth import Cat, Const, Mux, Signal
from amaranth.lib import stream

from .protocol import Status

__all__ = ["Countdown", "LinkFraming", "above"]


def above(value, constant):
    """``value > constant`` (an unsigned Value against a constant) as a chain of ANDs and ORs from the lowest
    bit up, which synthesis makes a few LUTs rather than a carry chain as long as `value`."""
    if constant < 0:
        return Const(1)
    greater = Const(0)
    for i in range(len(value)):
        greater = (value[i] & greater) if (constant >> i) & 1 else (value[i] | greater)
    return greater if constant < 1 << len(value) else Const(0)


class Countdown:
    """A down-counter (16 bits, or `bits`) with ``value == 0`` and ``value == 1`` kept in flip-flops beside it.

    Every assignment goes through `set` or `count_down`, which update all three, so that no
    comparison of the counter is in series with the FSM logic that reads `zero` and `one`.
    """

    def __init__(self, name, bits=16):
        self.value = Signal(bits, name=name)
        self.zero = Signal(init=1, name=f"{name}_zero")
        self.one = Signal(name=f"{name}_one")

    def set(self, m, value, zero, one):
        """Load `value`, whose ``== 0`` is `zero` and ``== 1`` is `one` (expressions the caller has at hand)."""
        m.d.sync += [self.value.eq(value), self.zero.eq(zero), self.one.eq(one)]

    def count_down(self, m, step=1):
        """Subtract `step` (a constant); the caller knows ``value >= step``."""
        zero = self.one if step == 1 else self.value == step
        self.set(m, self.value - step, zero, self.value == step + 1)


class LinkFraming:
    """The framing of a board's host link, built into module `m`.

    Made outside the link's FSM, it puts a one-byte register between the UART and
    the FSM each way (`rx`, `tx`: the FSM's byte streams, which take a byte at most
    every other cycle, far faster than the line), a timer of the host's silence
    (`timed_out`) and a latch of the UART's lost bytes (`line_err`). Inside the
    FSM, `request_states` and `response_states` add the states every request and
    every answer go through; the link adds its commands' states between them.

    Parameters
    ----------
    m : Module
    rx : stream.Interface
        The link's byte input from the UART (its ``rx`` member).
    tx : stream.Interface
        The link's byte output to the UART.
    line_error : Value
        A pulse for each byte the UART lost (overrun, framing error).
    timeout : int
        Cycles without a byte inside a request after which it is answered TIMEOUT.
    response_bytes : int
        The longest response payload the link sends (default 65535, a u16 length); `resp_len` is as wide as
        that needs (the length's high byte is sent from the bits it has).
    buffered : bool
        Put a one-byte register between the UART and the FSM each way (default); without, the FSM's `rx`
        and `tx` are the link's own streams (the UART's receive and transmit registers are then the only
        buffers: fewer cells, a longer combinational path from the FSM to the UART).

    Attributes
    ----------
    rx, tx : stream.Interface
        The FSM's byte streams.
    command : Signal(8)
        The request's command byte.
    remaining : Countdown
        Request payload bytes still to read.
    resp_len : Countdown
        Response payload bytes still to send (0 from ``Idle`` on, until the link sets it).
    status : Signal(Status)
        The answer's status.
    line_err : Signal
        The UART lost a byte of this request.
    timed_out : Value
        No byte has come for `timeout` cycles (the top bit of the silence timer).
    """

    def __init__(self, m, *, rx, tx, line_error, timeout, response_bytes=0xFFFF, buffered=True):
        self._m = m
        if buffered:
            self.rx, self.tx = stream.Signature(8).create(), stream.Signature(8).create()
            m.d.comb += rx.ready.eq(~self.rx.valid)
            with m.If(rx.valid & ~self.rx.valid):
                m.d.sync += [self.rx.payload.eq(rx.payload), self.rx.valid.eq(1)]
            with m.If(self.rx.valid & self.rx.ready):
                m.d.sync += self.rx.valid.eq(0)
            tx_full, tx_byte = Signal(), Signal(8)
            m.d.comb += [tx.valid.eq(tx_full), tx.payload.eq(tx_byte), self.tx.ready.eq(~tx_full)]
            with m.If(self.tx.valid & ~tx_full):
                m.d.sync += [tx_byte.eq(self.tx.payload), tx_full.eq(1)]
            with m.If(tx.valid & tx.ready):
                m.d.sync += tx_full.eq(0)
        else:
            self.rx, self.tx = rx, tx

        self.command = Signal(8)
        self.remaining = Countdown("remaining")
        self.resp_len = Countdown("resp_len", max(1, response_bytes.bit_length()))
        self.status = Signal(Status)
        self.line_err = Signal()
        # The host's silence: `timer` restarts at 2**k - timeout with each byte and counts up to 2**k, whose top
        # bit is `timed_out` (no comparator: the restart value is the flip-flops' synchronous set/reset).
        top = timeout.bit_length()
        timer = Signal(top + 1, init=(1 << top) - timeout)
        self.timed_out = timer[top]
        with m.If(self.rx.valid):
            m.d.sync += timer.eq((1 << top) - timeout)
        with m.Elif(~self.timed_out):
            m.d.sync += timer.eq(timer + 1)
        with m.If(line_error):
            m.d.sync += self.line_err.eq(1)

    def respond(self, code, length=0):
        """Answer `code` with a payload of `length` bytes (a constant, or a 16-bit value). An error
        answer becomes LINE_ERROR if the UART lost a byte of the request, the likely cause of the
        error. `resp_len` is 0 from ``Idle`` until the link sets it, so only a non-zero constant
        `length` is written."""
        m = self._m
        if code is not Status.OK:
            code = Mux(self.line_err, Status.LINE_ERROR, code)
        m.d.sync += self.status.eq(code)
        if not isinstance(length, int):
            self.resp_len.set(m, length, length == 0, length == 1)
        elif length:
            self.resp_len.set(m, length, 0, length == 1)
        m.next = "Status"

    def respond_error(self, code):
        """Read and drop the rest of the payload, then answer `code`."""
        self._m.d.sync += self.status.eq(code)
        self._m.next = "Discard"

    def if_timed_out(self):
        """Inside a state that waits for a byte (after its ``If(rx.valid)``): answer TIMEOUT once the host
        has been silent for `timeout` cycles."""
        with self._m.Elif(self.timed_out):
            self.respond(Status.TIMEOUT)

    def request_states(self, *, idle=(), on_command=lambda byte: ()):
        """``Idle`` (the reset state: statements `idle` every cycle, the command byte taken, with
        ``on_command(byte)``'s statements) and ``Length-low``, ``Length-high``, which go on to
        ``Dispatch`` (the link's). Also ``Discard``, where `respond_error` drops a payload."""
        m, rx, remaining = self._m, self.rx, self.remaining
        with m.State("Idle"):
            m.d.comb += rx.ready.eq(1)
            m.d.sync += [self.line_err.eq(0), *idle]
            self.resp_len.set(m, 0, 1, 0)
            with m.If(rx.valid):
                m.d.sync += [self.command.eq(rx.payload), *on_command(rx.payload)]
                m.next = "Length-low"

        with m.State("Length-low"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                high = remaining.value[8:]
                remaining.set(m, Cat(rx.payload, high), (rx.payload == 0) & (high == 0),
                              (rx.payload == 1) & (high == 0))
                m.next = "Length-high"
            self.if_timed_out()

        with m.State("Length-high"):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                low = remaining.value[:8]
                remaining.set(m, Cat(low, rx.payload), (rx.payload == 0) & (low == 0),
                              (rx.payload == 0) & (low == 1))
                m.next = "Dispatch"
            self.if_timed_out()

        with m.State("Discard"):
            m.d.comb += rx.ready.eq(1)
            with m.If(remaining.zero):
                self.respond(self.status)
            with m.Elif(rx.valid):
                remaining.count_down(m)
            self.if_timed_out()

    def fields_state(self, name, *, index, fields, after):
        """State `name`: the payload's next ``len(fields)`` bytes, byte ``i`` taken with ``fields[i](byte)``'s
        statements; `index` (a Signal, 0 on entry) counts them; then `after`; TIMEOUT if the host stops."""
        m, rx = self._m, self.rx
        with m.State(name):
            m.d.comb += rx.ready.eq(1)
            with m.If(rx.valid):
                m.d.sync += index.eq(index + 1)
                self.remaining.count_down(m)
                with m.Switch(index):
                    for i, field in enumerate(fields):
                        with m.Case(i):
                            m.d.sync += field(rx.payload)
                            if i == len(fields) - 1:
                                m.next = after
            self.if_timed_out()

    def words_state(self, name, *, phase, low, on_word, after):
        """State `name`: the rest of the payload as little-endian u16 words. `phase` (a Signal, 0 on entry)
        and `low` (8 bits) hold the byte pair; ``on_word(word)`` adds the statements of the cycle a word's
        high byte comes; once the payload is read the state goes to `after`; TIMEOUT if the host stops."""
        m, rx, remaining = self._m, self.rx, self.remaining
        with m.State(name):
            m.d.comb += rx.ready.eq(1)
            with m.If(remaining.zero):
                m.next = after
            with m.Elif(rx.valid):
                m.d.sync += [phase.eq(~phase), low.eq(rx.payload)]
                remaining.count_down(m)
                with m.If(phase):
                    on_word(Cat(low, rx.payload))
            self.if_timed_out()

    def response_states(self, *, on_status=(), payload):
        """``Status``, ``Response-length-low``, ``Response-length-high``: the answer's header from
        `status` and `resp_len`, then ``Idle`` if there is no payload, else ``payload()`` (which sets
        the next state). `on_status` are statements for every cycle of ``Status``."""
        m, tx = self._m, self.tx
        with m.State("Status"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(self.status)]
            m.d.sync += list(on_status)
            with m.If(tx.ready):
                m.next = "Response-length-low"
        with m.State("Response-length-low"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(self.resp_len.value[:8])]
            with m.If(tx.ready):
                m.next = "Response-length-high"
        with m.State("Response-length-high"):
            m.d.comb += [tx.valid.eq(1), tx.payload.eq(self.resp_len.value[8:16])]
            with m.If(tx.ready):
                with m.If(self.resp_len.zero):
                    m.next = "Idle"
                with m.Else():
                    payload()
