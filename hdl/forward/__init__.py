"""The whole-forward units (issue 17): one Amaranth component per file, each the hardware of one
function of :mod:`golden.int_ops`, tested alone against it.

- `Requantizer` (``requantize``), `IsqrtUnit` (``isqrt``), `ReciprocalUnit` (``reciprocal``),
  `LayerNormUnit` (``layer_norm``), `Exp2Unit` (``exp2``), `GeluTable` (``gelu_lookup``),
  `Xorshift32` (``xorshift32``), `Sampler` (``sample``), `EmbeddingUnit` (the program's ``embed``).
- :mod:`hdl.forward.arith`: the rounding and saturation expressions they share.
- :mod:`hdl.forward.decode_plan`: the batch-1 decode mapping onto the PoT array and its utilisation.
- :mod:`hdl.forward.resources`: Yosys ``synth_ice40`` figures (LC / DSP / EBR) of every unit.
"""
