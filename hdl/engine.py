"""The engine: controller, systolic array, code and bias stores, activation and result buffers."""

from amaranth import Cat, Module, Mux, Shape, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out
from amaranth.utils import ceil_log2
import numpy as np

from golden.datapath import check_acc_bits, check_act_bits, int8_acc_bits, int8_sum_bits, pot_acc_bits
from golden.pot_format import PotFormat

from .bias_store import BiasStore
from .code_store import CodeStore, check_columns_per_word, check_layout
from .read_port import NO_COLLISIONS, ReadPort
from .systolic_array import DEFAULT_BROADCAST_ROWS, SystolicArray, check_count, check_pe

__all__ = ["Engine"]

# Row tiles the feeder may run ahead of the result emitter.
_DESCRIPTOR_DEPTH = 4

# The engine never reads an address of its activation or result buffers in the cycle it writes
# it, so Yosys need not build read-during-write logic around the block RAMs (`hdl.read_port`).


def _layout_sum_bits(layout, act_bits):
    """The width of every sum the array makes for `layout`'s codes: `golden.datapath.int8_sum_bits`
    for INT8 weights; for PoT codes, the width of ``sum_k x_k w_kn - negative_counts`` (ones'-complement
    terms, `hdl.pot_pe.PotPE` with ``exact_negation=False``) over every layer, slot and activation vector."""
    widths = [2]
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    for placement in layout.layers:
        image = layout.code_images[:, placement.code_base:placement.code_base + placement.code_depth]
        # (column, slot, k) -> (k, channel): the weights of every channel the layer's passes compute.
        weights = image.reshape(layout.columns, placement.slots, placement.k).transpose(2, 1, 0).reshape(
            placement.k, -1)
        if layout.bits is None:
            widths.append(int8_sum_bits(weights.astype(np.int8), act_bits))
            continue
        values = PotFormat(layout.bits).to_int(weights).astype(object)
        short = (values < 0).sum(axis=0)                    # the negative non-zero codes of each channel
        largest = np.maximum(values * hi, values * lo).sum(axis=0) - short
        smallest = np.minimum(values * hi, values * lo).sum(axis=0) - short
        top, bottom = max([0, *map(int, largest)]), min([0, *map(int, smallest)])
        widths.append(max(top.bit_length() + 1, (-bottom - 1).bit_length() + 1))
    return max(widths)


class Engine(wiring.Component):
    """A PoT (or INT8) linear-layer engine: activations in, accumulators out, in token-major order.

    A *batch* is one or more tokens of one layer of `layout`: per token its ``K``
    activations in order, token after token, ``last`` set on the final value of
    the final token. For every token the engine returns the layer's ``N``
    accumulators in channel order, tokens in input order, ``last`` set on the
    batch's final value. Each equals ``golden.datapath.pot_accumulate(x, codes,
    bias, bits, act_bits, acc_bits)`` (``int8_accumulate`` for ``pe="int8"``)
    bit for bit, wrapping if `acc_bits` is narrower than exact. The layer is
    sampled with a batch's first activation; batches may follow each other
    back to back, with different layers.

    How it works (the guarantees, not the gates): tokens are tiled over the
    ``R`` rows (a partial last tile computes on stale rows whose results are
    dropped); a tile's activations are buffered (two banks, so the next tile
    loads while this one computes) and replayed for each of the layer's
    ``slots = ceil(N / C)`` passes over the columns. A pass takes ``P =
    max(K + 1 + L, C)`` cycles (`period`): idle beats (so that drains are
    ``C`` cycles apart and a row's readout, one result per cycle, keeps up,
    and, with activations broadcast across a word's columns, the ``L =
    drain_lag`` beats by which the last column's drain lags its codes), ``K``
    beats and one drain beat.
    Results go into one buffer memory per row (`result_depth` entries,
    reserved a pass at a time) and leave token-major through a bias adder.
    Both streams follow ``amaranth.lib.stream`` rules (``activations.ready`` and
    ``results.valid`` never wait on the other side) and backpressure only
    stalls; nothing is dropped or duplicated.

    Throughput, per tile of ``T <= R`` tokens: ``T * K`` input cycles, ``slots *
    P`` compute cycles, ``T * N + 2`` output cycles; the three overlap
    (the next tile loads while this one computes, and a tile's results leave
    while the next computes), so the slowest sets the rate. Latency: with the
    streams never stalled, a tile's first result leaves ``P + 8``
    cycles after its last activation is accepted; results of token ``r``
    follow as soon as the passes that make them have drained.

    Parameters
    ----------
    layout : RomLayout
        Codes (``layout.bits`` wide; INT8 weights for ``pe="int8"``, where
        ``layout.bits`` is None) and integer biases of the layers.
    rows : int
        ``R``, tokens computed at once (1: batch-1 decode).
    act_bits : int
        Activation width ``A``, 2 to 16.
    acc_bits : int or None
        Accumulator width; None is exact for the layout (largest ``K``, largest
        bias), so nothing wraps.
    pe : str
        ``"pot"`` or ``"int8"``.
    columns_per_word : int
        Columns sharing one code memory word (the word is that many codes).
    code_store : callable or None
        None builds `hdl.code_store.CodeStore` ROMs. Otherwise
        ``code_store(first_column, columns_per_word, words, word_width)`` must
        return a Component whose signature has ``read`` as CodeStore's (a
        ``memory.ReadPort.Signature`` of ``word_width`` bits, addresses at least
        ``ceil_log2(len(words))`` wide, one cycle of read latency); a board
        passes one that wraps SPRAM.
    result_depth : int or None
        Entries of each row's result buffer, a power of two of at least
        ``max(slots) * C``; None gives twice that (rounded up), so computing a
        tile overlaps emitting the previous one.
    broadcast_rows : int
        Rows a weight reaches in one cycle (`hdl.systolic_array.SystolicArray`).
    broadcast_columns : int or None
        Columns an activation reaches in one cycle; None is `columns_per_word`,
        or else it must be 1 or `columns_per_word`. With a word's columns
        sharing the activation, its codes need no skew registers either (the
        whole word enters in one cycle), at ``C - 1 - (C - 1) // broadcast_columns``
        idle beats per pass (`period`).

    Members
    -------
    layer : ``In(range(max(2, n_layers)))``
        Layer of the next batch (an index into ``layout.layers``; out of range means layer 0).
    activations : ``In(stream.Signature(StructLayout({"data": signed(act_bits), "last": 1})))``
    results : ``Out(stream.Signature(StructLayout({"data": signed(acc_bits), "last": 1})))``
    busy : ``Out(1)``
        A batch has been started and not all its results have left.

    Raises
    ------
    TypeError, ValueError
        On a parameter of the wrong type or out of range; the message repeats it.
    """

    def __init__(self, *, layout, rows, act_bits=8, acc_bits=None, pe="pot", columns_per_word=1,
                 code_store=None, result_depth=None, broadcast_rows=DEFAULT_BROADCAST_ROWS, broadcast_columns=None):
        self._layout = check_layout(layout)
        self._rows = check_count(rows, "Row count")
        self._act_bits = check_act_bits(act_bits)
        if pe not in ("pot", "int8"):
            raise ValueError(f"PE kind must be one of 'pot', 'int8', not {pe!r}")
        if (pe == "int8") != (layout.bits is None):
            raise ValueError(f"A {pe!r} engine needs a layout of "
                             f"{'INT8 weights (bits=None)' if pe == 'int8' else 'PoT codes'}, "
                             f"not one with bits={layout.bits!r}")
        self._pe, self._bits = check_pe(pe, layout.bits)
        bias_max = max([0] + [abs(int(b)) for b in layout.bias_images.flat])
        if acc_bits is None:
            acc_bits = (int8_acc_bits(layout.max_k, self._act_bits, bias_max) if pe == "int8"
                        else pot_acc_bits(layout.max_k, self._act_bits, self._bits, bias_max))
        self._acc_bits = check_acc_bits(acc_bits)
        # The array sums terms only (the bias is added as results leave), so its accumulators need the
        # width of the largest sum the layout's codes can make, not of that sum plus a bias, nor of K
        # terms of the largest code.
        self._sum_bits = min(self._acc_bits, _layout_sum_bits(layout, self._act_bits))
        self._columns_per_word = check_columns_per_word(columns_per_word, layout.code_bits)
        if code_store is not None and not callable(code_store):
            raise TypeError(f"Code store must be None or a callable, not {code_store!r}")
        min_depth = max(placement.slots for placement in layout.layers) * layout.columns
        if result_depth is None:
            result_depth = 1 << ceil_log2(2 * min_depth)
        elif (isinstance(result_depth, bool) or not isinstance(result_depth, int) or result_depth < min_depth
                or result_depth & (result_depth - 1)):
            raise ValueError(f"Result depth must be a power of two of at least {min_depth}, not {result_depth!r}")
        self._result_depth = result_depth
        self._broadcast_rows = check_count(broadcast_rows, "Broadcast rows")
        if broadcast_columns is None:
            broadcast_columns = self._columns_per_word
        if broadcast_columns not in (1, self._columns_per_word) or isinstance(broadcast_columns, bool):
            raise ValueError(f"Broadcast columns must be None, 1 or columns_per_word ({self._columns_per_word}), "
                             f"not {broadcast_columns!r}")
        self._broadcast_columns = broadcast_columns

        self._code_stores = []
        for first in range(0, layout.columns, self._columns_per_word):
            if code_store is None:
                store = CodeStore(layout=layout, first_column=first, columns_per_word=self._columns_per_word)
            else:
                words = layout.group_words(first, self._columns_per_word)
                store = code_store(first, self._columns_per_word, words, self.code_word_width)
                self._check_store(store, len(words))
            self._code_stores.append(store)
        self._bias_store = BiasStore(layout=layout, acc_bits=self._acc_bits)

        payload = lambda width: data.StructLayout({"data": signed(width), "last": 1})  # noqa: E731
        super().__init__({
            "layer": In(range(max(2, self.n_layers))),
            "activations": In(stream.Signature(payload(self._act_bits))),
            "results": Out(stream.Signature(payload(self._acc_bits))),
            "busy": Out(1),
        })

    def _check_store(self, store, depth):
        members = store.signature.members if isinstance(store, wiring.Component) else {}
        read = members["read"] if "read" in members else None
        if not (read is not None and read.is_signature and read.flow == Out
                and isinstance(read.signature, memory.ReadPort.Signature)
                and read.signature.addr_width >= ceil_log2(depth)
                and Shape.cast(read.signature.shape).width == self.code_word_width):
            raise TypeError(f"Code store must return a Component with a 'read' member like CodeStore's "
                            f"({self.code_word_width}-bit words, at least {ceil_log2(depth)} address bits), "
                            f"not {store!r}")

    # -- parameters ----------------------------------------------------------------------

    @property
    def layout(self):
        return self._layout

    @property
    def rows(self):
        return self._rows

    @property
    def columns(self):
        return self._layout.columns

    @property
    def pes(self):
        return self._rows * self._layout.columns

    @property
    def bits(self):
        return self._bits

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def acc_bits(self):
        return self._acc_bits

    acc_width = acc_bits

    @property
    def sum_bits(self):
        """Width of the array's accumulators and result buffers: `acc_bits`, or less when that is wider than
        the largest sum the layout's codes make (`golden.datapath.pot_sum_bits`, less each channel's
        negative non-zero codes, which the array's ones'-complement terms leave out and the bias store adds
        back; the sums are then exact and sign-extended for the bias)."""
        return self._sum_bits

    @property
    def pe(self):
        return self._pe

    @property
    def n_layers(self):
        return len(self._layout.layers)

    @property
    def columns_per_word(self):
        return self._columns_per_word

    @property
    def code_word_width(self):
        return self._columns_per_word * self._layout.code_bits

    @property
    def result_depth(self):
        return self._result_depth

    @property
    def broadcast_rows(self):
        return self._broadcast_rows

    @property
    def broadcast_columns(self):
        return self._broadcast_columns

    @property
    def drain_lag(self):
        """Idle beats per pass that broadcasting activations across columns costs
        (`hdl.systolic_array.SystolicArray.drain_lag`)."""
        C = self.columns
        return C - 1 - (C - 1) // self._broadcast_columns

    @property
    def code_stores(self):
        """The code store components, one per group of `columns_per_word` columns."""
        return list(self._code_stores)

    @property
    def bias_store(self):
        return self._bias_store

    def period(self, k):
        """Cycles of one pass over the columns for a layer of `k` inputs."""
        return max(k + 1 + self.drain_lag, self.columns)

    # -- hardware ------------------------------------------------------------------------

    def _lookup(self, m, index, name, **fields):
        """Per-layer constants `fields` (name -> one int per layer) selected by `index` (else layer 0)."""
        out = {f: Signal(max(1, max(values).bit_length()), name=f"{name}_{f}") for f, values in fields.items()}
        with m.Switch(index):
            for i in range(1, self.n_layers):
                with m.Case(i):
                    m.d.comb += [out[f].eq(values[i]) for f, values in fields.items()]
            with m.Default():
                m.d.comb += [out[f].eq(values[0]) for f, values in fields.items()]
        return out

    def _idle_unless(self, compute, code):
        """`code` on a compute beat, else the idle weight. A PoT code is idle whatever its sign once
        its exponent bits are all set (the zero code), so only those are forced."""
        if self._pe == "int8":
            return Mux(compute, code, 0)
        exponent_bits = self._bits - 1
        return Cat(code[:exponent_bits] | Mux(compute, 0, (1 << exponent_bits) - 1), code[exponent_bits:])

    def elaborate(self, platform):
        m = Module()
        layout, layers = self._layout, self._layout.layers
        R, C, A = self._rows, self.columns, self._act_bits
        k_max = layout.max_k
        k_bits = ceil_log2(k_max)
        depth_bits = ceil_log2(self._result_depth)
        layer_shape = self.layer.shape()

        S = self._sum_bits
        m.submodules.array = array = SystolicArray(rows=R, columns=C, act_bits=A, acc_bits=S, bits=self._bits,
                                                   pe=self._pe, broadcast_rows=self._broadcast_rows,
                                                   broadcast_columns=self._broadcast_columns, exact_negation=False)
        for i, store in enumerate(self._code_stores):
            m.submodules[f"code_store_{i}"] = store
        m.submodules.bias_store = bias_store = self._bias_store
        m.submodules.descriptors = descriptors = fifo.SyncFIFO(
            width=layer_shape.width + (R).bit_length() + 1, depth=_DESCRIPTOR_DEPTH)

        # -- loader: activations -> the free bank of each row's activation memory --------
        act_write, act_read = [], []
        for r in range(R):
            mem = m.submodules[f"act_memory_{r}"] = memory.Memory(shape=signed(A), depth=2 << k_bits, init=[],
                                                                  attrs=NO_COLLISIONS)
            act_write.append(mem.write_port())
            act_read.append(ReadPort(m, mem, f"act_read_{r}"))

        bank_full, set_full, clear_full = Signal(2), Signal(2), Signal(2)
        bank_layer = [Signal(layer_shape, name=f"bank{b}_layer") for b in range(2)]
        bank_rows = [Signal(range(1, R + 1), name=f"bank{b}_rows") for b in range(2)]
        bank_final = [Signal(name=f"bank{b}_final") for b in range(2)]
        m.d.sync += bank_full.eq((bank_full | set_full) & ~clear_full)

        load_bank, load_k, load_row = Signal(), Signal(k_bits), Signal(range(R))
        in_batch, batch_layer = Signal(), Signal(layer_shape)
        layer_now = Mux(in_batch, batch_layer, self.layer)
        load = self._lookup(m, layer_now, "load", k_last=[p.k - 1 for p in layers])
        acts = self.activations
        m.d.comb += acts.ready.eq(~Mux(load_bank, bank_full[1], bank_full[0]))
        accept = acts.valid & acts.ready
        for r, port in enumerate(act_write):
            m.d.comb += [port.addr.eq(Cat(load_k, load_bank)), port.data.eq(acts.p.data),
                         port.en.eq(accept & (load_row == r))]
        with m.If(accept):
            m.d.sync += [batch_layer.eq(layer_now), in_batch.eq(~acts.p.last)]
            # `last` before a token's end (a protocol error) ends the batch there all the same.
            with m.If((load_k == load["k_last"]) | acts.p.last):
                m.d.sync += load_k.eq(0)
                with m.If((load_row == R - 1) | acts.p.last):
                    m.d.comb += set_full.eq(Mux(load_bank, 0b10, 0b01))
                    for b in range(2):
                        with m.If(load_bank == b):
                            m.d.sync += [bank_layer[b].eq(layer_now), bank_rows[b].eq(load_row + 1),
                                         bank_final[b].eq(acts.p.last)]
                    m.d.sync += [load_bank.eq(~load_bank), load_row.eq(0)]
                with m.Else():
                    m.d.sync += load_row.eq(load_row + 1)
            with m.Else():
                m.d.sync += load_k.eq(load_k + 1)

        # -- feeder: one pass per slot over a full bank ----------------------------------
        D = self._result_depth
        reserved = Signal(range(D + 1))          # result entries per row reserved and not yet emitted
        room = Signal()                          # reserved <= D - C, a cycle late (see below)
        freed, freed_count = Signal(), Signal(range(D + 1))
        feed_bank, feed_active, feed_slot = Signal(), Signal(), Signal(range(max(p.slots for p in layers)))
        feed_beat = Signal(range(max(self.period(p.k) for p in layers)))
        feed_k = Signal(k_bits)
        code_addr = Signal(max(1, ceil_log2(layout.code_depth)))
        feed_layer = Mux(feed_bank, bank_layer[1], bank_layer[0])
        # A pass is `lead` idle beats, K compute beats and the drain beat, so consecutive drain
        # beats are a whole period (>= C cycles) apart whatever the layers. A pass lasts at least
        # two beats (K >= 1), so `start` never follows a start, which `room` relies on.
        feed = self._lookup(m, feed_layer, "feed", lead=[self.period(p.k) - 1 - p.k for p in layers],
                            beat_last=[self.period(p.k) - 1 for p in layers],
                            slot_last=[p.slots - 1 for p in layers], code_base=[p.code_base for p in layers],
                            computes_first=[int(self.period(p.k) - 1 - p.k == 0) for p in layers])
        first_slot = Signal(init=1)              # feed_slot == 0
        # Room in the descriptor queue, from a flip-flop (the queue's level logic was the board top's
        # critical path into `start`): two free entries a cycle ago are at least one now, as at most
        # one descriptor is written per cycle. The queue is then one entry shorter, which it can spare.
        descriptor_room = Signal(init=1)
        m.d.sync += descriptor_room.eq(descriptors.level < _DESCRIPTOR_DEPTH - 1)
        start = (~feed_active & Mux(feed_bank, bank_full[1], bank_full[0]) & room
                 & (~first_slot | descriptor_room))
        k = Mux(feed_active, feed_k, 0)
        drain = feed_active & (feed_beat == feed["beat_last"])       # never the start beat (K >= 1)
        compute = Mux(feed_active, (feed_beat >= feed["lead"]) & ~drain, start & feed["computes_first"])
        addr_now = Mux(start & first_slot, feed["code_base"], code_addr)
        with m.If(start & first_slot):
            m.d.sync += code_addr.eq(feed["code_base"] + feed["computes_first"])
        with m.Elif(compute):
            m.d.sync += code_addr.eq(code_addr + 1)
        with m.If(start):
            m.d.sync += [feed_beat.eq(1), feed_active.eq(1), feed_k.eq(feed["computes_first"])]
        with m.Elif(feed_active):
            m.d.sync += feed_beat.eq(feed_beat + 1)
            with m.If(compute):
                m.d.sync += feed_k.eq(feed_k + 1)
        with m.If(drain):
            m.d.sync += [feed_active.eq(0), feed_k.eq(0)]
            with m.If(feed_slot == feed["slot_last"]):
                m.d.sync += [feed_slot.eq(0), first_slot.eq(1), feed_bank.eq(~feed_bank)]
                m.d.comb += clear_full.eq(Mux(feed_bank, 0b10, 0b01))
            with m.Else():
                m.d.sync += [feed_slot.eq(feed_slot + 1), first_slot.eq(0)]
        m.d.comb += [
            descriptors.w_en.eq(start & first_slot),
            descriptors.w_data.eq(Cat(feed_layer, Mux(feed_bank, bank_rows[1], bank_rows[0]),
                                      Mux(feed_bank, bank_final[1], bank_final[0]))),
        ]
        # Entries are freed a cycle after the emitter finishes a tile, and `room` lags `reserved`
        # by a cycle: both only delay a start, and keep the emitter's logic off this adder.
        freed_late, freed_late_count = Signal(), Signal(range(D + 1))
        m.d.sync += [freed_late.eq(freed), freed_late_count.eq(freed_count),
                     reserved.eq(reserved + Mux(start, C, 0) - Mux(freed_late, freed_late_count, 0)),
                     room.eq(reserved <= D - C)]

        # The beat leaves the feeder through registers: memory addresses and flags come from
        # flip-flops, a cycle after the beat was decided.
        beat_addr, beat_k, beat_bank = Signal.like(code_addr), Signal.like(feed_k), Signal()
        beat_compute, beat_drain, beat_load = Signal(), Signal(), Signal()
        m.d.sync += [beat_addr.eq(addr_now), beat_k.eq(k), beat_bank.eq(feed_bank),
                     beat_compute.eq(compute), beat_drain.eq(drain), beat_load.eq(start & first_slot)]

        # Codes: the address walks along the top edge one column group per cycle (the skew: a
        # group is one column, or a word's columns when they share the activation), so store g
        # reads at its first column's time; lane j of a word is delayed by its column's skew beyond.
        # Rather than delaying the address itself, each store after the first keeps its own copy
        # of the feeder's address counter, stepped by the delayed flags: it loads the pass's
        # code base on a load beat (`pass_base` holds for at least C cycles) and counts compute
        # beats, so it reads, `lag` cycles late, the address group 0 read. Drain flags keep one
        # cycle of skew per column (`array.drain_lag`).
        pass_base = Signal.like(code_addr)
        with m.If(start & first_slot):
            m.d.sync += pass_base.eq(feed["code_base"])
        flags = []
        for c in range(C):
            flag = Signal(3, name=f"flags_{c}")           # (compute, drain, load) one cycle after the read
            m.d.sync += flag.eq(flags[-1] if c else Cat(beat_compute, beat_drain, beat_load))
            flags.append(flag)
        addresses = {0: beat_addr}
        for first in range(self._columns_per_word, C, self._columns_per_word):
            lag = array.column_skew(first)
            address = Signal.like(code_addr, name=f"code_addr_{first}")
            load = flags[lag - 2][2] if lag > 1 else beat_load      # the load beat, a cycle early
            with m.If(load):
                m.d.sync += address.eq(pass_base)
            with m.Else():
                m.d.sync += address.eq(address + flags[lag - 1][0])
            addresses[first] = address
        # Activations: every row memory read at the beat; row r delayed by its skew.
        for r, port in enumerate(act_read):
            m.d.comb += port.addr.eq(Cat(beat_k, beat_bank))
            x = port.data
            for i in range(array.row_skew(r)):
                delayed = Signal(signed(A), name=f"x_skew_{r}_{i}")
                m.d.sync += delayed.eq(x)
                x = delayed
            m.d.comb += array.x[r].eq(x)

        lane_bits = layout.code_bits
        for g, store in enumerate(self._code_stores):
            first = g * self._columns_per_word
            m.d.comb += [store.read.addr.eq(addresses[first]), store.read.en.eq(1)]
            lag = array.column_skew(first)
            for j in range(min(self._columns_per_word, C - first)):
                # Idle unless the beat computes, decided as the word arrives (so that the gate
                # shares a logic cell with the lane's first skew register).
                lane = self._idle_unless(flags[lag][0], store.read.data[j * lane_bits:(j + 1) * lane_bits])
                for i in range(array.column_skew(first + j) - lag):
                    delayed = Signal(lane_bits, name=f"code_skew_{first + j}_{i}")
                    m.d.sync += delayed.eq(lane)
                    lane = delayed
                c = first + j
                m.d.comb += [array.w[c].eq(lane), array.drain[c].eq(flags[c][1])]

        # -- result buffers: row r's drained sums, in order --------------------------------
        written = []
        result_read = []
        for r in range(R):
            mem = m.submodules[f"result_memory_{r}"] = memory.Memory(shape=unsigned(S), depth=D, init=[],
                                                                     attrs=NO_COLLISIONS)
            port = mem.write_port()
            pointer = Signal(depth_bits + 2, name=f"written_{r}")
            m.d.comb += [port.addr.eq(pointer[:depth_bits]), port.data.eq(array.results[r]),
                         port.en.eq(array.valid[r])]
            with m.If(array.valid[r]):
                m.d.sync += pointer.eq(pointer + 1)
            written.append(pointer)
            result_read.append(ReadPort(m, mem, f"result_read_{r}"))

        # -- emitter: token-major, + bias -------------------------------------------------
        desc = data.View(data.StructLayout({"layer": layer_shape, "rows": range(1, R + 1), "final": 1}),
                         descriptors.r_data)
        emit = self._lookup(m, desc.layer, "emit", n_last=[p.n - 1 for p in layers],
                            stride=[p.slots * C for p in layers], bias_base=[p.bias_base * C for p in layers])
        emit_row, emit_n = Signal(range(R)), Signal(range(max(p.n for p in layers)))
        # Pointers count modulo 4 * D so that the difference below is a signed number: a row may
        # still be writing the padding of the previous tile when the emitter moves past it.
        # `read_ptr` is emit_base + emit_n, kept in a register of its own.
        emit_base = Signal(depth_bits + 2)
        read_ptr = Signal(depth_bits + 2)
        # Whether row `emit_row` has an entry at `read_ptr` is decided a cycle ahead, into
        # flip-flops, from the pointers as they are (a row's pointer only grows, so the answer
        # is at worst a cycle late): one entry or two beyond `read_ptr` (for after an issue in
        # the row), and one at the start of the row that follows (for after a row's last issue;
        # after a tile's last issue the emitter waits, see `desc_ready`).
        def row_pointer(offset, name):
            pointer = Signal(depth_bits + 2, name=name)
            with m.Switch(emit_row):
                for r in range(R):
                    with m.Case(r):
                        m.d.comb += pointer.eq(written[(r + offset) % R])
            return pointer

        # Likewise whether this issue ends its row (``emit_n == n_last``) and its tile (``emit_row ==
        # rows - 1``): for no issue last cycle, for one within a row, for one that ended a row. (After
        # an issue that ended a tile nothing issues, and the flags catch up with the new descriptor.)
        row_done, tile_done = Signal(), Signal()
        row_done_now, row_done_next, row_done_first = Signal(), Signal(), Signal()
        tile_done_now, tile_done_next = Signal(), Signal()
        m.d.sync += [row_done_now.eq(emit_n == emit["n_last"]), row_done_next.eq(emit_n + 1 == emit["n_last"]),
                     row_done_first.eq(emit["n_last"] == 0),
                     tile_done_now.eq(emit_row == desc.rows - 1), tile_done_next.eq(emit_row + 2 == desc.rows)]
        next_base = emit_base + emit["stride"]
        # a - b > 0 is a + ~b = a - b - 1 >= 0: one carry chain and its sign bit.
        beyond = Signal(signed(depth_bits + 2))             # row entries written beyond read_ptr, less one
        next_beyond = Signal(signed(depth_bits + 2))        # the next row's beyond its start, less one
        m.d.comb += [beyond.eq(row_pointer(0, "row_written") + ~read_ptr),
                     next_beyond.eq(row_pointer(1, "next_row_written") + ~emit_base)]
        has_one, has_two, next_has_one = Signal(), Signal(), Signal()
        issued, issued_last = Signal(), Signal()
        m.d.comb += [row_done.eq(Mux(issued, Mux(issued_last, row_done_first, row_done_next), row_done_now)),
                     tile_done.eq(Mux(issued_last, tile_done_next, tile_done_now))]
        m.d.sync += [has_one.eq(beyond >= 0), has_two.eq((beyond >= 0) & (beyond != 0)),
                     next_has_one.eq(next_beyond >= 0)]
        out = self.results
        advance = ~out.valid | out.ready
        # A tile's descriptor leaves the queue (`pop`, freeing its entries) the cycle after the
        # tile's last issue. The flags above were computed from the descriptor of the cycle
        # before, so a descriptor is only used from the cycle after it appears (`desc_ready`).
        tile_end, pop, desc_ready = Signal(), Signal(), Signal()
        m.d.sync += [pop.eq(tile_end), desc_ready.eq(descriptors.r_rdy & ~tile_end & ~pop)]
        m.d.comb += [descriptors.r_en.eq(pop), freed.eq(pop), freed_count.eq(emit["stride"])]
        issue = (advance & desc_ready
                 & Mux(issued, Mux(issued_last, next_has_one, has_two), has_one))
        m.d.sync += [issued.eq(issue), issued_last.eq(issue & row_done)]
        for port in result_read:
            m.d.comb += [port.addr.eq(read_ptr[:depth_bits]), port.en.eq(advance)]
        m.d.comb += [bias_store.read.addr.eq(emit["bias_base"] + emit_n), bias_store.read.en.eq(advance)]

        read_valid, read_row, read_last = Signal(), Signal(range(R)), Signal()
        read_data = Signal(S)
        with m.Switch(read_row):
            for r in range(R):
                with m.Case(r):
                    m.d.comb += read_data.eq(result_read[r].data)
        with m.If(advance):
            m.d.sync += [
                read_valid.eq(issue),
                read_row.eq(emit_row),
                read_last.eq(desc.final & tile_done & row_done),
                out.valid.eq(read_valid),
                out.p.data.eq(read_data.as_signed() + bias_store.read.data.as_signed()),
                out.p.last.eq(read_last),
            ]
        with m.If(issue):
            with m.If(row_done):
                m.d.sync += emit_n.eq(0)
                with m.If(tile_done):
                    m.d.sync += [emit_row.eq(0), emit_base.eq(next_base), read_ptr.eq(next_base)]
                    m.d.comb += tile_end.eq(1)
                with m.Else():
                    m.d.sync += [emit_row.eq(emit_row + 1), read_ptr.eq(emit_base)]
            with m.Else():
                m.d.sync += [emit_n.eq(emit_n + 1), read_ptr.eq(read_ptr + 1)]

        # -- busy: batches started and not finished ---------------------------------------
        batches = Signal(range(16))
        begun = accept & ~in_batch
        finished = out.valid & out.ready & out.p.last
        m.d.sync += batches.eq(batches + begun - finished)
        m.d.comb += self.busy.eq(batches != 0)
        return m
