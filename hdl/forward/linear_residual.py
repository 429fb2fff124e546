"""A ``linear`` op of the program to the residual: ``x = saturate(x + requantize(a @ W + bias), res_bits)``."""

from amaranth import Module, signed
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .arith import saturate
from .units import decode_linear_for

__all__ = ["LinearResidual"]


class LinearResidual(wiring.Component):
    """The residual update of ``attn.c_proj`` / ``mlp.c_proj``: `DecodeLinear` onto the residual's grid, then the add.

    The layer's outputs (``res_bits``, saturated by the requantiser) and the
    residual row ``x`` (a stream of the same ``d`` channels, in order) are
    joined one pair per cycle and their saturated sum leaves on ``o``: the
    program's ``x = sat(x + sat(rs(acc * m, s)))``.

    Parameters
    ----------
    compiled : golden.compile.CompiledModel
    linear : str
        A linear layer of its program with ``to: "residual"``.
    rows, columns : int
        The split-K array.

    Members
    -------
    a : ``In(stream.Signature(signed(act_bits)))``
        The layer's ``K`` input activations.
    x : ``In(stream.Signature(signed(res_bits)))``
        The residual row before the update.
    o : ``Out(stream.Signature(signed(res_bits)))``
        The residual row after it.
    """

    def __init__(self, *, compiled, linear, rows=4, columns=3):
        ops = {op.get("name"): op for op in compiled.program if op["op"] == "linear"}
        if ops.get(linear, {}).get("to") != "residual":
            raise ValueError(f"{linear!r} is not a linear layer to the residual of the compiled program")
        self._res_bits = compiled.formats.res_bits
        self._linear = decode_linear_for(compiled, linear, rows=rows, columns=columns)
        super().__init__({"a": In(stream.Signature(signed(compiled.formats.act_bits))),
                          "x": In(stream.Signature(signed(self._res_bits))),
                          "o": Out(stream.Signature(signed(self._res_bits)))})

    @property
    def linear(self):
        """The `DecodeLinear` inside."""
        return self._linear

    @property
    def d(self):
        return self._linear.n

    def elaborate(self, platform):
        m = Module()
        m.submodules.linear = linear = self._linear
        wiring.connect(m, wiring.flipped(self.a), linear.a)
        both = linear.o.valid & self.x.valid
        m.d.comb += [self.o.valid.eq(both), self.o.payload.eq(saturate(self.x.payload + linear.o.payload,
                                                                       self._res_bits)),
                     linear.o.ready.eq(both & self.o.ready), self.x.ready.eq(both & self.o.ready)]
        return m
