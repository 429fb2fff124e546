"""The requantiser behind the PoT array: ``saturate(round_shift(acc * mult, shift), out_bits)``."""

from amaranth import Module, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import check_int, round_shift, saturate

__all__ = ["Requantizer", "requantizer_ports"]


def requantizer_ports(acc_bits, mult_bits, shift_bits, out_bits):
    """The ports every requantiser has: ``i`` (``acc``, ``mult``, ``shift``) in, the saturated ``o`` out."""
    layout = data.StructLayout({"acc": signed(acc_bits), "mult": unsigned(mult_bits), "shift": unsigned(shift_bits)})
    return {"i": In(stream.Signature(layout)), "o": Out(stream.Signature(signed(out_bits)))}


class Requantizer(wiring.Component):
    """``golden.int_ops.requantize`` as a two-stage pipeline, one value per cycle.

    Stage 1 registers the exact product ``acc * mult`` (signed times unsigned:
    on iCE40 one or more SB_MAC16 when Yosys infers them); stage 2 rounds half
    up by ``shift`` (an arithmetic barrel shift and an increment, see
    :func:`hdl.forward.arith.round_shift`) and saturates to `out_bits`. Both
    stages stall together when the output is valid and not taken.

    Parameters
    ----------
    acc_bits : int
        Width of the signed accumulator, 2 to 48.
    mult_bits : int
        Width of the unsigned multiplier, 1 to 32 (``IntFormats.mult_bits``).
    shift_bits : int
        Width of the unsigned shift, 1 to 6 (shifts 0 to ``min(62, 2**shift_bits - 1)``,
        the compiler's shifts reach 62, which needs 6).
    out_bits : int
        Width of the signed, saturated output, 2 to 32.

    Members
    -------
    i : ``In(stream.Signature(StructLayout({"acc", "mult", "shift"})))``
    o : ``Out(stream.Signature(signed(out_bits)))``
    """

    def __init__(self, *, acc_bits, mult_bits=16, shift_bits=6, out_bits=8):
        self._acc_bits = check_int("acc_bits", acc_bits, 2, 48)
        self._mult_bits = check_int("mult_bits", mult_bits, 1, 32)
        self._shift_bits = check_int("shift_bits", shift_bits, 1, 6)
        self._out_bits = check_int("out_bits", out_bits, 2, 32)
        super().__init__(requantizer_ports(acc_bits, mult_bits, shift_bits, out_bits))

    @property
    def acc_bits(self):
        return self._acc_bits

    @property
    def mult_bits(self):
        return self._mult_bits

    @property
    def shift_bits(self):
        return self._shift_bits

    @property
    def out_bits(self):
        return self._out_bits

    @property
    def product_bits(self):
        """Width of the registered product, ``acc_bits + mult_bits`` (signed)."""
        return self._acc_bits + self._mult_bits

    @property
    def latency(self):
        """Cycles from an accepted input to its output being valid (2)."""
        return 2

    def elaborate(self, platform):
        m = Module()
        advance = ~self.o.valid | self.o.ready
        m.d.comb += self.i.ready.eq(advance)

        product = Signal(signed(self.product_bits))
        shift = Signal(self._shift_bits)
        product_valid = Signal()
        with m.If(advance):
            m.d.sync += [product.eq(self.i.payload.acc * self.i.payload.mult), shift.eq(self.i.payload.shift),
                         product_valid.eq(self.i.valid),
                         self.o.payload.eq(saturate(round_shift(product, shift), self._out_bits)),
                         self.o.valid.eq(product_valid)]
        return m
