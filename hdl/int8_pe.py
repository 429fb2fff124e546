"""One INT8 multiply-accumulate unit: the conventional reference for the PoT array."""

from amaranth import Module, Signal, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from golden.datapath import INT8_WEIGHT_BITS, check_acc_bits, check_act_bits

__all__ = ["Int8PE"]


class Int8PE(wiring.Component):
    """A multiplier MAC: ``acc += x * w`` for a signed 8-bit weight, wrapping in `acc_bits`.

    The same unit as `hdl.pot_pe.PotPE` (same ports, timing and drain behaviour)
    with an ``A x 8`` signed multiplier in place of the barrel shifter; the
    product is registered before the adder. The weight lane carries the weight's
    two's-complement byte.

    Parameters
    ----------
    act_bits : int
        Activation width ``A`` (signed), 2 to 16.
    acc_bits : int
        Accumulator width (two's complement, wraps), at least 2.

    Members
    -------
    x_in : ``In(signed(act_bits))``
    w_in : ``In(signed(8))``
    drain_in : ``In(1)``
    x_out, w_out, drain_out : ``Out``
        The inputs, one cycle later.
    acc : ``Out(signed(acc_bits))``
    valid : ``Out(1)``
        ``acc`` holds a finished tile (the cycle after a drain beat).

    Raises
    ------
    TypeError, ValueError
        On a width that is not an integer or out of range.
    """

    def __init__(self, *, act_bits=8, acc_bits):
        self._act_bits = check_act_bits(act_bits)
        self._acc_bits = check_acc_bits(acc_bits)
        super().__init__({
            "x_in": In(signed(self._act_bits)),
            "w_in": In(signed(INT8_WEIGHT_BITS)),
            "drain_in": In(1),
            "x_out": Out(signed(self._act_bits)),
            "w_out": Out(signed(INT8_WEIGHT_BITS)),
            "drain_out": Out(1),
            "acc": Out(signed(self._acc_bits)),
            "valid": Out(1),
        })

    @property
    def act_bits(self):
        return self._act_bits

    @property
    def bits(self):
        """None: the weight is an INT8 integer, not a PoT code."""
        return None

    @property
    def weight_bits(self):
        return INT8_WEIGHT_BITS

    @property
    def acc_bits(self):
        return self._acc_bits

    acc_width = acc_bits

    @property
    def term_bits(self):
        """Width of the registered product, ``act_bits + 8``."""
        return self._act_bits + INT8_WEIGHT_BITS

    @property
    def latency(self):
        """Cycles from a beat at the inputs to its product being included in ``acc`` (2)."""
        return 2

    def elaborate(self, platform):
        m = Module()
        m.d.sync += [
            self.x_out.eq(self.x_in),
            self.w_out.eq(self.w_in),
            self.drain_out.eq(self.drain_in),
        ]
        term = Signal(signed(self.term_bits))
        m.d.sync += term.eq(self.x_in * self.w_in)
        acc = Signal(signed(self._acc_bits))
        with m.If(self.drain_out):
            m.d.sync += acc.eq(0)
        with m.Else():
            m.d.sync += acc.eq(acc + term)
        m.d.comb += [self.acc.eq(acc), self.valid.eq(self.drain_out)]
        return m
