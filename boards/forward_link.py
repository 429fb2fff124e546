"""The board's end of the forward protocol (see `boards.forward_protocol`): UART bytes to and from the core."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .forward_protocol import ARGUMENTS, CODES_LOADED, Command, ForwardIdentity
from .identity_rom import ServesIdentity
from .link_framing import LinkFraming
from .protocol import MAX_PAYLOAD, Status

__all__ = ["ForwardLink", "start_layout"]


def start_layout(*, context, vocab_size):
    """The layout of a generation's settings on the core's ``start`` stream (`hdl.forward.forward_core`)."""
    return data.StructLayout({
        "prompt_length": range(context + 1),
        "count": range(context + 1),
        "inv_temperature": 16,
        "top_k": range(vocab_size + 1),
        "seed": 32,
    })


class ForwardLink(ServesIdentity, wiring.Component):
    """Serves IDENTIFY, GENERATE and LOAD between a UART's byte streams and the whole-forward core.

    A GENERATE's prompt is read whole into a buffer (``context`` ids, one block
    RAM) and checked before the core hears of it: a request of the wrong
    length, with an id outside the vocabulary, a top-k of 0 or above the
    vocabulary, or the one seed whose sampler state would be 0, is answered
    with its error once its payload is read (`boards.protocol`'s rules, with
    `boards.link_framing.LinkFraming`, as `boards.host_link.HostLink`), and
    so is a request cut short or hit by a line error; the core never starts on
    a request that is not whole and valid, and the link takes the next request.
    A valid one starts the core with ``count = min(count, context - n)``,
    answers ``OK`` with ``2 * count`` bytes, hands the core the prompt, then
    sends each token the core makes (u16) as it comes. A count of 0 is
    answered at once without starting the core.

    The core's streams are driven from flip-flops (start's payload from the
    request's registers, the prompt from a register fed by the buffer, the
    token's ready from a one-token register), so no combinational path runs
    between the link and the core.

    A build whose codes are loaded (``identity.loads_codes``: the core's
    ``codes="loaded"``) also serves LOAD: each word goes to the core's
    ``code_write`` (a register, one write per word), the answer is the words'
    sum; the link counts the codes as loaded once LOADs have covered every
    bank in order (`boards.forward_protocol`), sets the identity's
    ``CODES_LOADED`` flag as it sends it, and answers a GENERATE before that
    ``NOT_LOADED``.

    Parameters
    ----------
    identity : ForwardIdentity
        What IDENTIFY answers; its ``vocab_size`` and ``context`` size the link.
    timeout : int
        Cycles without a byte inside a request after which it is answered TIMEOUT.

    Members
    -------
    rx : In(stream.Signature(8))
        Bytes from the UART.
    tx : Out(stream.Signature(8))
        Bytes to the UART.
    line_error : In(1)
        A pulse for each byte the UART lost (overrun, framing error).
    start : Out(stream.Signature(start_layout(context, vocab_size)))
        A generation's settings (see `hdl.forward.forward_core.ForwardCore`).
    prompt : Out(stream.Signature(range(vocab_size)))
        The prompt's ids, ``prompt_length`` of them after ``start`` is taken.
    token : In(stream.Signature(range(vocab_size)))
        The core's tokens, ``count`` of them.
    busy : In(1)
        The core is generating; ``start`` waits while it is high.
    code_write : Out(Signature({"en", "bank": range(columns), "addr": range(code_words), "data": 16}))
        Only when ``identity.loads_codes``: the words of LOADs, to the core's ``code_write``.

    Raises
    ------
    TypeError, ValueError
        On a parameter of the wrong kind or out of range.
    """

    def __init__(self, *, identity, timeout):
        if not isinstance(identity, ForwardIdentity):
            raise TypeError(f"Identity must be a boards.forward_protocol.ForwardIdentity, not {identity!r}")
        if not 1 <= identity.context <= (MAX_PAYLOAD - ARGUMENTS.size) // 2:
            raise ValueError(f"Context must be 1 to {(MAX_PAYLOAD - ARGUMENTS.size) // 2} (a request's prompt), "
                             f"not {identity.context}")
        if not 1 <= identity.vocab_size <= 0xFFFF:
            raise ValueError(f"Vocabulary size must be 1 to 65535 (ids are u16), not {identity.vocab_size}")
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 1:
            raise ValueError(f"Timeout must be a positive integer, not {timeout!r}")
        if identity.loads_codes and not (1 <= identity.columns <= 255 and 1 <= identity.code_words <= 0xFFFF):
            raise ValueError(f"A build that loads its codes needs 1 to 255 banks of 1 to 65535 words, not "
                             f"{identity.columns} of {identity.code_words}")
        self._identity = identity
        self._timeout = timeout
        vocab, context = identity.vocab_size, identity.context
        ports = {}
        if identity.loads_codes:
            ports["code_write"] = Out(wiring.Signature({
                "en": Out(1), "bank": Out(range(identity.columns)),
                "addr": Out(range(max(2, identity.code_words))), "data": Out(16)}))
        super().__init__({
            **ports,
            "rx": In(stream.Signature(8)),
            "tx": Out(stream.Signature(8)),
            "line_error": In(1),
            "start": Out(stream.Signature(start_layout(context=context, vocab_size=vocab))),
            "prompt": Out(stream.Signature(range(vocab))),
            "token": In(stream.Signature(range(vocab))),
            "busy": In(1),
        })

    @property
    def context(self):
        return self._identity.context

    @property
    def vocab_size(self):
        return self._identity.vocab_size

    @property
    def timeout(self):
        return self._timeout

    @property
    def loads_codes(self):
        return self._identity.loads_codes

    def elaborate(self, platform):
        m = Module()
        # The longest answer: the identity, a LOAD's sum or 2 bytes a token (no u16 length counter needed).
        framing = LinkFraming(m, rx=self.rx, tx=self.tx, line_error=self.line_error, timeout=self._timeout,
                              response_bytes=max(len(self._identity.pack()), 2, 2 * self.context))
        rx, tx = framing.rx, framing.tx
        remaining, resp_len = framing.remaining, framing.resp_len
        vocab, context = self.vocab_size, self.context
        identity_size = len(self._identity.pack())

        is_identify = Signal()
        index = Signal(range(identity_size + 1))   # identity byte sent; GENERATE: argument byte read
        low = Signal(8)                            # the low byte of an id or a token
        phase = Signal()                           # the high byte is next

        # -- GENERATE's arguments: ARGUMENTS.size bytes shifted in, little-endian --
        arguments = Signal(8 * ARGUMENTS.size)
        count, inv_temperature, top_k, seed = (arguments[:16], arguments[16:32], arguments[32:48],
                                               arguments[48:80])
        prompt_length = Signal(range(context + 1))
        tokens = Signal(range(context + 1))        # min(count, context - prompt_length)
        bad_argument = Signal()

        # -- the prompt buffer: written as the ids arrive, read out to the core once the request is valid --
        m.submodules.prompt_buffer = buffer = memory.Memory(shape=range(vocab), depth=context, init=[])
        write, read = buffer.write_port(), buffer.read_port()
        address = Signal(range(context + 1))
        fresh = Signal()                           # read.data is the id at `address`
        m.d.comb += [write.addr.eq(address), read.addr.eq(address), write.data.eq(Cat(low, rx.payload))]
        prompt = self.prompt
        with m.If(prompt.ready):
            m.d.sync += prompt.valid.eq(0)

        # -- tokens: one held in a register, so the core's ready is a flip-flop --
        held = Signal(range(vocab))
        held_valid = Signal()
        m.d.comb += self.token.ready.eq(~held_valid)
        with m.If(self.token.valid & ~held_valid):
            m.d.sync += [held.eq(self.token.payload), held_valid.eq(1)]

        m.d.comb += [self.start.payload.prompt_length.eq(prompt_length), self.start.payload.count.eq(tokens),
                     self.start.payload.inv_temperature.eq(inv_temperature), self.start.payload.top_k.eq(top_k),
                     self.start.payload.seed.eq(seed)]

        m.submodules.identity_rom = identity_rom = self.identity_rom
        m.d.comb += identity_rom.addr.eq(index)

        # -- LOAD: the pass over every bank in order, and whether it is complete --
        loads = self._identity.loads_codes
        is_load = Signal()
        loaded = Signal()
        checksum = Signal(16)
        if loads:
            columns, bank_words = self._identity.columns, self._identity.code_words
            code = self.code_write
            in_pass = Signal()                     # every word so far went where the pass is
            next_bank = Signal(range(columns + 1))
            next_address = Signal(range(bank_words + 1))
            load_bank, load_address = Signal(8), Signal(16)
            m.d.sync += code.en.eq(0)
            m.d.comb += [code.bank.eq(load_bank), code.addr.eq(load_address)]
            with m.If(code.en):                          # the word written this cycle: on to the next address
                m.d.sync += load_address.eq(load_address + 1)

        with m.FSM(name="link_fsm") as fsm:
            framing.request_states(idle=[phase.eq(0), index.eq(0), address.eq(0), bad_argument.eq(0)],
                                   on_command=lambda byte: [is_identify.eq(byte == Command.IDENTIFY),
                                                            is_load.eq(byte == Command.LOAD)])

            with m.State("Dispatch"):
                with m.Switch(framing.command):
                    with m.Case(Command.IDENTIFY):
                        with m.If(~remaining.zero):
                            framing.respond_error(Status.BAD_LENGTH)
                        with m.Elif(framing.line_err):
                            framing.respond(Status.LINE_ERROR)
                        with m.Else():
                            framing.respond(Status.OK, identity_size)
                    with m.Case(Command.GENERATE):
                        with m.If((remaining.value < ARGUMENTS.size + 2) | remaining.value[0]
                                  | (remaining.value > ARGUMENTS.size + 2 * context)):
                            framing.respond_error(Status.BAD_LENGTH)
                        with m.Elif(~loaded if loads else 0):
                            framing.respond_error(Status.NOT_LOADED)
                        with m.Else():
                            m.d.sync += prompt_length.eq((remaining.value - ARGUMENTS.size) >> 1)
                            m.next = "Arguments"
                    if loads:
                        with m.Case(Command.LOAD):
                            # Any LOAD changes the codes: they are loaded again only when a pass completes.
                            m.d.sync += loaded.eq(0)
                            with m.If((remaining.value < 5) | ~remaining.value[0]):
                                m.d.sync += in_pass.eq(0)
                                framing.respond_error(Status.BAD_LENGTH)
                            with m.Else():
                                m.next = "Load-header"
                    with m.Default():
                        framing.respond_error(Status.BAD_COMMAND)

            if loads:
                framing.fields_state("Load-header", index=index, after="Load-sum", fields=[
                    lambda byte: [load_bank.eq(byte)], lambda byte: [load_address[:8].eq(byte)],
                    lambda byte: [load_address[8:].eq(byte)]])

                # The checks are registered (`out_of_range`) so that no adder is in series with the FSM's logic.
                out_of_range = Signal()
                with m.State("Load-sum"):
                    m.d.sync += [out_of_range.eq((load_bank >= columns)
                                                 | (load_address + (remaining.value >> 1) > bank_words)),
                                 checksum.eq(0)]
                    m.next = "Load-check"

                with m.State("Load-check"):
                    with m.If(out_of_range):
                        m.d.sync += in_pass.eq(0)
                        framing.respond_error(Status.BAD_ARGUMENT)
                    with m.Else():
                        with m.If((load_bank == 0) & (load_address == 0)):
                            m.d.sync += in_pass.eq(1)
                        with m.Elif((load_bank != next_bank) | (load_address != next_address)):
                            m.d.sync += in_pass.eq(0)
                        m.next = "Load-words"

                def write_word(word):
                    m.d.sync += [code.en.eq(1), code.data.eq(word), checksum.eq(checksum + word)]
                framing.words_state("Load-words", phase=phase, low=low, on_word=write_word, after="Load-end")

                with m.State("Load-end"):                # the last word is written; the pass goes on from here
                    with m.If(framing.line_err):
                        m.d.sync += in_pass.eq(0)
                        framing.respond(Status.LINE_ERROR)
                    with m.Else():
                        m.d.sync += [next_bank.eq(load_bank), next_address.eq(load_address)]
                        with m.If(load_address == bank_words):
                            m.d.sync += [next_bank.eq(load_bank + 1), next_address.eq(0)]
                            with m.If(in_pass & (load_bank == columns - 1)):
                                m.d.sync += loaded.eq(1)
                        framing.respond(Status.OK, 2)


            with m.State("Arguments"):
                m.d.comb += rx.ready.eq(1)
                with m.If(rx.valid):
                    m.d.sync += [arguments.eq(Cat(arguments[8:], rx.payload)), index.eq(index + 1)]
                    remaining.count_down(m)
                    with m.If(index == ARGUMENTS.size - 1):
                        m.next = "Check-arguments"
                framing.if_timed_out()

            with m.State("Check-arguments"):
                m.d.sync += [bad_argument.eq((top_k == 0) | (top_k > vocab) | (seed == 0xFFFF_FFFF)),
                             tokens.eq(context - prompt_length)]
                m.next = "Ids"

            def store_id(word):
                m.d.comb += write.en.eq(1)
                m.d.sync += address.eq(address + 1)
                with m.If(word >= vocab):
                    m.d.sync += bad_argument.eq(1)
            framing.words_state("Ids", phase=phase, low=low, on_word=store_id, after="Check-ids")

            with m.State("Check-ids"):
                # A line error answers LINE_ERROR (`respond` turns the error into it).
                with m.If(bad_argument | framing.line_err):
                    framing.respond(Status.BAD_ARGUMENT)
                with m.Else():
                    m.d.sync += [tokens.eq(Mux(count < tokens, count, tokens)), address.eq(0), fresh.eq(0)]
                    m.next = "Count"

            with m.State("Count"):
                with m.If(tokens == 0):
                    framing.respond(Status.OK)
                with m.Else():
                    resp_len.set(m, tokens << 1, 0, 0)
                    m.next = "Start"

            with m.State("Start"):
                m.d.comb += self.start.valid.eq(~self.busy)
                with m.If(self.start.valid & self.start.ready):
                    framing.respond(Status.OK)

            def payload():
                with m.If(is_identify | (is_load if loads else 0)):
                    m.next = "Send-bytes"
                with m.Else():
                    m.next = "Prompt"
            framing.response_states(on_status=[index.eq(0)], payload=payload)

            # IDENTIFY's identity or LOAD's checksum. The identity byte at `index` comes a cycle late:
            # `index` moves only when a byte is taken, and the tx register then takes nothing the next cycle.
            with m.State("Send-bytes"):
                byte = identity_rom.data
                if loads:                                  # the flags byte: CODES_LOADED as it is now
                    flags = identity_rom.data | Mux(loaded, CODES_LOADED, 0)
                    byte = Mux(is_identify, Mux(index == ForwardIdentity.FLAGS_OFFSET, flags, identity_rom.data),
                               checksum.word_select(index[0], 8))
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(byte)]
                with m.If(tx.ready):
                    m.d.sync += index.eq(index + 1)
                    resp_len.count_down(m)
                    with m.If(resp_len.one):
                        m.next = "Idle"

            # The prompt to the core, an id every other cycle at most (the buffer's read takes one).
            with m.State("Prompt"):
                with m.If(~fresh):
                    m.d.sync += fresh.eq(1)
                with m.Elif(~prompt.valid | prompt.ready):
                    m.d.sync += [prompt.valid.eq(1), prompt.payload.eq(read.data), address.eq(address + 1),
                                 fresh.eq(0)]
                    with m.If(address == prompt_length - 1):
                        m.next = "Tokens"

            # Each token as the core makes it: low byte, high byte.
            with m.State("Tokens"):
                wide = Signal(16)
                m.d.comb += [wide.eq(held), tx.valid.eq(held_valid), tx.payload.eq(wide.word_select(phase, 8))]
                with m.If(tx.valid & tx.ready):
                    m.d.sync += phase.eq(~phase)
                    resp_len.count_down(m)
                    with m.If(phase):
                        m.d.sync += held_valid.eq(0)
                    with m.If(resp_len.one):
                        m.next = "Idle"
        fsm.state.attrs["fsm_encoding"] = "one-hot"
        return m
