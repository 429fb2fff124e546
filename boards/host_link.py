"""The device's end of the host link protocol (see `boards.protocol`)."""

from amaranth import Array, Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .identity_rom import ServesIdentity
from .link_framing import LinkFraming
from .protocol import MAX_PAYLOAD, Command, Identity, Status, value_bytes

__all__ = ["HostLink", "code_write_signature"]


def code_write_signature(banks, bank_words, word_width):
    """The write port into the code banks: write `data` at `addr` of bank `bank` while `en`."""
    return wiring.Signature({
        "bank": Out(range(banks)),
        "addr": Out(range(bank_words)),
        "data": Out(word_width),
        "en": Out(1),
    })


def _check_positive(value, what):
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{what} must be a positive integer, not {value!r}")
    return value


class HostLink(ServesIdentity, wiring.Component):
    """Serves the host link protocol between a UART's byte streams and the engine.

    It parses requests from `rx`, writes code words through `code_write`,
    selects the engine's `layer`, feeds a RUN's activations to `activations`
    (``last`` on the final value) and answers on `tx`, serialising the
    engine's `results`. One request is served at a time; every request is
    answered, errors included (see `boards.protocol` for the wire format).
    A RUN the host leaves unfinished (no byte for `timeout` cycles) still
    hands the engine a whole batch, completed with zero activations, and its
    results are dropped, so the engine is idle again when TIMEOUT is answered.

    The code write port, the activation stream and ``results.ready`` come from
    flip-flops, so no combinational path runs from the link into the engine
    or the SPRAMs; nor between the link and the UART: a byte passes a
    one-entry register each way (`rx` and `tx` take a byte at most every
    other cycle, far faster than the line).

    Parameters
    ----------
    identity : Identity
        What IDENTIFY answers.
    layers : sequence of (k, n)
        Inputs and outputs of each layer, in the engine's layer order.
    act_bits, acc_bits : int
        Widths of the engine's activations and results.
    max_tokens : int
        Most tokens in one RUN; the engine must take that many in one batch.
    banks, bank_words, word_width : int
        Code banks, words written per bank, bits per word (at most 16).
    timeout : int
        Cycles without a byte inside a request after which it is answered TIMEOUT.

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the UART. Inside RUN a byte waits while the engine stalls.
    tx : Out(stream.Signature(8))
        Bytes to the UART.
    line_error : In(1)
        A pulse for each byte the UART lost (overrun, framing error).
    layer : Out(range(len(layers)))
    activations : Out(stream.Signature(StructLayout({"data": signed(act_bits), "last": 1})))
    results : In(stream.Signature(StructLayout({"data": signed(acc_bits), "last": 1})))
    code_write : Out(code_write_signature(banks, bank_words, word_width))

    Raises
    ------
    ValueError
        On a parameter out of range, or a RUN of `max_tokens` whose request or
        response would not fit the 16-bit length field.
    """

    def __init__(self, *, identity, layers, act_bits, acc_bits, max_tokens, banks, bank_words,
                 word_width=16, timeout):
        if not isinstance(identity, Identity):
            raise TypeError(f"Identity must be a boards.protocol.Identity, not {identity!r}")
        layers = [(int(k), int(n)) for k, n in layers]
        if not layers or min(min(layer) for layer in layers) < 1:
            raise ValueError(f"Layers must be a non-empty list of positive (k, n), not {layers!r}")
        if len(layers) > 256:
            raise ValueError(f"At most 256 layers can be selected, not {len(layers)}")
        self._act_bytes = value_bytes(_check_positive(act_bits, "Activation bits"))
        self._acc_bytes = value_bytes(_check_positive(acc_bits, "Accumulator bits"))
        if self._act_bytes > 2:
            raise ValueError(f"Activations must be at most 16 bits, not {act_bits}")
        _check_positive(max_tokens, "Token count")
        longest = max_tokens * max(max(k * self._act_bytes, n * self._acc_bytes) for k, n in layers)
        if longest > MAX_PAYLOAD:
            raise ValueError(f"A RUN of {max_tokens} tokens needs {longest} bytes, more than the "
                             f"{MAX_PAYLOAD} a frame holds")
        if not 1 <= _check_positive(word_width, "Word width") <= 16:
            raise ValueError(f"Code words must be at most 16 bits, not {word_width}")
        self._identity = identity
        self._layers = layers
        self._act_bits, self._acc_bits = act_bits, acc_bits
        self._max_tokens = max_tokens
        self._banks = _check_positive(banks, "Bank count")
        self._bank_words = _check_positive(bank_words, "Bank words")
        self._timeout = _check_positive(timeout, "Timeout")
        super().__init__({
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "line_error": In(1),
            "layer": Out(range(len(layers))),
            "activations": Out(stream.Signature(data.StructLayout({"data": signed(act_bits), "last": 1}))),
            "results": In(stream.Signature(data.StructLayout({"data": signed(acc_bits), "last": 1}))),
            "code_write": Out(code_write_signature(banks, bank_words, word_width)),
        })

    @property
    def max_tokens(self):
        return self._max_tokens

    @property
    def timeout(self):
        return self._timeout

    def elaborate(self, platform):
        m = Module()
        framing = LinkFraming(m, rx=self.rx, tx=self.tx, line_error=self.line_error, timeout=self._timeout)
        rx, tx = framing.rx, framing.tx
        act_bytes, acc_bytes = self._act_bytes, self._acc_bytes
        identity = self._identity.pack()

        command, status, line_err, timed_out = framing.command, framing.status, framing.line_err, framing.timed_out
        is_identify, is_run = Signal(), Signal()            # command == IDENTIFY, RUN
        remaining, resp_len = framing.remaining, framing.resp_len
        respond, respond_error = framing.respond, framing.respond_error
        index = Signal(range(max(len(identity), 3, acc_bytes) + 1))
        low = Signal(8)             # the low byte of a 16-bit word or activation
        phase = Signal()            # a low byte is held
        draining = Signal()

        # -- per-layer constants for RUN's length check --
        layer_in_bytes = Array(Const(k * act_bytes, 16) for k, _ in self._layers)[self.layer]
        layer_out_bytes = Array(Const(n * acc_bytes, 16) for _, n in self._layers)[self.layer]
        run_bytes = Signal(17)
        run_resp = Signal(17)
        tokens = Signal(range(self._max_tokens + 1))
        run_match, run_over, run_resp_zero, run_resp_one = Signal(), Signal(), Signal(), Signal()

        # -- LOAD --
        address = Signal(16)
        bad_bank = Signal()
        checksum = Signal(16)
        write = self.code_write
        too_long = Signal()         # the words of a LOAD would run past the bank's end
        m.d.sync += too_long.eq(address + (remaining.value >> 1) > self._bank_words)
        m.d.sync += write.en.eq(0)        # the write port is registered: a write is one cycle of en

        # -- RUN: bytes (from the host, or zeros when draining) -> activations --
        in_byte = Mux(draining, 0, rx.payload)
        in_valid = draining | rx.valid
        value = Signal(16)
        m.d.comb += value.eq(in_byte << 8 | low if act_bytes == 2 else in_byte)
        # The activation out is a register (valid and payload are flip-flops), loaded when empty or taken.
        acts = self.activations
        act_free = ~acts.valid | acts.ready
        with m.If(acts.ready):
            m.d.sync += acts.valid.eq(0)

        # -- results: one held in a register, so the engine's ready is a flip-flop, not a path through here --
        held = Signal(signed(self._acc_bits))
        held_valid = Signal()
        take = Signal()
        m.d.comb += self.results.ready.eq(~held_valid)
        with m.If(self.results.valid & ~held_valid):
            m.d.sync += [held.eq(self.results.payload.data), held_valid.eq(1)]
        with m.If(take):
            m.d.sync += held_valid.eq(0)

        # The identity byte at `index`, a cycle late: `index` moves only when a byte is taken, and
        # the tx register then takes nothing the next cycle.
        m.submodules.identity_rom = identity_rom = self.identity_rom
        m.d.comb += identity_rom.addr.eq(index)
        rom_byte = identity_rom.data

        with m.FSM(name="link_fsm") as fsm:
            framing.request_states(
                idle=[draining.eq(0), phase.eq(0), index.eq(0), bad_bank.eq(0)],
                on_command=lambda byte: [is_identify.eq(byte == Command.IDENTIFY), is_run.eq(byte == Command.RUN)])

            with m.State("Dispatch"):
                with m.Switch(command):
                    with m.Case(Command.IDENTIFY):
                        with m.If(~remaining.zero):
                            respond_error(Status.BAD_LENGTH)
                        with m.Else():
                            m.next = "End"
                    with m.Case(Command.LOAD):
                        with m.If((remaining.value < 5) | ~remaining.value[0]):
                            respond_error(Status.BAD_LENGTH)
                        with m.Else():
                            m.d.sync += [checksum.eq(0), write.bank.eq(0)]
                            m.next = "Load-header"
                    with m.Case(Command.LAYER):
                        with m.If(~remaining.one):
                            respond_error(Status.BAD_LENGTH)
                        with m.Else():
                            m.next = "Layer"
                    with m.Case(Command.RUN):
                        m.d.sync += [run_bytes.eq(layer_in_bytes), run_resp.eq(layer_out_bytes), tokens.eq(1)]
                        m.next = "Run-compare"
                    with m.Default():
                        respond_error(Status.BAD_COMMAND)

            # LOAD: bank, address, then words
            framing.fields_state("Load-header", index=index, after="Load-sum", fields=[
                lambda byte: [write.bank.eq(byte), bad_bank.eq(byte >= self._banks)], lambda byte: [low.eq(byte)],
                lambda byte: [address.eq(Cat(low, byte))]])

            # The bound check is registered (`too_long`) so that it is not in series with the FSM's logic.
            with m.State("Load-sum"):
                m.next = "Load-check"

            with m.State("Load-check"):
                with m.If(bad_bank | too_long):
                    respond_error(Status.BAD_ARGUMENT)
                with m.Else():
                    m.next = "Load-data"

            def write_word(word):
                m.d.sync += [write.en.eq(1), write.addr.eq(address), write.data.eq(word), address.eq(address + 1),
                             checksum.eq(checksum + word)]
            framing.words_state("Load-data", phase=phase, low=low, on_word=write_word, after="End")

            with m.State("Layer"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    with m.If(rx.payload >= len(self._layers)):
                        respond(Status.BAD_ARGUMENT)
                    with m.Elif(~line_err):
                        m.d.sync += self.layer.eq(rx.payload)
                        respond(Status.OK)
                    with m.Else():
                        respond(Status.LINE_ERROR)
                framing.if_timed_out()

            # RUN: find T with T * K * act_bytes == length, 1 <= T <= max_tokens
            # (the comparisons are registered: Run-compare gives them a cycle)
            with m.State("Run-compare"):
                m.d.sync += [run_match.eq(run_bytes == remaining.value), run_resp_zero.eq(run_resp == 0),
                             run_resp_one.eq(run_resp == 1),
                             run_over.eq((tokens == self._max_tokens) | (run_bytes > remaining.value))]
                m.next = "Run-check"
            with m.State("Run-check"):
                with m.If(run_match):
                    resp_len.set(m, run_resp, run_resp_zero, run_resp_one)
                    m.next = "Run-data"
                with m.Elif(run_over):
                    respond_error(Status.BAD_LENGTH)
                with m.Else():
                    m.d.sync += [run_bytes.eq(run_bytes + layer_in_bytes),
                                 run_resp.eq(run_resp + layer_out_bytes), tokens.eq(tokens + 1)]
                    m.next = "Run-compare"

            with m.State("Run-data"):
                with m.If(remaining.zero):
                    with m.If(draining):
                        m.next = "Run-drop"            # status is TIMEOUT
                    with m.Elif(line_err):
                        m.d.sync += status.eq(Status.LINE_ERROR)
                        m.next = "Run-drop"
                    with m.Else():
                        m.d.sync += status.eq(Status.OK)
                        m.next = "Status"
                with m.Elif(in_valid):
                    with m.If(phase == act_bytes - 1):
                        m.d.comb += rx.ready.eq(act_free & ~draining)
                        with m.If(act_free):
                            m.d.sync += [acts.valid.eq(1), acts.payload.data.eq(value),
                                         acts.payload.last.eq(remaining.one), phase.eq(0)]
                            remaining.count_down(m)
                    with m.Else():
                        m.d.comb += rx.ready.eq(~draining)
                        m.d.sync += [phase.eq(1), low.eq(in_byte)]
                        remaining.count_down(m)
                with m.Elif(timed_out):
                    # The host stopped mid-batch: finish the batch with zeros, drop its results.
                    m.d.sync += [draining.eq(1), status.eq(Status.TIMEOUT)]

            with m.State("Run-drop"):
                with m.If(resp_len.zero):
                    respond(status)
                with m.Elif(held_valid):
                    m.d.comb += take.eq(1)
                    resp_len.count_down(m, acc_bytes)

            # The end of a well-formed request: answer it.
            with m.State("End"):
                with m.If(line_err):
                    respond(Status.LINE_ERROR)
                with m.Elif(is_identify):
                    respond(Status.OK, len(identity))
                with m.Else():
                    respond(Status.OK, 2)        # LOAD: the checksum

            # -- the response: status, length, payload --
            def payload():
                with m.If(is_run):
                    m.next = "Send-results"
                with m.Else():
                    m.next = "Send-bytes"
            framing.response_states(on_status=[index.eq(0)], payload=payload)

            with m.State("Send-bytes"):
                m.d.comb += [tx.valid.eq(1),
                             tx.payload.eq(Mux(is_identify, rom_byte, checksum.word_select(index[0], 8)))]
                with m.If(tx.ready):
                    m.d.sync += index.eq(index + 1)
                    resp_len.count_down(m)
                    with m.If(resp_len.one):
                        m.next = "Idle"
            with m.State("Send-results"):
                wide = Signal(signed(8 * acc_bytes))
                m.d.comb += [wide.eq(held), tx.valid.eq(held_valid),
                             tx.payload.eq(wide.as_unsigned().word_select(index, 8))]
                with m.If(tx.valid & tx.ready):
                    m.d.sync += index.eq(Mux(index == acc_bytes - 1, 0, index + 1))
                    resp_len.count_down(m)
                    with m.If(index == acc_bytes - 1):
                        m.d.comb += take.eq(1)
                    with m.If(resp_len.one):
                        m.next = "Idle"
        # One flip-flop per state: Yosys keeps the init value (the reset state) and the state
        # decoding then costs no LUT levels in front of the FSM's many enables.
        fsm.state.attrs["fsm_encoding"] = "one-hot"
        return m
