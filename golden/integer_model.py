"""A GPT-2 whose linear layers are what the hardware holds: codes, integer biases, scales.

`quantize_model` turns a float `GPT2` into an `IntegerModel`: every linear layer
quantized (PoT codes and channel scales, or the INT8 reference), a static
per-layer activation scale calibrated on real text, and the bias rounded onto
the accumulator grid. Its `linear` is the pluggable linear of `golden.gpt2`:
activations are quantized, accumulated exactly as the array does
(`golden.datapath`), and dequantized, so ``model.forward(tokens, linear=im.linear)``
is the whole model with every linear layer on the integer datapath.

Activation scales are static (calibrated once, kept by the host) rather than
computed per call, because the bias the hardware adds is only fixed on a fixed
grid. Calibration runs the model with PoT weights and float activations and
takes each layer input's largest magnitude; at run time larger inputs saturate.
"""

from dataclasses import dataclass

import numpy as np

from .datapath import (DEFAULT_ACT_BITS, activation_scale, check_act_bits, dequantize, int8_accumulate,
                       int8_acc_bits, pot_acc_bits, pot_accumulate, pot_real_unit, quantize_activations,
                       quantize_bias)
from .pot_format import DEFAULT_BITS
from .quantize import DEFAULT_METHOD, METHODS, Int8Weights, check_method, quantize, quantize_int8
from .rom_layout import RomLayout

__all__ = ["IntegerLayer", "IntegerModel", "MODEL_METHODS", "method_names", "quantize_weights",
           "with_quantized_weights", "calibrate_activations", "quantize_model"]

#: Quantizers that need the model and calibration text, not just one weight matrix:
#: name -> function(model, *, bits, pot_scale, calib_tokens, names) -> {name: PotWeights}.
#: (Weight-only methods are `golden.quantize.METHODS`.)
MODEL_METHODS = {}


def method_names():
    """Every quantization method a model can be quantized with, weight-only first."""
    return list(METHODS) + [name for name in MODEL_METHODS if name not in METHODS]


@dataclass(frozen=True)
class IntegerLayer:
    """One linear layer as the hardware holds it.

    Attributes
    ----------
    name : str
    weights : PotWeights or Int8Weights
    act_bits : int
    act_scale : float
        The static per-tensor scale of the layer's input activations.
    bias : ndarray
        Integer biases on the accumulator grid (int64, or Python ints at 7-8 bits).
    """

    name: str
    weights: object
    act_bits: int
    act_scale: float
    bias: np.ndarray

    @property
    def pe(self):
        return "int8" if isinstance(self.weights, Int8Weights) else "pot"

    @property
    def bits(self):
        """PoT code width, or None for the INT8 reference."""
        return self.weights.bits if self.pe == "pot" else None

    @property
    def codes(self):
        """What the array's ROMs hold: PoT codes, or int8 weights."""
        return self.weights.codes if self.pe == "pot" else self.weights.weights

    @property
    def k(self):
        return self.codes.shape[0]

    @property
    def n(self):
        return self.codes.shape[1]

    @property
    def unit(self):
        """The real value of one accumulator step, per channel."""
        if self.pe == "pot":
            return pot_real_unit(self.weights.scales, self.act_scale, self.bits)
        return self.weights.scales.astype(np.float64) * np.float64(np.float32(self.act_scale))

    @property
    def exact_acc_bits(self):
        bias_max = int(np.max(np.abs(self.bias.astype(object)))) if self.bias.size else 0
        if self.pe == "pot":
            return pot_acc_bits(self.k, self.act_bits, self.bits, bias_max)
        return int8_acc_bits(self.k, self.act_bits, bias_max)

    def quantize_input(self, x):
        """Float activations -> the signed integers the array is fed."""
        return quantize_activations(x, self.act_scale, self.act_bits)

    def accumulate(self, x_int, acc_bits=None):
        """The accumulators the array produces for integer activations (..., K) -> (..., N)."""
        if self.pe == "pot":
            return pot_accumulate(x_int, self.codes, self.bias, self.bits, self.act_bits, acc_bits)
        return int8_accumulate(x_int, self.codes, self.bias, self.act_bits, acc_bits)

    def __call__(self, x, acc_bits=None):
        """Float in, float out, through the integer datapath."""
        return dequantize(self.accumulate(self.quantize_input(x), acc_bits), self.unit)


def quantize_weights(model, *, bits=DEFAULT_BITS, method=DEFAULT_METHOD, pot_scale=False, names=None,
                     calib_tokens=None):
    """Post-training quantization of the linear layers `names` (all by default): name -> PotWeights.

    Methods of `MODEL_METHODS` (which see the model's activations) need `calib_tokens`.
    """
    names = list(names or model.linear_names)
    if method in MODEL_METHODS:
        if calib_tokens is None:
            raise ValueError(f"Method {method!r} needs calibration tokens")
        return MODEL_METHODS[method](model, bits=bits, pot_scale=pot_scale, calib_tokens=calib_tokens,
                                     names=names)
    check_method(method)
    return {name: quantize(model.weight(name), bits, method, pot_scale, name=name) for name in names}


def with_quantized_weights(model, weights):
    """A copy of `model` whose linear weights are the dequantized `weights` (float activations)."""
    return model.with_weights({name: w.dequantize() for name, w in weights.items()})


def calibrate_activations(model, tokens):
    """The largest input magnitude of every linear layer of `model` on `tokens`: name -> float."""
    absmax = {}

    def recording_linear(name, x):
        absmax[name] = max(absmax.get(name, 0.0), float(np.abs(x).max()))
        return x @ model.weight(name) + model.bias(name)

    model.forward(np.asarray(tokens), linear=recording_linear, head=False)
    return absmax


class IntegerModel:
    """A `GPT2` with every linear layer on the integer datapath (see module docstring).

    Parameters
    ----------
    model : GPT2
        The float model (embeddings, norms and head stay float: the host's work).
    layers : dict of str -> IntegerLayer
    """

    def __init__(self, model, layers):
        self.model = model
        self.layers = dict(layers)
        kinds = {layer.pe for layer in self.layers.values()}
        if len(kinds) != 1:
            raise ValueError(f"An integer model holds one kind of layer, not {sorted(kinds)}")
        self.pe = kinds.pop()
        first = next(iter(self.layers.values()))
        self.bits, self.act_bits = first.bits, first.act_bits

    def linear(self, name, x):
        """The pluggable linear of `golden.gpt2.GPT2.forward`: layers not held here run in float."""
        if name in self.layers:
            return self.layers[name](x)
        return x @ self.model.weight(name) + self.model.bias(name)

    def offloaded_linear(self, accumulate):
        """A pluggable linear whose integer work is done by ``accumulate(name, x_int) -> acc``.

        The host's share stays here: quantize the input with the layer's static
        scale, and dequantize the accumulators. With ``accumulate`` the array (in
        simulation or on the board), the model runs on the hardware.
        """
        def linear(name, x):
            if name not in self.layers:
                return x @ self.model.weight(name) + self.model.bias(name)
            layer = self.layers[name]
            x_int = layer.quantize_input(x)
            acc = np.asarray(accumulate(name, x_int.reshape(-1, layer.k)))
            return dequantize(acc.reshape(x_int.shape[:-1] + (layer.n,)), layer.unit)
        return linear

    def forward(self, tokens):
        return self.model.forward(tokens, linear=self.linear)

    def loss(self, tokens, targets):
        return self.model.loss(tokens, targets, linear=self.linear)

    def capture(self, tokens, names=None):
        """The real integer input activations of each layer (name -> int64 (..., K)) on `tokens`."""
        wanted = set(names or self.layers)
        captured = {}

        def capturing_linear(name, x):
            if name in wanted:
                captured[name] = self.layers[name].quantize_input(x)
            return self.linear(name, x)

        self.model.forward(np.asarray(tokens), linear=capturing_linear)
        return captured

    def acc_bits(self, names=None):
        """The exact accumulator width for the layers `names` (all by default) in one array."""
        return max(self.layers[name].exact_acc_bits for name in (names or self.layers))

    def layout(self, columns, names=None):
        """The ROM layout of the layers `names` (all by default, in model order) for `columns` columns."""
        names = list(names or self.layers)
        return RomLayout([(name, self.layers[name].codes, self.layers[name].bias) for name in names],
                         columns=columns, bits=self.bits)


def quantize_model(model, *, calib_tokens, bits=DEFAULT_BITS, method=DEFAULT_METHOD, pot_scale=False,
                   act_bits=DEFAULT_ACT_BITS, pe="pot", weights=None, names=None):
    """Quantize `model` for the array: weights, static activation scales and integer biases.

    Parameters
    ----------
    calib_tokens : int array (T,) or (B, T)
        Calibration text for the activation scales (the model's train split by convention).
    weights : dict of name -> PotWeights, optional
        Already quantized weights (e.g. from a Hessian-aware method); default PTQ with `method`.
    pe : "pot" or "int8"
    """
    act_bits = check_act_bits(act_bits)
    names = list(names or model.linear_names)
    if pe == "pot":
        weights = weights or quantize_weights(model, bits=bits, method=method, pot_scale=pot_scale, names=names,
                                              calib_tokens=calib_tokens)
    elif pe == "int8":
        weights = {name: quantize_int8(model.weight(name), name=name) for name in names}
    else:
        raise ValueError(f"PE kind must be 'pot' or 'int8', not {pe!r}")
    absmax = calibrate_activations(with_quantized_weights(model, weights), calib_tokens)
    layers = {}
    for name in names:
        act_scale = activation_scale(absmax[name], act_bits)
        layer = IntegerLayer(name, weights[name], act_bits, act_scale, np.zeros(0, np.int64))
        bias = quantize_bias(model.bias(name), layer.unit)
        layers[name] = IntegerLayer(name, weights[name], act_bits, act_scale, bias)
    return IntegerModel(model, layers)

from .gptq import gptq_pot as _gptq_pot; MODEL_METHODS["gptq-pot"] = _gptq_pot  # noqa: E402,E702
