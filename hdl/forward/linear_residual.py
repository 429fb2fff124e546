"""A ``linear`` op of the program to the residual: ``x = saturate(x + requantize(a @ W + bias), res_bits)``."""

from .program_linear import ProgramLinear, program_layers

__all__ = ["LinearResidual"]


class LinearResidual(ProgramLinear):
    """The residual update of ``attn.c_proj`` / ``mlp.c_proj``: the layer onto the residual's grid, then the add.

    A `ProgramLinear` of this one layer (``add``): the layer's outputs
    (``res_bits``, saturated by the requantiser) and the residual row ``x``
    (a stream of the same ``d`` channels, in order) are joined one pair per
    cycle and their saturated sum leaves on ``o``: the program's
    ``x = sat(x + sat(rs(acc * m, s)))``.

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
        layer = next((x for x in program_layers(compiled) if x.name == linear), None)
        if layer is None or not layer.add:
            raise ValueError(f"{linear!r} is not a linear layer to the residual of the compiled program")
        f = compiled.formats
        super().__init__(layers=[layer], bits=compiled.bits, act_bits=f.act_bits, res_bits=f.res_bits, rows=rows,
                         columns=columns, mult_bits=f.mult_bits)

    @property
    def d(self):
        return self.layers[0].n
