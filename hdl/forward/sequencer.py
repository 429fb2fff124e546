"""The forward's sequencer, stage 1: one layer norm and one linear layer of the compiled program, in hardware.

The whole-forward sequencer (issue 17) steps through the artefact's program
(`golden.compile.program_of`) for one token: ``embed`` (`EmbeddingUnit`),
then per layer ``layer_norm`` (`LayerNormUnit`), ``linear`` (`DecodeLinear`:
the split-K PoT array, see :mod:`hdl.forward.decode_plan` for the mapping and
its utilisation), ``attention`` (`AttentionUnit`, KV cache on chip),
``linear`` to the residual, ``layer_norm``, ``linear``, ``gelu``
(`GeluTable`), ``linear`` to the residual; then ``ln_f``, the head and the
`Sampler`. The residual row lives in a ``d``-entry memory; every unit is a
stream, so the sequencer is a program counter that routes one unit's output
stream into the next unit's input and the residual memory.

This stage builds the first link of that chain, `LayerNormLinear`: a residual
row in, ``layer_norm`` then a ``linear`` layer to activations out, with the
layer norm's gains and biases and the layer's codes, biases and requantisers
taken from the compiled artefact; `hdl.forward.linear_residual.LinearResidual`
is the other kind of linear step (``to: residual``, with the add). The
program counter over all operations, with the residual memory, attention,
GELU, the head and the sampler in the chain, is
`hdl.forward.forward_core.ForwardCore`.
"""

import numpy as np

from amaranth import Module, Mux, Signal, signed
from amaranth.lib import memory, stream, wiring
from amaranth.lib.wiring import In, Out

from .units import decode_linear_for, layer_norm_for

__all__ = ["LayerNormLinear"]


class LayerNormLinear(wiring.Component):
    """``requantize(layer_norm(x) @ W + bias)``: one program step pair of `compiled`, for one token at a time.

    Parameters
    ----------
    compiled : golden.compile.CompiledModel
        The artefact.
    norm : str
        A layer norm of its program (e.g. ``"h.0.ln_1"``).
    linear : str
        The linear layer after it, ``to: "act"`` (e.g. ``"h.0.attn.c_attn"``).
    rows, columns : int
        The split-K array (`DecodeLinear`).

    Members
    -------
    x : ``In(stream.Signature(signed(res_bits)))``
        The ``d`` residual values of the token.
    o : ``Out(stream.Signature(signed(act_bits)))``
        The layer's ``N`` activations.
    """

    def __init__(self, *, compiled, norm, linear, rows=4, columns=3):
        ops = {(op["op"], op.get("name")): op for op in compiled.program}
        if ("layer_norm", norm) not in ops:
            raise ValueError(f"{norm!r} is not a layer norm of the compiled program")
        if ops.get(("linear", linear), {}).get("to") != "act":
            raise ValueError(f"{linear!r} is not a linear layer to activations of the compiled program")
        t, f = compiled.tensors, compiled.formats
        self._norm = layer_norm_for(compiled)
        self._gamma, self._beta = np.asarray(t[norm + ".gamma"]), np.asarray(t[norm + ".beta"])
        self._eps, self._gamma_shift = int(t[norm + ".eps"]), int(t[norm + ".shift"])
        self._linear = decode_linear_for(compiled, linear, rows=rows, columns=columns)
        super().__init__({"x": In(stream.Signature(signed(f.res_bits))),
                          "o": Out(stream.Signature(signed(f.act_bits)))})

    @property
    def d(self):
        return self._norm.d

    @property
    def n(self):
        return self._linear.n

    @property
    def layer_norm(self):
        """The `LayerNormUnit` inside."""
        return self._norm

    @property
    def linear(self):
        """The `DecodeLinear` inside."""
        return self._linear

    def elaborate(self, platform):
        m = Module()
        m.submodules.norm = norm = self._norm
        m.submodules.linear = linear = self._linear
        wiring.connect(m, wiring.flipped(self.x), norm.x)
        wiring.connect(m, norm.o, linear.a)
        wiring.connect(m, linear.o, wiring.flipped(self.o))
        m.d.comb += [norm.eps.eq(self._eps), norm.gamma_shift.eq(self._gamma_shift)]

        # The affine stream: gamma, beta of channel 0, 1, .. d-1, again for every row.
        d = self.d
        gamma = memory.Memory(shape=norm.affine.payload.gamma.shape(), depth=d, init=[int(v) for v in self._gamma])
        beta = memory.Memory(shape=norm.affine.payload.beta.shape(), depth=d, init=[int(v) for v in self._beta])
        m.submodules.gamma, m.submodules.beta = gamma, beta
        reads = gamma.read_port(), beta.read_port()
        channel = Signal(range(d))
        advance = ~norm.affine.valid | norm.affine.ready
        for port in reads:
            m.d.comb += [port.addr.eq(channel), port.en.eq(advance)]
        m.d.comb += [norm.affine.payload.gamma.eq(reads[0].data), norm.affine.payload.beta.eq(reads[1].data)]
        with m.If(advance):
            m.d.sync += [norm.affine.valid.eq(1), channel.eq(Mux(channel == d - 1, 0, channel + 1))]
        return m
