"""The whole-forward units (issue 17): one Amaranth component per file, each the hardware of one
function of :mod:`golden.int_ops` (or one operation of `golden.int_forward.IntegerForward`), tested
alone against it in simulation.

- `Requantizer` (``requantize``), `SerialRequantizer` (``requantize`` on a serial multiplier),
  `IsqrtUnit` (``isqrt``), `ReciprocalUnit` (``reciprocal``), `LayerNormUnit` (``layer_norm``),
  `Exp2Unit` (``exp2``), `GeluTable` (``gelu_lookup``), `Xorshift32` (``xorshift32``),
  `SerialXorshift32` (the same, one bit a cycle), `Sampler` (``sample``), `AttentionUnit`
  (``attention`` with the KV cache), `EmbeddingUnit` (the program's ``embed``), `DecodeLinear`
  (a ``linear`` op on the split-K PoT array), `LinearResidual` (a ``linear`` op to the residual,
  with the add), `LayerNormLinear` (:mod:`hdl.forward.sequencer`,
  stage 1 of the sequencer), `ProgramLinear` (every linear layer of the program on one array),
  `HeadUnit` (the head's logits on multiplier lanes).
- `ForwardCore` (:mod:`hdl.forward.forward_core`): the whole forward of one token at a time with the
  sampler, a token in and a token out (``sim.forward_core`` runs it in Verilator).
- :mod:`hdl.forward.units`: every unit sized from a compiled artefact.
- :mod:`hdl.forward.decode_plan`: the batch-1 decode mapping, its utilisation and code bandwidth.
- :mod:`hdl.forward.resources`: Yosys ``synth_ice40`` figures (LC / DSP / EBR) of every unit.
- :mod:`hdl.forward.arith`, :mod:`hdl.forward.handshake`, :mod:`hdl.forward.simulation`: the
  rounding expressions, the FSM call of a stream unit, the simulation driver they share.
"""
