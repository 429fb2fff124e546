"""One linear layer of batch-1 decode on a split-K PoT array: rows over K chunks, columns over output channels."""

from .program_linear import LinearLayer, ProgramLinear, code_words

__all__ = ["DecodeLinear", "code_words"]


class DecodeLinear(ProgramLinear):
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

    It is a `ProgramLinear` of this one layer (the forward's engine serves
    every layer of the program on the same array).

    Members
    -------
    a : ``In(stream.Signature(signed(act_bits)))``
        The ``K`` activations of the token.
    o : ``Out(stream.Signature(signed(out_bits)))``
        The ``N`` outputs, in channel order.
    """

    def __init__(self, *, codes, bias, mult, shift, bits=4, act_bits=8, out_bits=8, rows=4, columns=4,
                 mult_bits=16):
        layer = LinearLayer(codes=codes, bias=bias, mult=mult, shift=shift, out_bits=out_bits)
        super().__init__(layers=[layer], bits=bits, act_bits=act_bits, res_bits=out_bits, rows=rows,
                         columns=columns, mult_bits=mult_bits)

    @property
    def k(self):
        return self.layers[0].k

    @property
    def n(self):
        return self.layers[0].n

    @property
    def chunk(self):
        """Activations per row: ``ceil(K / rows)``."""
        return self.layer_chunk(0)

    @property
    def tiles(self):
        """Column tiles: ``ceil(N / columns)``."""
        return self.layer_tiles(0)

    @property
    def beats(self):
        """Beats of the array per token: ``tiles * (chunk + 1)``."""
        return self.layer_beats(0)
