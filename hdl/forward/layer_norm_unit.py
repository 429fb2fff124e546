"""GPT-2's layer norm on an integer residual row: exact sums, isqrt and reciprocal on one serial datapath, one multiplier."""

import math

from amaranth import Cat, Const, Module, Mux, Signal, signed
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits

from .arith import check_int, check_range, round_shift_above, round_shift_within, saturate
from ..read_port import NO_COLLISIONS, ReadPort

__all__ = ["LayerNormUnit"]


class LayerNormUnit(wiring.Component):
    """``golden.int_ops.layer_norm`` of one row of ``d`` residual values, bit for bit.

    One signed multiplier (``max(res_bits, n_bits) x max(res_bits, gamma_bits, inv_bits)``
    bits: one SB_MAC16 for the default formats) does every per-element
    product. Pass 1 (``x``, one value per cycle) stores the row in a memory
    (one EBR for 64 x 16 bits) and forms ``S1 = sum x`` and ``s2 = 2 (d S2 +
    eps)`` (the multiplier squares; eps is ORed in with the first value).
    Then, once per row, on one Horner adder and one subtractor (no
    multiplier): ``acc = -S1**2`` (``s1_bits`` cycles, MSB first), ``acc = 2
    acc + s2 = 2 D`` (1 cycle), ``r = isqrt(D)`` (``2 root_bits`` cycles: acc
    doubles each cycle and its top bit is the next bit of ``D``; a root bit
    is tried every second cycle), the root shifted up to its top bit
    (counting ``bit_length(r)``), ``R = reciprocal(r, inv_bits)`` by a
    restoring divide on the same subtractor (``inv_bits`` cycles), and ``acc =
    -S1 R`` (``inv_bits`` cycles, ``R`` rotating through its register). The
    Horner adder is pipelined (operand registered, low and high halves a
    cycle apart, `split_bits`) so its carry chains meet 36 MHz on the
    iCE40UP5K: `settle_cycles` more a row. Pass 2
    (``affine``: the layer's ``gamma, beta`` per channel) reads the row back,
    one element every two cycles, the multiplier taking ``x (R -
    2**(inv_bits-2))`` on even cycles and ``n * gamma`` on odd ones, with
    ``f = fold_bits``:
    ``V = (d / 2**f) x R + floor(-S1 R / 2**f)``; ``n = round_shift(V, sh - F - f)``;
    ``q = n * gamma + beta``; ``y = saturate(round_shift(q, gamma_shift), out_bits)``.
    ``R`` lies in ``[2**(inv_bits-2), 2**(inv_bits-1)]``, so ``R -
    2**(inv_bits-2)`` fits ``inv_bits`` signed bits. ``gamma, beta`` are taken
    at the stage that uses them (no pipeline copies).

    The shifts are log shifters (`arith.shift_right`) only over the range
    they can take and only as wide as their results: ``sh - F - f`` over
    `shift_range` (``bit_length(isqrt(eps_min))`` bounds it from below) and
    ``gamma_shift`` over `gamma_shift_range` (wiring alone when the artefact's
    layer norms share one shift); the registers in front of them keep only the
    bits above the smallest shift less one. With ``serial_shift_bits = k`` the
    low ``k`` bits of ``sh - F`` (all of it for ``k`` of 4 or more with the
    default model's 16 shifts) are made on ``V``'s own register instead, one
    place a cycle after it is formed, holding pass 2 for those cycles: no
    shifter stages for them (38 logic cells fewer for the default model, up
    to ``serial_cycles_max`` cycles more an element). The row memory is read
    through `hdl.read_port.ReadPort` (pass 1 writes it, pass 2 reads it: a
    word read in the cycle it is written is never used), so Yosys builds no
    read-during-write logic around its block RAM.

    ``n`` is kept to ``n_bits`` signed bits: with ``eps >= 1``,
    ``|d x - S1| <= sqrt(d - 1) * sqrt(D - 1)`` and ``r = floor(sqrt D)``, so
    ``|n| < sqrt(2 d) * 2**F + 1``.

    Parameters
    ----------
    d : int
        Row length (``n_embd``), 2 to 4096.
    res_bits : int
        Width of the signed residual ``x``, 4 to 24.
    frac_bits, inv_bits : int
        ``IntFormats.ln_frac_bits`` and ``ln_inv_bits`` (``frac_bits <= inv_bits - 1``).
    gamma_bits : int
        Width of the signed gains (``IntFormats.ln_gamma_bits``).
    beta_bits : int or None
        Width of the signed biases; default ``n_bits + gamma_bits`` (what the compiler checks).
    eps_bits : int
        Width of the unsigned ``eps`` port (the compiled ``eps >= 1``).
    eps_min : int
        The smallest ``eps`` the port will carry (1 or more): bounds ``sh`` from below.
    gamma_shift_range : (int, int)
        The smallest and largest ``gamma_shift`` the port will carry (within 0 .. 63).
    out_bits : int
        Width of the signed activations out (``act_bits``).
    serial_shift_bits : int
        How many low bits of the normalising shift are made one place a cycle, 0 to 6 (default 0: a log
        shifter for all of it; only where the shift's range starts above the fold, ``shift_range[0] > fold_bits``).

    Members
    -------
    x : ``In(stream.Signature(signed(res_bits)))``
        Pass 1: the ``d`` residual values of a row.
    affine : ``In(stream.Signature(StructLayout({"gamma", "beta"})))``
        Pass 2: the ``d`` gains and biases, in channel order.
    o : ``Out(stream.Signature(signed(out_bits)))``
        The ``d`` normalised activations.
    eps : ``In(eps_bits)``, gamma_shift : ``In(6)``
        The layer's compiled ``eps`` and ``shift``, held for the row.
    """

    def __init__(self, *, d, res_bits=16, frac_bits=10, inv_bits=16, gamma_bits=16, beta_bits=None, eps_bits=24,
                 eps_min=1, gamma_shift_range=(0, 63), out_bits=8, serial_shift_bits=0):
        self._d = check_int("d", d, 2, 4096)
        self._res_bits = check_int("res_bits", res_bits, 4, 24)
        self._inv_bits = check_int("inv_bits", inv_bits, 4, 24)
        self._frac_bits = check_int("frac_bits", frac_bits, 1, inv_bits - 1)
        self._gamma_bits = check_int("gamma_bits", gamma_bits, 2, 24)
        self._beta_bits = check_int("beta_bits", self.n_bits + gamma_bits if beta_bits is None else beta_bits, 2, 48)
        self._eps_bits = check_int("eps_bits", eps_bits, 1, 40)
        self._eps_min = check_int("eps_min", eps_min, 1, (1 << eps_bits) - 1)
        self._gamma_shift_range = check_range("gamma_shift_range", gamma_shift_range, 0, 63)
        self._out_bits = check_act_bits(out_bits)
        self._serial_shift_bits = check_int("serial_shift_bits", serial_shift_bits, 0, 6)
        affine = data.StructLayout({"gamma": signed(self._gamma_bits), "beta": signed(self._beta_bits)})
        super().__init__({
            "x": In(stream.Signature(signed(res_bits))),
            "affine": In(stream.Signature(affine)),
            "o": Out(stream.Signature(signed(out_bits))),
            "eps": In(eps_bits),
            "gamma_shift": In(6),
        })

    @property
    def d(self):
        return self._d

    @property
    def res_bits(self):
        return self._res_bits

    @property
    def log2_d(self):
        """``ceil(log2 d)``."""
        return (self._d - 1).bit_length()

    @property
    def s1_bits(self):
        """Signed width of ``S1``: ``res_bits + ceil(log2 d)``."""
        return self._res_bits + self.log2_d

    @property
    def d_bits(self):
        """Unsigned width of ``D = d * S2 - S1**2 + eps``."""
        return max(2 * self._res_bits - 2 + 2 * self.log2_d, self._eps_bits) + 1

    @property
    def n_bits(self):
        """Signed width of the normalised value ``n``: ``frac_bits + ceil(log2 ceil(sqrt(2 d))) + 2``."""
        return self._frac_bits + (math.isqrt(2 * self._d - 1) + 1 - 1).bit_length() + 2

    @property
    def beta_bits(self):
        return self._beta_bits

    @property
    def eps_min(self):
        return self._eps_min

    @property
    def gamma_shift_range(self):
        return self._gamma_shift_range

    @property
    def root_bits(self):
        """Width of ``r = isqrt(D)``: ``ceil(d_bits / 2)``."""
        return (self.d_bits + 1) // 2

    @property
    def length_min(self):
        """The smallest ``bit_length(r)``: that of ``isqrt(eps_min)`` (``D >= eps``)."""
        return math.isqrt(self._eps_min).bit_length()

    @property
    def acc_bits(self):
        """Signed width of the once-per-row accumulator, which holds ``-S1**2`` (at least ``2 root_bits``
        bits: isqrt doubles it modulo that) and then ``-S1 * R``."""
        return max(2 * self.s1_bits + 1, self.s1_bits + self._inv_bits + 1, 2 * self.root_bits + 1)

    @property
    def split_bits(self):
        """The low half of the pipelined Horner adder: ``max(s1_bits, ceil(acc_bits / 2))`` bits (above it the
        addend is ``s2``'s bits or the sign of ``+-S1``), so neither carry chain is longer than about half."""
        return max(self.s1_bits, (self.acc_bits + 1) // 2)

    @property
    def settle_cycles(self):
        """Cycles a row spends waiting for the pipelined adder: 2 after ``2 D`` is added (its high half), 1
        after ``-S1 R``."""
        return 3

    @property
    def fold_bits(self):
        """``f``: the power of two taken out of ``d`` (at most its trailing zeros, below ``sh - F``).

        ``round_shift(d x R - C, s)`` with ``C = S1 R`` and ``s = sh - F >= f + 1`` equals
        ``round_shift(V, s - f)`` with ``V = (d / 2**f) x R + floor(-C / 2**f)`` (the floor of a sum with a
        multiple of ``2**f`` splits), so the per-element sum is ``f`` bits narrower than ``d x R - C``.
        """
        low = self.shift_range[0]
        return min((self._d & -self._d).bit_length() - 1, low - 1) if low > 0 else 0

    @property
    def v_bits(self):
        """Signed width of ``V``: ``|x R| <= 2**(res_bits+inv_bits-2)``, ``|C| <= 2**(s1_bits+inv_bits-2)``."""
        f = self.fold_bits
        bound = (self._d >> f << (self._res_bits + self._inv_bits - 2)) + (1 << (self.s1_bits + self._inv_bits - 2) >> f)
        return bound.bit_length() + 2

    @property
    def pipeline_depth(self):
        """Cycles from a row's last ``affine`` value accepted to its last output (2 with no stall)."""
        return 2

    @property
    def max_row_cycles(self):
        """Cycles of one row at most, with no stalls: pass 1, ``S1**2``, isqrt (``2 root_bits``), the shift-up
        and divide, ``S1 * R``, pass 2 (two cycles per element, four stages) and handshakes."""
        n = self.root_bits
        return (3 * self._d + self._d * self.serial_cycles_max + self.s1_bits + 2 * n + (n - self.length_min + 1)
                + 2 * self._inv_bits + self.settle_cycles + 8 + 12)

    @property
    def serial_shift_bits(self):
        """How many low bits of the normalising shift are made one place a cycle (0: all in the log shifter)."""
        return self._serial_shift_bits

    @property
    def serial_cycles_max(self):
        """The most cycles an element waits for its serial shift: the places (below ``2**serial_shift_bits``
        and at most the shift's range) and one more when they end on the even phase."""
        low, high = self.shift_range
        places = min((1 << self._serial_shift_bits) - 1, high - low)
        return places + (places & 1)

    @property
    def shift_range(self):
        """The smallest and largest ``sh - frac_bits`` (the normalising shift)."""
        low = self.length_min + self._inv_bits - 2 - self._frac_bits
        return low, self.root_bits + self._inv_bits - 2 - self._frac_bits

    def elaborate(self, platform):
        m = Module()
        d, w, b = self._d, self._res_bits, self._inv_bits
        n = self.root_bits
        # The row is never read in the cycle it is written (pass 1 writes, pass 2 reads; a read that pass 1's
        # ticks make is never used): no read-during-write logic.
        m.submodules.row = row = memory.Memory(shape=signed(w), depth=d, init=[], attrs=NO_COLLISIONS)
        write, read = row.write_port(), ReadPort(m, row, "row_read")

        index = Signal(range(d + 1))
        s1 = Signal(signed(self.s1_bits))
        s2 = Signal(self.d_bits + 1)                     # 2 (d * S2 + eps)
        steps = Signal(range(max(self.s1_bits, 2 * n, b)))
        stats, phase = Signal(), Signal()
        m.d.sync += phase.eq(~phase)

        # The one multiplier. Pass 1: x * x. Pass 2: phase 0, x * (R - 2**(b-2)); phase 1, n * gamma.
        recip = Signal(b)                                # R, in [2**(b-2), 2**(b-1)]
        recip_offset = Cat(recip[:b - 2], recip[b - 1], 0).as_signed()        # R - 2**(b-2), wiring
        n1 = Signal(signed(self.n_bits))
        v0, v1, v2 = Signal(), Signal(), Signal()
        mul_a = Mux(stats, self.x.payload, Mux(phase, n1, read.data))
        mul_b = Mux(stats, self.x.payload, Mux(phase, self.affine.payload.gamma, recip_offset))
        product = mul_a * mul_b
        # d x**2 a value, and eps with the first (s2 is 0 then: an OR, not a second adder or an operand mux)
        first = Signal(init=1)                           # the row's first value is next (index == 0, a register)
        s2_sum = (s2 | Mux(first, self.eps << 1, 0)) + ((d * product[:2 * w - 1]) << 1)

        # Horner's rule, MSB first, in `acc`: -S1 * S1 (every step but the sign bit's subtracts), then one more
        # step adding s2 (acc = 2 D), then -S1 * R (every step subtracts). A subtracted addend is its ones'
        # complement with a carry in: one adder. With no addend it doubles acc, as isqrt does to read D.
        # The adder is pipelined for the iCE40's carry chains: the step's operand is registered (`op_low`, the
        # carry in, and two controls for the high bits), the low `split_bits` of acc add the cycle after, and
        # the high bits the cycle after that, with the low half's registered carry and the bit it shifted out
        # (`top`). So acc's low half is a step behind the FSM, its high half two (see `settle_cycles`).
        split, high_bits = self.split_bits, self.acc_bits - self.split_bits
        bit, negate, join, step = Signal(), Signal(), Signal(), Signal()
        addend = Mux(join, s2, Mux(bit, Mux(negate, ~s1, s1), 0))
        op_low, op_carry, op_join, op_ext, op_valid = Signal(split), Signal(), Signal(), Signal(), Signal()
        m.d.sync += [op_low.eq(addend[:split]), op_carry.eq(bit & negate), op_join.eq(join),
                     op_ext.eq(bit & (s1[-1] ^ negate)), op_valid.eq(step)]
        low, carry, top = Signal(split), Signal(), Signal()
        low_sum = Cat(op_carry, low[:-1]) + op_low       # 2 low + addend + carry in (2 low is even)
        with m.If(op_valid):
            m.d.sync += [low.eq(low_sum[:split]), carry.eq(low_sum[split]), top.eq(low[-1])]
        high, op_high, high_valid = Signal(high_bits), Signal(high_bits), Signal()
        # Above `split` (>= s1_bits) the addend is s2's bits or the sign of +-S1, whichever the step took.
        m.d.sync += [op_high.eq(Mux(op_join, s2[split:], op_ext.replicate(high_bits))), high_valid.eq(op_valid)]
        high_sum = (Cat(1, top, high[:-1]) + Cat(carry, op_high))[1:]
        with m.If(high_valid):
            m.d.sync += high.eq(high_sum[:high_bits])
        acc = Cat(low, high).as_signed()
        clear = [low.eq(0), carry.eq(0), top.eq(0), high.eq(0)]

        # isqrt and the reciprocal's divide on one subtractor. isqrt takes one bit of D a cycle from the top
        # of acc (2 D, doubling each cycle), trying ``4 root + 1`` on every second bit. The divide takes
        # ``2**(n-1) 2**(b-1) / divisor``. `scan` holds the root, then the root shifted up to its top bit.
        d_top = acc[2 * n]
        remainder = Signal(n + 2)
        scan = Signal(n)
        length = Signal(range(n - self.length_min + 1))  # bit_length(r) - length_min
        # `rooting` (state ROOT) and `dividing` (DIVIDE) are registers set and cleared by the FSM a cycle
        # ahead, so the subtractor's operand select and `fits` start from flip-flops, not from the state decode.
        rooting, dividing = Signal(), Signal()
        trial = dividing | (rooting & ~steps[0])
        in_bit = rooting & d_top
        minuend = Cat(in_bit, remainder[:n + 1])
        difference = minuend - Mux(rooting, Cat(1, 0, scan), scan)
        fits = trial & (difference >= 0)
        with m.If(rooting | trial):
            m.d.sync += remainder.eq(Mux(fits, difference, minuend))

        # Pass 2: ``n = round_shift(V, sh - F - fold)`` with ``V = (d >> fold) x R + floor(-C / 2**fold)``
        # (see `fold_bits`), four stages each advancing on odd cycles (`tick`); ``gamma, beta`` are taken
        # where they are used. Everything stalls while the output is valid and not taken, or the affine
        # stream has nothing for the stage that needs it.
        # Registers keep only the bits above the smallest shift less one (no sum bits below them).
        fold = self.fold_bits
        low, high = self.shift_range
        dropped = max(0, low - fold - 1)
        v_value = Signal(signed(self.v_bits - dropped))  # V >> dropped, formed on even cycles
        kc = acc >> fold                                 # floor(-C / 2**fold); x 2**(b-2) adds to its top bits only
        v_sum = ((d >> fold) * product[:w + b - 1].as_signed()
                 + Cat(kc[:b - 2], kc[b - 2:].as_signed() + (d >> fold) * read.data).as_signed()) >> dropped
        # With `serial_shift_bits` = k (and low > fold), the low k bits of the shift are made on v_value itself,
        # one place a cycle after it is formed (on the even cycle after a tick), holding the next tick back;
        # the log shifter makes the rest. Exact: floor(floor(v / 2**a) / 2**c) = floor(v / 2**(a + c)).
        serial = min(self._serial_shift_bits, (high - low).bit_length()) if low > fold else 0
        places = Signal(max(1, serial))                  # serial places still to shift
        formed = Signal()                                # the even cycle after a tick
        if serial:
            with m.If(formed):
                m.d.sync += [v_value.eq(v_sum), places.eq(Mux(v0, length[:serial], 0))]
            with m.Elif(places != 0):
                m.d.sync += [v_value.eq(v_value >> 1), places.eq(places - 1)]
            coarse = Cat(Const(0, serial), length[serial:])
        else:
            with m.If(~phase):
                m.d.sync += v_value.eq(v_sum)
            coarse = length
        normalised = round_shift_above(v_value, 1, coarse, 1 + high - low, self.n_bits) if low > fold else \
            round_shift_within(v_value, length, low - fold, high - fold)
        g_low, g_high = self._gamma_shift_range
        g_dropped = max(0, g_low - 1)
        q = Signal(signed(max(self.n_bits + self._gamma_bits, self._beta_bits) + 1 - g_dropped))
        rounded = round_shift_above(q, 1, (self.gamma_shift - g_low)[:6], 1 + g_high - g_low) if g_low else \
            round_shift_within(q, self.gamma_shift, g_low, g_high)
        advance = (~self.o.valid | self.o.ready) & (~v1 | self.affine.valid) & (places == 0)
        tick = phase & advance
        m.d.sync += formed.eq(tick)
        issuing = Signal()
        m.d.comb += [read.addr.eq(index), read.en.eq(tick), write.addr.eq(index), write.data.eq(self.x.payload),
                     self.affine.ready.eq(tick & v1)]
        with m.If(tick):
            m.d.sync += [v0.eq(issuing), v1.eq(v0), n1.eq(normalised[:self.n_bits]),
                         v2.eq(v1), q.eq((product + self.affine.payload.beta) >> g_dropped),
                         self.o.valid.eq(v2),
                         self.o.payload.eq(saturate(rounded, self._out_bits))]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("STATS"):
                m.d.comb += [self.x.ready.eq(1), write.en.eq(self.x.valid), stats.eq(1)]
                with m.If(self.x.valid):
                    m.d.sync += [s1.eq(s1 + self.x.payload), s2.eq(s2_sum), index.eq(index + 1), first.eq(0)]
                    with m.If(index == d - 1):
                        m.d.sync += [*clear, steps.eq(self.s1_bits - 1)]
                        m.next = "SQUARE"
            with m.State("SQUARE"):                      # acc = -S1 * S1, bit `steps` of S1 a cycle
                m.d.comb += [step.eq(1), bit.eq(s1.bit_select(steps, 1)), negate.eq(steps != self.s1_bits - 1)]
                m.d.sync += steps.eq(steps - 1)
                with m.If(steps == 0):
                    m.next = "JOIN"
            with m.State("JOIN"):                        # acc = 2 acc + s2 = 2 D
                m.d.comb += [step.eq(1), join.eq(1)]
                m.d.sync += steps.eq(1)
                m.next = "SETTLE"
            with m.State("SETTLE"):                      # doubling steps while acc's high half takes 2 D
                m.d.comb += step.eq(1)
                m.d.sync += steps.eq(steps - 1)
                with m.If(steps == 0):
                    m.d.sync += [remainder.eq(0), scan.eq(0), steps.eq(2 * n - 1), length.eq(n - self.length_min),
                                 rooting.eq(1)]
                    m.next = "ROOT"
            with m.State("ROOT"):                        # bit `steps` of D a cycle; a root bit on the even ones
                m.d.comb += step.eq(1)
                m.d.sync += steps.eq(steps - 1)
                with m.If(~steps[0]):
                    m.d.sync += scan.eq(Cat(fits, scan))
                with m.If(steps == 0):
                    m.d.sync += [remainder.eq(1 << (n - 2)), steps.eq(b - 1), rooting.eq(0)]
                    m.next = "SHIFT_UP"
            with m.State("SHIFT_UP"):                    # the root shifted up to its top bit (r >= 1)
                with m.If(scan[-1]):
                    m.d.sync += dividing.eq(1)
                    m.next = "DIVIDE"
                with m.Else():
                    m.d.sync += [scan.eq(scan << 1), length.eq(length - 1)]
            with m.State("DIVIDE"):                      # R = floor(2**(n-1) 2**(b-1) / divisor), one bit a cycle
                m.d.sync += [recip.eq(Cat(fits, recip)), steps.eq(steps - 1)]
                with m.If(steps == 0):
                    m.d.sync += [*clear, steps.eq(b - 1), dividing.eq(0)]
                    m.next = "SCALE"
            with m.State("SCALE"):                       # acc = -S1 * R, R's bits from the top (R rotates)
                m.d.comb += [step.eq(1), bit.eq(recip[-1]), negate.eq(1)]
                m.d.sync += [recip.eq(Cat(recip[-1], recip)), steps.eq(steps - 1)]
                with m.If(steps == 0):
                    m.d.sync += index.eq(0)
                    m.next = "FINISH"
            with m.State("FINISH"):                      # acc's low half takes -S1 R (its high half: next cycle,
                m.next = "NORMALISE"                     # before the first V, 2 cycles after the first tick)
            with m.State("NORMALISE"):
                m.d.comb += issuing.eq(1)
                with m.If(tick):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~v0 & ~v1 & ~v2 & ~self.o.valid):
                    m.d.sync += [index.eq(0), s1.eq(0), s2.eq(0), first.eq(1)]
                    m.next = "STATS"
        return m
