"""Weight quantizers: a float matrix (K, N) in, PoT codes (K, N) and scales (N,) out.

Weights are in the Conv1D layout (in, out): column ``n`` is output channel
``n``, and the scale ``s_n`` of a channel multiplies every code of that column.

Methods, by name (`METHODS`):

``paper``
    The seed papers' post-training method, per tensor: ``s = max|W| / 2**P``
    with ``P = 2**(b-1) - 1``, ``q = round(W / s)``, then
    ``sign(q) * 2**round(log2|q|)`` (rounding twice, the second time in the log
    domain). Its levels are ``2**0 .. 2**P`` times ``s``: ``P + 1`` octaves. The
    b-bit format holds ``Emax + 1 = P`` octaves, one fewer, so this port keeps
    the top ``P`` (channel scale ``max|W|``, exponent ``e = P - round(log2|q|)``)
    and sends the bottom level, ``|q| = 1``, to zero. That is the one
    difference the format forces.
``pot-tensor`` / ``pot-channel``
    Nearest PoT level in the linear domain (the midpoint between ``2**-e`` and
    ``2**-(e+1)`` is ``0.75 * 2**-e``; between the smallest level and zero it is
    ``2**-(Emax+1)``; ties go away from zero; magnitudes above the scale clip to
    it), with one scale per tensor or per output channel chosen by searching
    for the one that minimises the squared error of the quantized weights: 65
    candidates from ``max|w|`` down two octaves in steps of 2**(-1/32), or with
    ``pot_scale`` the powers of two ``2**ceil(log2 max|w|)`` and the next two below.

Every method returns its result in canonical form: the largest magnitude of
each scale group is at exponent 0, so the scale equals the largest dequantized
magnitude. Hence quantizing a dequantized matrix again gives the same codes and
scales (idempotence): its first candidate scale reproduces it with zero error.
An all-zero group gets scale 1.0 and zero codes.

The default is ``pot-channel``: on the default model it has the lowest error of
the three at every bit width (see README, "Quality").
"""

from dataclasses import dataclass

import numpy as np

from .pot_format import DEFAULT_BITS, PotFormat

__all__ = [
    "DEFAULT_METHOD", "METHODS",
    "PotWeights", "Int8Weights",
    "quantize", "quantize_int8", "round_to_pot", "check_weight", "check_method",
]

DEFAULT_METHOD = "pot-channel"

# Scale search grid of the nearest-rounding methods.
_SEARCH_STEPS_PER_OCTAVE = 32
_SEARCH_OCTAVES = 2
_POT_SCALE_CANDIDATES = 3


@dataclass(frozen=True)
class PotWeights:
    """A quantized linear weight: codes (K, N) uint8 and per-channel scales (N,) float32."""

    codes: np.ndarray
    scales: np.ndarray
    bits: int

    @property
    def format(self):
        return PotFormat(self.bits)

    def dequantize(self):
        """The float32 weight the codes stand for: ``(-1)**sign * 2**-e * s_n``."""
        return (self.format.to_float(self.codes) * self.scales.astype(np.float64)).astype(np.float32)


@dataclass(frozen=True)
class Int8Weights:
    """The INT8 reference: weights (K, N) int8 in -127..127 and per-channel scales (N,) float32."""

    weights: np.ndarray
    scales: np.ndarray

    def dequantize(self):
        return (self.weights.astype(np.float64) * self.scales.astype(np.float64)).astype(np.float32)


def check_weight(weight, name="weight"):
    """Return `weight` as a 2-D float32 array, or raise ValueError naming what is wrong with it."""
    weight = np.asarray(weight)
    if weight.ndim != 2 or 0 in weight.shape:
        raise ValueError(f"{name} must be a non-empty 2-D (in, out) matrix, not of shape {weight.shape}")
    if weight.dtype.kind != "f":
        raise TypeError(f"{name} must be a float array, not {weight.dtype}")
    bad = ~np.isfinite(weight)
    if bad.any():
        raise ValueError(f"{name} has {int(bad.sum())} NaN/Inf values; weights must be finite")
    return weight.astype(np.float32)


def round_to_pot(ratio, bits):
    """Nearest PoT level (linear domain) of magnitudes `ratio` = |w| / s. Returns (exponent, is_zero)."""
    fmt = PotFormat(bits)
    ratio = np.asarray(ratio, dtype=np.float64)
    mantissa, power = np.frexp(ratio)                      # ratio = mantissa * 2**power, mantissa in [0.5, 1)
    exponent = np.where(mantissa >= 0.75, -power, 1 - power)
    is_zero = ratio < np.ldexp(1.0, -(fmt.emax + 1))
    return np.clip(exponent, 0, fmt.emax).astype(np.int64), is_zero


def _magnitudes(exponent, is_zero):
    return np.where(is_zero, 0.0, np.ldexp(1.0, -exponent))


def _canonical(weight, scales, exponent, is_zero, fmt, per_channel):
    """Shift each group's exponents so its largest magnitude sits at exponent 0, and encode."""
    occupied = np.where(is_zero, fmt.emax + 1, exponent)
    shift = occupied.min(axis=0) if per_channel else np.full(weight.shape[1], occupied.min())
    shift = np.where(shift > fmt.emax, 0, shift)              # all-zero group: nothing to shift
    scales = np.ldexp(np.broadcast_to(np.asarray(scales, np.float64), shift.shape), -shift)
    codes = fmt.encode(np.signbit(weight), exponent - shift, is_zero)
    return PotWeights(codes=codes, scales=scales.astype(np.float32), bits=fmt.bits)


_FLOAT64_BIAS = 1023


def _nearest_magnitudes(ratio, fmt):
    """`round_to_pot`'s magnitudes ``2**-e`` (or 0) of ratios ``|w| / s >= 0`` (float64), from their bits.

    A float64 ``r = 1.f * 2**p`` is nearest (ties up) to ``2**(p + 1)`` when the top bit of ``f`` is set
    (``r >= 1.5 * 2**p``, the linear midpoint) and to ``2**p`` otherwise: the biased exponent of the
    level is ``((bits >> 51) + 1) >> 1``. Clipped to ``2**-Emax .. 1`` and zero below ``2**-(Emax+1)``,
    these are exactly `round_to_pot`'s levels, about 3x faster (this runs 65 times per weight)."""
    bits = ratio.view(np.int64)
    exponent = bits >> 51
    exponent += 1
    exponent >>= 1
    np.clip(exponent, _FLOAT64_BIAS - fmt.emax, _FLOAT64_BIAS, out=exponent)
    exponent <<= 52
    magnitudes = exponent.view(np.float64)
    np.copyto(magnitudes, 0.0, where=bits < np.float64(np.ldexp(1.0, -(fmt.emax + 1))).view(np.int64))
    return magnitudes


#: Columns whose scale search runs at once: a (K, 64) float64 block of a GPT-2 124M layer stays in cache.
_SEARCH_COLUMNS = 64


def _search_scales(weight, fmt, per_channel, pot_scale):
    """The MSE-best scale per channel (or one per tensor) among the candidate grid.

    The squared errors of every candidate are computed a block of columns at a time (each column's sum
    runs over K in the same order as a whole-matrix ``sum(axis=0)``), then the candidates are compared in
    order as one pass would."""
    magnitude = np.abs(weight).astype(np.float64)
    group_max = magnitude.max(axis=0) if per_channel else np.full(weight.shape[1], magnitude.max())
    group_max = np.where(group_max > 0, group_max, 1.0)
    if pot_scale:
        top = np.exp2(np.ceil(np.log2(group_max)))
        factors = np.exp2(-np.arange(_POT_SCALE_CANDIDATES, dtype=np.float64))
        bases = top
    else:
        factors = np.exp2(-np.arange(_SEARCH_OCTAVES * _SEARCH_STEPS_PER_OCTAVE + 1) / _SEARCH_STEPS_PER_OCTAVE)
        bases = group_max
    scales = np.stack([(bases * factor).astype(np.float32).astype(np.float64) for factor in factors])
    errors = np.empty(scales.shape)                                      # (candidates, N)
    for first in range(0, weight.shape[1], _SEARCH_COLUMNS):
        columns = slice(first, first + _SEARCH_COLUMNS)
        block = np.ascontiguousarray(magnitude[:, columns])
        for index, scale in enumerate(scales[:, columns]):
            quantized = _nearest_magnitudes(block / scale, fmt)
            quantized *= scale
            np.subtract(block, quantized, out=quantized)
            quantized *= quantized
            errors[index, columns] = quantized.sum(axis=0)
    best_scale = bases.astype(np.float32).astype(np.float64)
    best_error = np.full(weight.shape[1], np.inf)
    for scale, error in zip(scales, errors):
        if not per_channel:
            error = np.full_like(error, error.sum())
        better = error < best_error                              # strict: ties keep the larger scale
        best_error = np.where(better, error, best_error)
        best_scale = np.where(better, scale, best_scale)
    return best_scale


def _quantize_nearest(weight, fmt, per_channel, pot_scale):
    scales = _search_scales(weight, fmt, per_channel, pot_scale)
    exponent, is_zero = round_to_pot(np.abs(weight) / scales, fmt.bits)
    return _canonical(weight, scales, exponent, is_zero, fmt, per_channel)


def _quantize_paper(weight, fmt, pot_scale):
    if pot_scale:
        raise ValueError("Method 'paper' has a per-tensor max scale; it does not take pot_scale")
    top = (1 << (fmt.bits - 1)) - 1                               # P: the paper's largest level is 2**P
    wmax = float(np.abs(weight).max())
    if wmax == 0:
        return _canonical(weight, 1.0, np.zeros(weight.shape, np.int64), np.ones(weight.shape, bool), fmt,
                          per_channel=False)
    step = np.float64(wmax) / (1 << top)
    q = np.rint(weight.astype(np.float64) / step)
    level = np.rint(np.log2(np.where(q == 0, 1.0, np.abs(q)))).astype(np.int64)   # round in the log domain
    is_zero = level < 1                                 # q = 0, and |q| = 1, which has no code: one octave fewer
    exponent = np.where(is_zero, 0, top - level)
    return _canonical(weight, np.float32(wmax), exponent, is_zero, fmt, per_channel=False)


METHODS = {
    "paper": lambda weight, fmt, pot_scale: _quantize_paper(weight, fmt, pot_scale),
    "pot-tensor": lambda weight, fmt, pot_scale: _quantize_nearest(weight, fmt, False, pot_scale),
    "pot-channel": lambda weight, fmt, pot_scale: _quantize_nearest(weight, fmt, True, pot_scale),
}


def check_method(method):
    """Return `method` if it is a known quantizer name, else raise ValueError listing the known ones."""
    if method not in METHODS:
        raise ValueError(f"Unknown quantization method {method!r}; choose from {', '.join(METHODS)}")
    return method


def quantize(weight, bits=DEFAULT_BITS, method=DEFAULT_METHOD, pot_scale=False, name="weight"):
    """Quantize a float (K, N) weight to `bits`-bit PoT codes with the named method.

    Raises ValueError for a non-finite weight, a bit width outside 3..8 or an unknown method.
    """
    fmt = PotFormat(bits)
    weight = check_weight(weight, name)
    return METHODS[check_method(method)](weight, fmt, pot_scale)


def quantize_int8(weight, name="weight"):
    """Symmetric per-channel INT8: ``s_n = max|w_n| / 127``, ``w = clip(rint(W / s), -127, 127)``."""
    weight = check_weight(weight, name).astype(np.float64)
    group_max = np.abs(weight).max(axis=0)
    scales = np.where(group_max > 0, group_max / 127, 1.0).astype(np.float32)
    q = np.clip(np.rint(weight / scales.astype(np.float64)), -127, 127).astype(np.int8)
    return Int8Weights(weights=q, scales=scales)
