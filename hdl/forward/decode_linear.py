"""One linear layer of batch-1 decode on a split-K PoT array: rows over K chunks, columns over output channels."""

from amaranth import Module, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

import numpy as np

from golden.datapath import check_act_bits, pot_acc_bits
from golden.pot_format import PotFormat

from ..pot_pe import PotPE
from .arith import check_int
from .requantizer import Requantizer

__all__ = ["DecodeLinear", "code_words"]


def code_words(codes, rows, columns, zero_code):
    """The code ROM of a split-K layer: word ``(tile, t)`` holds the ``rows x columns`` codes of one beat.

    Code ``(r, c)`` of word ``tile * chunk + t`` is ``codes[r * chunk + t, tile * columns + c]``
    (``chunk = ceil(K / rows)``), the zero code past ``K`` or ``N``; returns
    an int array ``(tiles * chunk, rows * columns)``.
    """
    k, n = codes.shape
    chunk, tiles = -(-k // rows), -(-n // columns)
    padded = np.full((rows * chunk, tiles * columns), zero_code, np.int64)
    padded[:k, :n] = codes
    # (r, t, tile, c) -> (tile, t, r, c)
    return padded.reshape(rows, chunk, tiles, columns).transpose(2, 1, 0, 3).reshape(tiles * chunk, rows * columns)


class DecodeLinear(wiring.Component):
    """``requantize(a @ W + bias, mult, shift, out_bits)`` of one token on ``rows x columns`` `PotPE` s.

    The mapping that keeps every PE busy in batch-1 decode (see
    :mod:`hdl.forward.decode_plan`): PE ``(r, c)`` accumulates the products of
    K chunk ``r`` (``chunk = ceil(K / rows)`` activations) with output channel
    ``tile * columns + c``; every cycle each row reads its own activation
    bank and every PE its own code from one ROM word of ``rows * columns``
    codes. A tile is ``chunk`` beats and one drain beat; when it drains, each
    column's ``rows`` partial sums and the bias are added, held, and passed
    through the `Requantizer` one channel per cycle while the next tile
    accumulates (a drain beat waits only if the previous tile's channels are
    still in the requantiser's queue). So a layer takes
    ``tiles * (chunk + 1)`` beats, after the ``K`` cycles that load the
    activations into the banks (not yet overlapped with the layer before)
    and before a few cycles of pipeline (c_attn of the default model on 4 x 3:
    64 + 1,088 + 8 = 1,160 cycles in simulation).

    Parameters
    ----------
    codes : uint8 array (K, N)
        The layer's PoT codes (``<name>.codes`` of the artefact).
    bias, mult, shift : int arrays (N,)
        Its integer bias and requantisers.
    bits : int
        PoT code width.
    act_bits, out_bits : int
        Activation width in, saturated width out.
    rows, columns : int
        The array.
    mult_bits : int
        Width of the multipliers.

    Members
    -------
    a : ``In(stream.Signature(signed(act_bits)))``
        The ``K`` activations of the token.
    o : ``Out(stream.Signature(signed(out_bits)))``
        The ``N`` outputs, in channel order.
    """

    def __init__(self, *, codes, bias, mult, shift, bits=4, act_bits=8, out_bits=8, rows=4, columns=4,
                 mult_bits=16):
        self._format = PotFormat(bits)
        self._act_bits = check_act_bits(act_bits)
        self._out_bits = check_int("out_bits", out_bits, 2, 32)
        self._rows = check_int("rows", rows, 1, 64)
        self._columns = check_int("columns", columns, 1, 256)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 32)
        codes = np.asarray(codes)
        if codes.ndim != 2 or not codes.size:
            raise ValueError(f"codes must be a non-empty (K, N) array, not of shape {codes.shape}")
        self._format.check_codes(codes)
        self._k, self._n = codes.shape
        self._bias, self._mult, self._shift = (np.asarray(v, np.int64) for v in (bias, mult, shift))
        for name, values in (("bias", self._bias), ("mult", self._mult), ("shift", self._shift)):
            if values.shape != (self._n,):
                raise ValueError(f"{name} must have {self._n} values (one per output channel), not {values.shape}")
        if self._mult.min() < 0 or self._mult.max() >= 1 << mult_bits or self._shift.min() < 0 \
                or self._shift.max() > 62:
            raise ValueError(f"mult must be {mult_bits}-bit unsigned and shift from 0 to 62")
        self._acc_bits = pot_acc_bits(self._k, act_bits, bits, int(np.abs(self._bias).max()))
        self._words = code_words(codes.astype(np.int64), rows, columns, self._format.zero_code)
        super().__init__({"a": In(stream.Signature(signed(act_bits))),
                          "o": Out(stream.Signature(signed(out_bits)))})

    @property
    def k(self):
        return self._k

    @property
    def n(self):
        return self._n

    @property
    def rows(self):
        return self._rows

    @property
    def columns(self):
        return self._columns

    @property
    def chunk(self):
        """Activations per row: ``ceil(K / rows)``."""
        return -(-self._k // self._rows)

    @property
    def tiles(self):
        """Column tiles: ``ceil(N / columns)``."""
        return -(-self._n // self._columns)

    @property
    def acc_bits(self):
        """The exact accumulator width of the layer (``golden.datapath.pot_acc_bits`` with its bias)."""
        return self._acc_bits

    @property
    def beats(self):
        """Beats of the array per token: ``tiles * (chunk + 1)``."""
        return self.tiles * (self.chunk + 1)

    @property
    def utilisation(self):
        """Useful products over PE beats: ``K N / (rows columns beats)``."""
        return self._k * self._n / (self._rows * self._columns * self.beats)

    def elaborate(self, platform):
        m = Module()
        R, C, K, N, chunk, fmt = self._rows, self._columns, self._k, self._n, self.chunk, self._format
        word_bits = fmt.bits * R * C
        words = [sum(int(code) << (fmt.bits * lane) for lane, code in enumerate(row)) for row in self._words]
        m.submodules.codes = code_rom = memory.Memory(shape=word_bits, depth=len(words), init=words)
        code_read = code_rom.read_port()
        banks = []
        for r in range(R):
            bank = memory.Memory(shape=signed(self._act_bits), depth=chunk, init=[])
            m.submodules[f"bank{r}"] = bank
            banks.append((bank.write_port(), bank.read_port()))
        tables = {}
        for name, values, shape in (("bias", self._bias, signed(self._acc_bits)),
                                    ("mult", self._mult, self._mult_bits), ("shift", self._shift, 6)):
            rom = memory.Memory(shape=shape, depth=N, init=[int(v) for v in values])
            m.submodules[name] = rom
            tables[name] = rom.read_port()
        m.submodules.requantizer = requant = Requantizer(acc_bits=self._acc_bits, mult_bits=self._mult_bits,
                                                         shift_bits=6, out_bits=self._out_bits)
        wiring.connect(m, requant.o, wiring.flipped(self.o))
        pes = [[PotPE(act_bits=self._act_bits, bits=fmt.bits, acc_bits=self._acc_bits) for _ in range(C)]
               for _ in range(R)]
        for r in range(R):
            for c in range(C):
                m.submodules[f"pe_{r}_{c}"] = pes[r][c]

        # Loading: activation k goes to bank k // chunk, entry k % chunk.
        loaded = Signal(range(K + 1))
        bank_index, bank_entry = Signal(range(R)), Signal(range(chunk))
        # Beats: issue (tile, t) -> ROM and banks answer -> PE inputs.
        tile, t = Signal(range(self.tiles + 1)), Signal(range(chunk + 1))
        running = Signal()
        issue, issue_drain = Signal(), Signal()
        beat_valid, beat_drain = Signal(), Signal()
        m.d.sync += [beat_valid.eq(issue), beat_drain.eq(issue_drain)]
        m.d.comb += code_read.addr.eq(tile * chunk + t)
        for r, (write, read) in enumerate(banks):
            m.d.comb += [write.addr.eq(bank_entry), write.data.eq(self.a.payload),
                         write.en.eq(self.a.valid & self.a.ready & (bank_index == r)), read.addr.eq(t)]
            for c in range(C):
                pe = pes[r][c]
                code = code_read.data[fmt.bits * (r * C + c):fmt.bits * (r * C + c + 1)]
                m.d.comb += [pe.x_in.eq(read.data), pe.drain_in.eq(beat_drain),
                             pe.w_in.eq(code)]
                with m.If(~beat_valid | beat_drain):
                    m.d.comb += pe.w_in.eq(fmt.zero_code)

        # Readout: column sums + bias held, then one channel per cycle into the requantiser.
        held = [Signal(signed(self._acc_bits), name=f"held{c}") for c in range(C)]
        held_tile = Signal(range(self.tiles))
        draining_tile = Signal(range(self.tiles))
        pending = Signal()                        # held sums not yet all sent
        column = Signal(range(C + 1))
        sent = Signal(range(N + 1))
        with m.If(pes[0][0].valid):
            for c in range(C):
                m.d.sync += held[c].eq(sum(pes[r][c].acc for r in range(R)))
            m.d.sync += [pending.eq(1), column.eq(0), held_tile.eq(draining_tile)]
        channel = held_tile * C + column
        # Serialiser: register the held sum of `channel` and read its bias / mult / shift; the requantiser
        # takes them the next cycle (the ROM reads and the register hold while it stalls).
        advance = ~requant.i.valid | requant.i.ready
        stage_valid = Signal()
        stage_acc = Signal(signed(self._acc_bits))
        for port in tables.values():
            m.d.comb += [port.addr.eq(channel), port.en.eq(advance)]
        m.d.comb += [requant.i.valid.eq(stage_valid), requant.i.payload.acc.eq(stage_acc + tables["bias"].data),
                     requant.i.payload.mult.eq(tables["mult"].data), requant.i.payload.shift.eq(tables["shift"].data)]
        with m.If(advance):
            send = pending & ~pes[0][0].valid & (channel < N)
            m.d.sync += stage_valid.eq(send)
            with m.If(send):
                with m.Switch(column):
                    for c in range(C):
                        with m.Case(c):
                            m.d.sync += stage_acc.eq(held[c])
                m.d.sync += [column.eq(column + 1), sent.eq(sent + 1)]
                with m.If((column == C - 1) | (channel == N - 1)):
                    m.d.sync += pending.eq(0)

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += self.a.ready.eq(1)
                with m.If(self.a.valid):
                    m.d.sync += [loaded.eq(loaded + 1), bank_entry.eq(bank_entry + 1)]
                    with m.If(bank_entry == chunk - 1):
                        m.d.sync += [bank_entry.eq(0), bank_index.eq(bank_index + 1)]
                    with m.If(loaded == K - 1):
                        m.d.sync += [loaded.eq(0), bank_entry.eq(0), bank_index.eq(0), tile.eq(0), t.eq(0),
                                     sent.eq(0)]
                        m.next = "BEATS"
            with m.State("BEATS"):
                with m.If(t < chunk):
                    m.d.comb += issue.eq(1)
                    m.d.sync += t.eq(t + 1)
                with m.Elif(~pending):
                    # The drain beat: the previous tile's sums have all left the held registers.
                    m.d.comb += [issue.eq(1), issue_drain.eq(1)]
                    m.d.sync += [t.eq(0), tile.eq(tile + 1), draining_tile.eq(tile)]
                    with m.If(tile == self.tiles - 1):
                        m.next = "FINISH"
            with m.State("FINISH"):
                with m.If((sent == N) & ~stage_valid):
                    m.next = "LOAD"
        return m
