"""GPT-2's layer norm on an integer residual row: exact sums, isqrt and reciprocal on one serial datapath, one multiplier."""

import math

from amaranth import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits

from .arith import check_int, check_range, round_shift_within, saturate

__all__ = ["LayerNormUnit"]


class LayerNormUnit(wiring.Component):
    """``golden.int_ops.layer_norm`` of one row of ``d`` residual values, bit for bit.

    One signed multiplier (``max(res_bits, n_bits) x max(res_bits, gamma_bits, inv_bits)``
    bits: one SB_MAC16 for the default formats) does every per-element
    product. Pass 1 (``x``, one value per cycle) stores the row in a memory
    (one EBR for 64 x 16 bits) and forms ``S1 = sum x`` and ``S2 = sum x**2``
    (the multiplier squares). Then, once per row, on one serial datapath
    (no multiplier; one shift-add accumulator and one subtractor):
    ``S1**2`` (``s1_bits`` cycles), ``D = d * S2 - S1**2 + eps``, ``r =
    isqrt(D)`` (`IsqrtUnit`'s restoring method, in the accumulator that held
    ``D``: ``ceil(d_bits / 2)`` cycles), ``(R, sh) = reciprocal(r,
    inv_bits)`` (`ReciprocalUnit`'s shift-up and restoring divide on the
    same subtractor), and ``C = S1 * R`` (``inv_bits`` cycles); ``R`` and
    ``sh`` stay in their registers for the row. Pass 2 (``affine``: the layer's
    ``gamma, beta`` per channel) reads the row back, one element every two
    cycles, the multiplier taking ``x * (R - 2**(inv_bits-2))`` on even
    cycles and ``n * gamma`` on odd ones:
    ``(d x - S1) R = d (x (R - 2**(inv_bits-2)) + x 2**(inv_bits-2)) - C``;
    ``n = round_shift(that, sh - F)``; ``q = n * gamma + beta``;
    ``y = saturate(round_shift(q, gamma_shift), out_bits)``. ``R`` lies in
    ``[2**(inv_bits-2), 2**(inv_bits-1)]``, so ``R - 2**(inv_bits-2)`` fits
    ``inv_bits`` signed bits.

    The shifts are barrel shifters only over the range they can take: ``sh -
    F`` from ``bit_length(isqrt(eps_min)) + inv_bits - 2 - F`` up, and
    ``gamma_shift`` over `gamma_shift_range` (wiring alone when the
    artefact's layer norms share one shift).

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
                 eps_min=1, gamma_shift_range=(0, 63), out_bits=8):
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
    def pipeline_depth(self):
        """Cycles from an ``affine`` value accepted to its output (8: four stages of two cycles)."""
        return 8

    @property
    def max_row_cycles(self):
        """Cycles of one row at most, with no stalls: both passes (pass 2 at two cycles per element), the
        square, isqrt, reciprocal, ``S1 * R`` and handshakes."""
        root_bits = (self.d_bits + 1) // 2
        return (3 * self._d + self.s1_bits + root_bits + (root_bits + self._inv_bits) + self._inv_bits
                + self.pipeline_depth + 12)

    @property
    def shift_range(self):
        """The smallest and largest ``sh - frac_bits`` (the normalising shift)."""
        root_bits = (self.d_bits + 1) // 2
        low = math.isqrt(self._eps_min).bit_length() + self._inv_bits - 2 - self._frac_bits
        return low, root_bits + self._inv_bits - 2 - self._frac_bits

    def elaborate(self, platform):
        m = Module()
        d, w, F, b = self._d, self._res_bits, self._frac_bits, self._inv_bits
        n = (self.d_bits + 1) // 2                       # root bits
        m.submodules.row = row = memory.Memory(shape=signed(w), depth=d, init=[])
        write, read = row.write_port(), row.read_port()

        index = Signal(range(d + 1))
        s1 = Signal(signed(self.s1_bits))
        s2 = Signal(unsigned(2 * w - 1 + self.log2_d))

        # Once per row, one serial datapath (see the class docstring):
        # - `acc` accumulates `addend` times `scan` MSB first (S1**2 = |S1| * |S1|, then C = S1 * R), and holds
        #   D while isqrt takes its bits two at a time from the top;
        # - one subtractor serves isqrt (4 rem + next bits - (4 root + 1)) and the divide (rem - divisor);
        # - `scan` holds |S1|, then the root, then R (kept for pass 2); `length` and `divisor` normalise the root.
        scan_bits = max(self.s1_bits, n, b)
        acc = Signal(signed(max(2 * self.s1_bits, self.s1_bits + b, 2 * n) + 1))
        scan = Signal(scan_bits)
        steps = Signal(range(scan_bits + 1))
        scaling = Signal()                               # 0: S1**2; 1: C = S1 * R
        addend = Mux(scaling, s1, scan.as_signed())
        remainder = Signal(n + 2)
        divisor = Signal(n)
        length = Signal(range(n + 1))                    # bit_length(r), counted down while normalising
        rooting = Signal()
        brought = Cat(acc[2 * n - 2:2 * n], remainder[:n])                     # 4 rem + the next two bits of D
        trial = Cat(1, 0, scan[:n])                                           # 4 root + 1
        minuend = Mux(rooting, brought, remainder)
        difference = minuend - Mux(rooting, trial, divisor)
        fits = difference >= 0
        big_d = (d * s2 - acc + self.eps)[:self.d_bits]
        recip = scan[:b]
        shift = length + (b - 2)                                               # sh
        recip_offset = (recip - (1 << (b - 2)))[:b].as_signed()                # R - 2**(b-2), 0 .. 2**(b-2)

        # The one multiplier. Pass 1: x * x. Pass 2: phase 0, x * (R - 2**(b-2)); phase 1, n * gamma.
        stats, phase = Signal(), Signal()
        n1 = Signal(signed(self.n_bits))
        gamma0, gamma1 = Signal(signed(self._gamma_bits)), Signal(signed(self._gamma_bits))
        beta0, beta1 = Signal(signed(self._beta_bits)), Signal(signed(self._beta_bits))
        mul_a = Mux(stats, self.x.payload, Mux(phase, n1, read.data))
        mul_b = Mux(stats, self.x.payload, Mux(phase, gamma1, recip_offset))
        product = mul_a * mul_b
        x_recip = Signal(signed(len(product)))           # x * (R - 2**(b-2))
        m.d.sync += phase.eq(~phase)

        # Pass 2: four stages, each advancing on odd cycles (`tick`), all stalled while the output is valid
        # and not taken.
        advance = ~self.o.valid | self.o.ready
        tick = phase & advance
        v0, v1, v2 = Signal(), Signal(), Signal()
        q = Signal(signed(max(self.n_bits + self._gamma_bits, self._beta_bits) + 1))
        scaled = d * (x_recip + (read.data << (b - 2))) - acc                  # (d x - S1) * R
        low, high = self.shift_range
        normalised = round_shift_within(scaled, (shift - F)[:len(shift)], low, high)[:self.n_bits].as_signed()

        taking = Signal()
        m.d.comb += [read.addr.eq(index), read.en.eq(tick), write.addr.eq(index), write.data.eq(self.x.payload)]
        with m.If(~phase):
            m.d.sync += x_recip.eq(product)
        with m.If(tick):
            m.d.sync += [v0.eq(taking), gamma0.eq(self.affine.payload.gamma), beta0.eq(self.affine.payload.beta),
                         v1.eq(v0), n1.eq(normalised), gamma1.eq(gamma0), beta1.eq(beta0),
                         v2.eq(v1), q.eq(product + beta1),
                         self.o.valid.eq(v2),
                         self.o.payload.eq(saturate(round_shift_within(q, self.gamma_shift,
                                                                       *self._gamma_shift_range), self._out_bits))]
        with m.Elif(self.o.ready):
            m.d.sync += self.o.valid.eq(0)

        with m.FSM():
            with m.State("STATS"):
                m.d.comb += [self.x.ready.eq(1), write.en.eq(self.x.valid), stats.eq(1)]
                with m.If(self.x.valid):
                    m.d.sync += [s1.eq(s1 + self.x.payload), s2.eq(s2 + product), index.eq(index + 1)]
                    with m.If(index == d - 1):
                        m.next = "MAGNITUDE"
            with m.State("MAGNITUDE"):
                m.d.sync += [scan.eq(Mux(s1 < 0, -s1, s1)), acc.eq(0), steps.eq(self.s1_bits), scaling.eq(0)]
                m.next = "SERIAL"
            with m.State("SERIAL"):                      # S1**2, or C = S1 * R: bit steps - 1 of scan
                with m.If(steps != 0):
                    m.d.sync += [acc.eq((acc << 1) + Mux(scan.bit_select((steps - 1)[:len(steps)], 1), addend, 0)),
                                 steps.eq(steps - 1)]
                with m.Elif(scaling):
                    m.d.sync += index.eq(0)
                    m.next = "NORMALISE"
                with m.Else():
                    m.d.sync += [acc.eq(big_d), remainder.eq(0), scan.eq(0), steps.eq(n)]
                    m.next = "ROOT"
            with m.State("ROOT"):                        # one bit of r = isqrt(D) a cycle, restoring
                m.d.comb += rooting.eq(1)
                m.d.sync += [acc.eq(acc << 2), scan.eq(Cat(fits, scan)), steps.eq(steps - 1),
                             remainder.eq(Mux(fits, difference, brought))]
                with m.If(steps == 1):
                    m.next = "LENGTH"
            with m.State("LENGTH"):
                m.d.sync += [divisor.eq(scan[:n]), length.eq(n), remainder.eq(1 << (n - 1)), scan.eq(0),
                             steps.eq(b)]
                m.next = "SHIFT_UP"
            with m.State("SHIFT_UP"):                    # the root shifted up to its top bit (r >= 1)
                with m.If(divisor[-1]):
                    m.next = "DIVIDE"
                with m.Else():
                    m.d.sync += [divisor.eq(divisor << 1), length.eq(length - 1)]
            with m.State("DIVIDE"):                      # R = floor(2**(n-1) 2**(b-1) / divisor), one bit a cycle
                m.d.sync += [scan.eq(Cat(fits, scan)), steps.eq(steps - 1),
                             remainder.eq(Mux(fits, difference, remainder) << 1)]
                with m.If(steps == 1):
                    m.d.sync += [acc.eq(0), steps.eq(b), scaling.eq(1)]
                    m.next = "SERIAL"
            with m.State("NORMALISE"):
                m.d.comb += [self.affine.ready.eq(tick), taking.eq(self.affine.valid)]
                with m.If(tick & self.affine.valid):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~v0 & ~v1 & ~v2 & ~self.o.valid):
                    m.d.sync += [index.eq(0), s1.eq(0), s2.eq(0)]
                    m.next = "STATS"
        return m
