"""The board's end of the forward protocol (see `boards.forward_protocol`): UART bytes to and from the core."""

from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from hdl.read_port import NO_COLLISIONS, ReadPort

from .forward_protocol import ARGUMENTS, CODES_LOADED, CODES_MISSING, Command, ForwardIdentity
from .link_framing import LinkFraming, above
from .protocol import MAX_PAYLOAD, Status

__all__ = ["ForwardLink", "start_layout"]

#: GENERATE's argument words (count, inv_temperature, top_k, seed low, seed high); the ids follow.
ARGUMENT_WORDS = ARGUMENTS.size // 2


def start_layout(*, context, vocab_size):
    """The layout of a generation's settings on the core's ``start`` stream (`hdl.forward.forward_core`)."""
    return data.StructLayout({
        "prompt_length": range(context + 1),
        "count": range(context + 1),
        "inv_temperature": 16,
        "top_k": range(vocab_size + 1),
        "seed": 32,
    })


class ForwardLink(wiring.Component):
    """Serves IDENTIFY and GENERATE between a UART's byte streams and the whole-forward core.

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

    Small on purpose (the iCE40UP5K holds the core beside it): the arguments
    and ids are one stream of u16 words, each checked as it comes (the settings
    go straight into the registers the core's ``start`` reads: the count as
    ``min(count, context - n)``, top-k at the width the core takes); the
    identity is read from the prompt buffer's block RAM, where it sits past the
    prompt; the UART's registers are the only byte buffers; the prompt goes to
    the core from the buffer's read register, the tokens to the UART from the
    core's.

    A build whose codes come from the SPI flash (``identity.loads_codes``: the
    board top's `hdl.code_boot.CodeBoot`) has the inputs `codes_loaded` and
    `codes_failed`: IDENTIFY's flags byte says which (`CODES_LOADED`,
    `CODES_MISSING`), and a GENERATE is answered ``NOT_LOADED`` once the boot
    has failed. A GENERATE before the codes are in waits at its start (the top
    holds `busy` high until they are).

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
        The core is generating (or its codes are not in yet); ``start`` waits while it is high.
    codes_loaded, codes_failed : In(1)
        Only when ``identity.loads_codes``: the codes are in; the boot found no image of this build.

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
        self._identity = identity
        self._timeout = timeout
        vocab, context = identity.vocab_size, identity.context
        ports = {}
        if identity.loads_codes:
            ports.update(codes_loaded=In(1), codes_failed=In(1))
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
    def identity(self):
        return self._identity

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

    @property
    def buffer_width(self):
        """Bits of a prompt buffer word: 8 for a vocabulary of at most 256 ids (the identity a byte a word), else
        16 (the identity two bytes a word, little-endian)."""
        return 8 if self.vocab_size <= 256 else 16

    def buffer_words(self):
        """The prompt buffer's initial contents: ``context`` empty words, then the identity."""
        packed, size = self._identity.pack(), self.buffer_width // 8
        return [0] * self.context + [int.from_bytes(packed[i:i + size], "little") for i in range(0, len(packed), size)]

    def elaborate(self, platform):
        m = Module()
        vocab, context = self.vocab_size, self.context
        identity_size = len(self._identity.pack())
        # The longest answer: the identity or 2 bytes a token (no u16 length counter needed). No byte registers:
        # the UART's are enough (the FSM takes a byte at most every other cycle, far faster than the line).
        framing = LinkFraming(m, rx=self.rx, tx=self.tx, line_error=self.line_error, timeout=self._timeout,
                              response_bytes=max(identity_size, 2 * context), buffered=False)
        rx, tx = framing.rx, framing.tx
        remaining, resp_len = framing.remaining, framing.resp_len

        is_identify, is_generate = Signal(), Signal()
        # The identity's byte sent; the argument word read; the prompt's id read out.
        index = Signal(range(max(identity_size, ARGUMENT_WORDS, context) + 1))
        low = Signal(8)                            # the low byte of a word
        phase = Signal()                           # the high byte is next
        word = Cat(low, rx.payload)

        # -- the settings, as the core's start takes them, each from its word as it comes --
        tokens = Signal(range(context + 1))        # context - n, then min(count, context - n)
        inv_temperature = Signal(16)
        top_k = Signal(range(vocab + 1))
        seed = Signal(32)
        ones = Signal()                            # the seed's low word is 0xFFFF
        bad = Signal()                             # an argument or an id is out of range

        # -- the prompt buffer (ids written as they arrive, read out to the core once the request is valid), with
        # the identity past it --
        wide = self.buffer_width == 16
        words = self.buffer_words()
        # Read only in IDENTIFY's answer and the prompt's readout, never while a word is written: no read-during-
        # write logic (`hdl.read_port`).
        m.submodules.buffer = buffer = memory.Memory(shape=self.buffer_width, depth=len(words), init=words,
                                                     attrs=NO_COLLISIONS)
        write, read = buffer.write_port(), ReadPort(m, buffer, "buffer_read")
        written = Signal(range(context + 1))       # ids written: the prompt's length
        fresh = Signal()                           # read.data is the word at the read address
        high = Signal()                            # the identity byte wanted is the word's high one
        m.d.comb += [write.addr.eq(written), write.data.eq(word),
                     read.addr.eq(Mux(is_identify, context + (index >> 1 if wide else index), index))]
        m.d.sync += [fresh.eq(1), high.eq(index[0])]

        prompt = self.prompt
        m.d.comb += [prompt.payload.eq(read.data),
                     self.start.payload.prompt_length.eq(written), self.start.payload.count.eq(tokens),
                     self.start.payload.inv_temperature.eq(inv_temperature), self.start.payload.top_k.eq(top_k),
                     self.start.payload.seed.eq(seed)]

        # word >= V: an id outside the vocabulary (`above`: no carry chain).
        at_least_vocab = above(word, vocab - 1)
        all_ones = word == 0xFFFF
        room = (context + ARGUMENT_WORDS - remaining.value[1:])[:len(tokens)]      # context - n

        with m.FSM(name="link_fsm") as fsm:
            framing.request_states(idle=[phase.eq(0), index.eq(0), written.eq(0), bad.eq(0)],
                                   on_command=lambda byte: [is_identify.eq(byte == Command.IDENTIFY),
                                                            is_generate.eq(byte == Command.GENERATE)])

            with m.State("Dispatch"):
                with m.If(is_identify):
                    with m.If(~remaining.zero):
                        framing.respond_error(Status.BAD_LENGTH)
                    with m.Elif(framing.line_err):
                        framing.respond(Status.LINE_ERROR)
                    with m.Else():
                        framing.respond(Status.OK, identity_size)
                with m.Elif(is_generate):
                    with m.If(~above(remaining.value, ARGUMENTS.size + 1) | remaining.value[0]
                              | above(remaining.value, ARGUMENTS.size + 2 * context)):
                        framing.respond_error(Status.BAD_LENGTH)
                    with m.Elif(self.codes_failed if self.loads_codes else 0):
                        framing.respond_error(Status.NOT_LOADED)
                    with m.Else():
                        m.d.sync += tokens.eq(room)
                        m.next = "Payload"
                with m.Else():
                    framing.respond_error(Status.BAD_COMMAND)

            def take_word(value):
                with m.Switch(index):
                    with m.Case(0):                    # count: the tokens made are min(count, context - n)
                        with m.If((rx.payload == 0) & (low < tokens)):
                            m.d.sync += tokens.eq(low)
                    with m.Case(1):
                        m.d.sync += inv_temperature.eq(value)
                    with m.Case(2):                    # top-k: 1 .. V
                        m.d.sync += top_k.eq(value)
                        with m.If((value == 0) | above(word, vocab)):
                            m.d.sync += bad.eq(1)
                    with m.Case(3):
                        m.d.sync += [seed[:16].eq(value), ones.eq(all_ones)]
                    with m.Case(4):                    # the seed whose sampler state, seed + 1, would be 0
                        m.d.sync += seed[16:].eq(value)
                        with m.If(ones & all_ones):
                            m.d.sync += bad.eq(1)
                    with m.Default():                  # an id
                        m.d.comb += write.en.eq(1)
                        m.d.sync += written.eq(written + 1)
                        with m.If(at_least_vocab):
                            m.d.sync += bad.eq(1)
                with m.If(index != ARGUMENT_WORDS):
                    m.d.sync += index.eq(index + 1)
            framing.words_state("Payload", phase=phase, low=low, on_word=take_word, after="Check")

            with m.State("Check"):
                # A line error answers LINE_ERROR (`respond` turns the error into it).
                with m.If(bad | framing.line_err):
                    framing.respond(Status.BAD_ARGUMENT)
                with m.Elif(tokens == 0):
                    framing.respond(Status.OK)
                with m.Else():
                    resp_len.set(m, tokens << 1, 0, 0)
                    m.next = "Start"

            with m.State("Start"):
                m.d.comb += self.start.valid.eq(~self.busy)
                with m.If(self.start.valid & self.start.ready):
                    framing.respond(Status.OK)

            framing.response_states(on_status=[index.eq(0)], payload=lambda: _payload(m, is_identify))

            # IDENTIFY's identity, from the buffer's words past the prompt. The byte at `index` comes a cycle
            # late: `index` moves only when a byte is taken, and the next byte waits a cycle (`fresh`).
            with m.State("Send-identity"):
                byte = read.data.word_select(high, 8) if wide else read.data
                if self.loads_codes:                   # the flags byte: the codes' state as it is now
                    flags = byte | Mux(self.codes_loaded, CODES_LOADED, 0) | Mux(self.codes_failed, CODES_MISSING, 0)
                    byte = Mux(index == ForwardIdentity.FLAGS_OFFSET, flags, byte)
                m.d.comb += [tx.valid.eq(fresh), tx.payload.eq(byte)]
                with m.If(tx.valid & tx.ready):
                    m.d.sync += [index.eq(index + 1), fresh.eq(0)]
                    resp_len.count_down(m)
                    with m.If(resp_len.one):
                        m.next = "Idle"

            # The prompt to the core from the buffer's read register: an id every other cycle at most.
            with m.State("Prompt"):
                done = index == written
                m.d.comb += prompt.valid.eq(fresh & ~done)
                with m.If(done):
                    m.next = "Tokens"
                with m.If(prompt.valid & prompt.ready):
                    m.d.sync += [index.eq(index + 1), fresh.eq(0)]

            # Each token as the core makes it: low byte, high byte.
            with m.State("Tokens"):
                wide = Signal(16)
                m.d.comb += [wide.eq(self.token.payload), tx.valid.eq(self.token.valid),
                             tx.payload.eq(wide.word_select(phase, 8)), self.token.ready.eq(tx.ready & phase)]
                with m.If(tx.valid & tx.ready):
                    m.d.sync += phase.eq(~phase)
                    resp_len.count_down(m)
                    with m.If(resp_len.one):
                        m.next = "Idle"
        fsm.state.attrs["fsm_encoding"] = "one-hot"
        return m


def _payload(m, is_identify):
    """After the response header: the identity's bytes, or the prompt then the tokens."""
    with m.If(is_identify):
        m.next = "Send-identity"
    with m.Else():
        m.next = "Prompt"
