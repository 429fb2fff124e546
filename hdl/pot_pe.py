"""One power-of-two multiply-accumulate unit of the systolic array."""

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import check_act_bits, check_acc_bits
from golden.pot_format import PotFormat

__all__ = ["PotPE"]


class PotPE(wiring.Component):
    """A barrel-shifter MAC: ``acc += (-1)**sign * (x << (Emax - e))``, wrapping in `acc_bits`.

    Each cycle takes one *beat*: an activation from the left, a weight code and a
    drain flag from above. The term of a beat is registered (sign folded in as a
    conditional inversion plus a carry-in, the zero code clearing it), then added
    to the accumulator; both fit a LUT4 + carry per bit on iCE40. The activation,
    code and drain flag leave right / down one cycle after they arrive.

    A beat with ``drain_in`` high ends a tile: its own code and activation are
    ignored, the next cycle ``acc`` holds the sum of the terms of every beat since
    the previous drain beat (wrapped to `acc_bits`) and ``valid`` is high, and the
    cycle after that the accumulator restarts from zero. So a tile of ``K`` terms
    takes ``K + 1`` beats: the one-beat drain costs one cycle per tile and there
    is no shadow accumulator. A beat with the zero code (either sign) adds
    nothing, which is how idle beats are fed.

    With ``exact_negation=False`` a negative term is the ones' complement
    ``~(x << (Emax - e))``, one less than its value, and no carry-in: a drained
    sum is then short by the number of negative non-zero codes of its tile,
    which depends on the codes alone, so `hdl.engine.Engine` adds it back with
    the bias (`hdl.bias_store`). That saves the carry-in's register and the
    logic cell that feeds a carry chain from the fabric.

    Cost on iCE40 (``python -m hdl.bench``; A = 8, b = 4, 21-bit accumulator):
    54 LUT4, 20 SB_CARRY, 49 DFF, 71 logic cells (69 with
    ``exact_negation=False``), against 199 LUT4 and 219 logic cells for
    `hdl.int8_pe.Int8PE`.

    Parameters
    ----------
    act_bits : int
        Activation width ``A`` (signed), 2 to 16.
    bits : int
        Code width ``b``, 3 to 8.
    acc_bits : int
        Accumulator width (two's complement, wraps), at least 2.
    exact_negation : bool
        True: ``-(x << s)`` exactly (a carry-in per negative term); False: its
        ones' complement (see above).
    skip_input : bool
        True: a ``skip_in`` input joins the beat; a beat with it high adds
        nothing, as if its code were zero (the term register's clear, so no
        logic beyond the zero code's own). `hdl.forward.program_linear` holds
        its accumulators this way while it waits, instead of clearing the codes.

    Members
    -------
    x_in : ``In(signed(act_bits))``
    w_in : ``In(bits)``
        The weight code.
    drain_in : ``In(1)``
    skip_in : ``In(1)``
        Only with ``skip_input=True``: the beat adds nothing.
    x_out, w_out, drain_out : ``Out``
        The inputs, one cycle later.
    acc : ``Out(signed(acc_bits))``
        The accumulator.
    valid : ``Out(1)``
        ``acc`` holds a finished tile (the cycle after a drain beat).

    Raises
    ------
    TypeError, ValueError
        On a width that is not an integer or out of range.
    """

    def __init__(self, *, act_bits=8, bits=4, acc_bits, exact_negation=True, skip_input=False):
        self._act_bits = check_act_bits(act_bits)
        self._format = PotFormat(bits)
        self._acc_bits = check_acc_bits(acc_bits)
        if not isinstance(exact_negation, bool):
            raise TypeError(f"Exact negation must be a bool, not {exact_negation!r}")
        self._exact_negation = exact_negation
        if not isinstance(skip_input, bool):
            raise TypeError(f"Skip input must be a bool, not {skip_input!r}")
        self._skip_input = skip_input
        ports = {
            "x_in": In(signed(self._act_bits)),
            "w_in": In(self._format.bits),
            "drain_in": In(1),
            "x_out": Out(signed(self._act_bits)),
            "w_out": Out(self._format.bits),
            "drain_out": Out(1),
            "acc": Out(signed(self._acc_bits)),
            "valid": Out(1),
        }
        if skip_input:
            ports["skip_in"] = In(1)
        super().__init__(ports)

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def bits(self):
        return self._format.bits

    @property
    def weight_bits(self):
        """Width of the weight lane (`bits`)."""
        return self._format.bits

    @property
    def acc_bits(self):
        return self._acc_bits

    acc_width = acc_bits

    @property
    def exact_negation(self):
        return self._exact_negation

    @property
    def skip_input(self):
        return self._skip_input

    @property
    def term_bits(self):
        """Width of the registered term, ``act_bits + Emax`` (plus a carry-in bit)."""
        return self._act_bits + self._format.emax

    @property
    def latency(self):
        """Cycles from a beat at the inputs to its term being included in ``acc`` (2)."""
        return 2

    def elaborate(self, platform):
        m = Module()
        fmt = self._format

        m.d.sync += [
            self.x_out.eq(self.x_in),
            self.w_out.eq(self.w_in),
            self.drain_out.eq(self.drain_in),
        ]

        exponent = self.w_in[:fmt.exponent_bits]
        negative = self.w_in[fmt.exponent_bits]
        shifted = Signal(signed(self.term_bits))
        # x << (Emax - e), written as a right shift of x << Emax so no subtractor is needed.
        m.d.comb += shifted.eq((self.x_in << fmt.emax) >> exponent)

        term = Signal(signed(self.term_bits))
        carry = Signal()                      # -y = ~y + 1: the +1 enters the adder as a carry-in
        with m.If((exponent == fmt.zero_code) | (self.skip_in if self._skip_input else 0)):
            m.d.sync += [term.eq(0), carry.eq(0)]
        with m.Else():
            m.d.sync += [term.eq(Mux(negative, ~shifted, shifted)), carry.eq(negative)]
        acc = Signal(signed(self._acc_bits))
        total = acc + term + carry if self._exact_negation else acc + term
        with m.If(self.drain_out):
            m.d.sync += acc.eq(0)
        with m.Else():
            m.d.sync += acc.eq(total)

        m.d.comb += [self.acc.eq(acc), self.valid.eq(self.drain_out)]
        return m
