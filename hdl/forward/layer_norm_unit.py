"""GPT-2's layer norm on an integer residual row: exact sums, one isqrt, one reciprocal, two multiplies per element."""

import math

from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits

from .arith import check_int, round_shift, saturate
from .handshake import call_states
from .isqrt_unit import IsqrtUnit
from .reciprocal_unit import ReciprocalUnit

__all__ = ["LayerNormUnit"]


class LayerNormUnit(wiring.Component):
    """``golden.int_ops.layer_norm`` of one row of ``d`` residual values, bit for bit.

    Pass 1 (``x``, one value per cycle) stores the row in a memory (one EBR
    for 64 x 16 bits) and forms ``S1 = sum x`` and ``S2 = sum x**2`` (one
    square per element: a DSP). Then, once per row: ``S1**2`` by a serial
    shift-add (``s1_bits`` cycles, no DSP), ``D = d * S2 - S1**2 + eps``,
    ``r = isqrt(D)`` (`IsqrtUnit`, ``ceil(d_bits / 2)`` cycles) and
    ``(R, sh) = reciprocal(r, inv_bits)`` (`ReciprocalUnit`). Pass 2
    (``affine``: the layer's ``gamma, beta`` per channel, one per cycle) reads
    the row back and runs a four-stage pipeline per element:
    ``t = d * x - S1``; ``p = t * R`` (a DSP); ``n = round_shift(p, sh - F)``
    and ``q = n * gamma + beta`` (a DSP); ``y = saturate(round_shift(q, gamma_shift), out_bits)``.

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
                 out_bits=8):
        self._d = check_int("d", d, 2, 4096)
        self._res_bits = check_int("res_bits", res_bits, 4, 24)
        self._inv_bits = check_int("inv_bits", inv_bits, 4, 24)
        self._frac_bits = check_int("frac_bits", frac_bits, 1, inv_bits - 1)
        self._gamma_bits = check_int("gamma_bits", gamma_bits, 2, 24)
        self._beta_bits = check_int("beta_bits", self.n_bits + gamma_bits if beta_bits is None else beta_bits, 2, 48)
        self._eps_bits = check_int("eps_bits", eps_bits, 1, 40)
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
    def pipeline_depth(self):
        """Cycles from an ``affine`` value accepted to its output (4)."""
        return 4

    @property
    def max_row_cycles(self):
        """Cycles of one row at most, with no stalls: both passes, the square, isqrt, reciprocal and handshakes."""
        root_bits = (self.d_bits + 1) // 2
        return 2 * self._d + self.s1_bits + root_bits + (root_bits + self._inv_bits) + self.pipeline_depth + 8

    def elaborate(self, platform):
        m = Module()
        d, w, F = self._d, self._res_bits, self._frac_bits
        m.submodules.row = row = memory.Memory(shape=signed(w), depth=d, init=[])
        write, read = row.write_port(), row.read_port()
        m.submodules.isqrt = root_unit = IsqrtUnit(value_bits=self.d_bits)
        m.submodules.reciprocal = recip_unit = ReciprocalUnit(value_bits=root_unit.root_bits, bits=self._inv_bits)

        index = Signal(range(d + 1))
        s1 = Signal(signed(self.s1_bits))
        s2 = Signal(unsigned(2 * w - 1 + self.log2_d))
        magnitude = Signal(self.s1_bits)                 # |S1|
        scan = Signal(self.s1_bits)                      # |S1| again, shifted out MSB first by the serial square
        square = Signal(2 * self.s1_bits)
        steps = Signal(range(self.s1_bits + 1))
        big_d = Signal(self.d_bits)
        root = Signal(root_unit.root_bits)
        recip = Signal(self._inv_bits)
        shift = Signal(recip_unit.shift_bits)

        # Pass 2: four stages, all stalled while the output is valid and not taken.
        advance = ~self.o.valid | self.o.ready
        v0, v1, v2 = Signal(), Signal(), Signal()
        gamma0, gamma1 = Signal(signed(self._gamma_bits)), Signal(signed(self._gamma_bits))
        beta0, beta1 = Signal(signed(self._beta_bits)), Signal(signed(self._beta_bits))
        product = Signal(signed(w + self.log2_d + 1 + self._inv_bits + 1))
        q = Signal(signed(max(self.n_bits + self._gamma_bits, self._beta_bits) + 1))
        centred = d * read.data - s1
        n = round_shift(product, (shift - F)[:len(shift)])[:self.n_bits].as_signed()

        taking = Signal()
        m.d.comb += [read.addr.eq(index), read.en.eq(advance), write.addr.eq(index), write.data.eq(self.x.payload)]
        with m.If(advance):
            m.d.sync += [v0.eq(taking), gamma0.eq(self.affine.payload.gamma), beta0.eq(self.affine.payload.beta),
                         v1.eq(v0), product.eq(centred * recip), gamma1.eq(gamma0), beta1.eq(beta0),
                         v2.eq(v1), q.eq(n * gamma1 + beta1),
                         self.o.valid.eq(v2), self.o.payload.eq(saturate(round_shift(q, self.gamma_shift),
                                                                         self._out_bits))]

        with m.FSM():
            with m.State("STATS"):
                m.d.comb += [self.x.ready.eq(1), write.en.eq(self.x.valid)]
                with m.If(self.x.valid):
                    m.d.sync += [s1.eq(s1 + self.x.payload), s2.eq(s2 + self.x.payload * self.x.payload),
                                 index.eq(index + 1)]
                    with m.If(index == d - 1):
                        m.next = "MAGNITUDE"
            with m.State("MAGNITUDE"):
                absolute = Mux(s1 < 0, -s1, s1)
                m.d.sync += [magnitude.eq(absolute), scan.eq(absolute), square.eq(0), steps.eq(self.s1_bits)]
                m.next = "SQUARE"
            with m.State("SQUARE"):
                with m.If(steps != 0):
                    m.d.sync += [square.eq((square << 1) + Mux(scan[-1], magnitude, 0)), scan.eq(scan << 1),
                                 steps.eq(steps - 1)]
                with m.Else():
                    m.d.sync += big_d.eq(d * s2 - square + self.eps)
                    m.next = "ROOT"
            call_states(m, "ROOT", root_unit, big_d, lambda result: root.eq(result), after="RECIPROCAL")
            call_states(m, "RECIPROCAL", recip_unit, root,
                        lambda result: [recip.eq(result.recip), shift.eq(result.shift), index.eq(0)],
                        after="NORMALISE")
            with m.State("NORMALISE"):
                m.d.comb += [self.affine.ready.eq(advance), taking.eq(self.affine.valid)]
                with m.If(advance & self.affine.valid):
                    m.d.sync += index.eq(index + 1)
                    with m.If(index == d - 1):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(~v0 & ~v1 & ~v2 & ~self.o.valid):
                    m.d.sync += [index.eq(0), s1.eq(0), s2.eq(0)]
                    m.next = "STATS"
        return m
