"""The bit-exact integer datapath: what every PE and every accumulator computes.

An activation is a signed `A`-bit integer ``x`` (2 <= A <= 16) with a per-tensor
float scale kept by the host. A PoT weight code contributes the term

    t = (-1)**sign * (x << (Emax - e))        (0 for the zero code)

and output channel ``n`` accumulates ``acc_n = bias_n + sum_k t_k`` in
``acc_bits`` two's-complement bits. Two's-complement addition is associative
modulo ``2**acc_bits``, so wrapping once at the end (as here) equals wrapping
after every addition (as the hardware does). The exact width (`pot_acc_bits`)
holds every possible sum, so nothing wraps by default.

The real value of an accumulator is ``acc_n * s_n * 2**-Emax * act_scale``.

The INT8 reference (a conventional multiplier PE) is the same with a signed
8-bit weight ``w`` and the term ``x * w``; its real value is ``acc_n * s_n * act_scale``.

Results are int64 arrays while the exact width fits in 62 bits and object
arrays of Python ints beyond that (7- and 8-bit codes shift by up to 62 and 126
places), so golden stays exact at every width the format allows.

Activation rounding, chosen here and binding on every host implementation:
``q = clip(rint(float64(x) / float64(scale)), -(2**(A-1) - 1), 2**(A-1) - 1)``,
rint rounding half to even. The quantizer is symmetric and never produces
``-2**(A-1)``; the hardware accepts it all the same.
"""

import numpy as np

from .pot_format import PotFormat

__all__ = [
    "MIN_ACT_BITS", "MAX_ACT_BITS", "DEFAULT_ACT_BITS", "INT8_WEIGHT_BITS",
    "check_act_bits", "check_acc_bits",
    "activation_scale", "quantize_activations",
    "pot_acc_bits", "int8_acc_bits", "pot_sum_bits", "int8_sum_bits",
    "pot_matmul", "int8_matmul", "wrap",
    "pot_accumulate", "int8_accumulate",
    "pot_real_unit", "quantize_bias", "dequantize",
]

MIN_ACT_BITS = 2
MAX_ACT_BITS = 16
DEFAULT_ACT_BITS = 8
INT8_WEIGHT_BITS = 8

# Widths up to this many bits are computed in int64; wider ones in Python ints.
_INT64_SAFE_BITS = 62
# Integers of up to this many bits (sign included) are exact in float64.
_FLOAT64_EXACT_BITS = 53


def check_act_bits(act_bits):
    """Return `act_bits` as an int if it is a valid activation width, else raise."""
    if isinstance(act_bits, bool) or not isinstance(act_bits, (int, np.integer)):
        raise TypeError(f"Activation bits must be an integer from {MIN_ACT_BITS} to {MAX_ACT_BITS}, "
                        f"not {act_bits!r}")
    if not MIN_ACT_BITS <= act_bits <= MAX_ACT_BITS:
        raise ValueError(f"Activation bits must be from {MIN_ACT_BITS} to {MAX_ACT_BITS}, not {act_bits}")
    return int(act_bits)


def check_acc_bits(acc_bits):
    """Return `acc_bits` as an int if it is a valid accumulator width (2 or more), else raise."""
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or acc_bits < 2:
        raise ValueError(f"Accumulator bits must be an integer of at least 2, not {acc_bits!r}")
    return int(acc_bits)


def activation_scale(absmax, act_bits):
    """The per-tensor scale that maps ``absmax`` onto the largest positive `act_bits` integer.

    A tensor of zeros gets scale 1.0. Returned as a Python float of float32 value.
    """
    act_bits = check_act_bits(act_bits)
    absmax = float(np.float32(absmax))
    if not np.isfinite(absmax) or absmax < 0:
        raise ValueError(f"Activation range must be a finite non-negative number, not {absmax}")
    qmax = (1 << (act_bits - 1)) - 1
    return float(np.float32(absmax / qmax)) if absmax > 0 else 1.0


def quantize_activations(x, scale, act_bits):
    """Round float activations onto the signed `act_bits` grid of step `scale` (saturating). int64."""
    act_bits = check_act_bits(act_bits)
    qmax = (1 << (act_bits - 1)) - 1
    q = np.rint(np.asarray(x, dtype=np.float32).astype(np.float64) / np.float64(np.float32(scale)))
    return np.clip(q, -qmax, qmax).astype(np.int64)


def _max_bits_of(k, act_bits, weight_magnitude_max, bias_max):
    magnitude = int(k) * (1 << (act_bits - 1)) * int(weight_magnitude_max) + int(bias_max)
    return magnitude.bit_length() + 1


def pot_acc_bits(k, act_bits, bits, bias_max=0):
    """The exact accumulator width: every sum of `k` terms plus a bias of magnitude <= `bias_max`.

    The largest term magnitude is ``2**(A-1) << Emax`` (the most negative
    activation at exponent 0), so the width is that of ``k * 2**(A-1+Emax) + bias_max``
    plus a sign bit.
    """
    fmt = PotFormat(bits)
    return _max_bits_of(k, check_act_bits(act_bits), 1 << fmt.emax, bias_max)


def int8_acc_bits(k, act_bits, bias_max=0):
    """The exact accumulator width of the INT8 reference (largest product ``2**(A-1) * 128``)."""
    return _max_bits_of(k, check_act_bits(act_bits), 1 << (INT8_WEIGHT_BITS - 1), bias_max)


def pot_sum_bits(codes, bits, act_bits):
    """The exact width of every sum a column of `codes` (K, N) can make: the smallest two's-complement
    width that holds ``sum_k x_k * w_kn`` for every column ``n`` and every `act_bits` activation vector.

    Unlike `pot_acc_bits`, which assumes every code is the largest, this looks at the codes themselves;
    a layer's real weights are mostly small, so it is usually a few bits narrower. An accumulator of this
    width never wraps on these codes, whatever the activations.
    """
    return _sum_bits_of(PotFormat(bits).to_int(np.asarray(codes)), check_act_bits(act_bits))


def int8_sum_bits(weights, act_bits):
    """`pot_sum_bits` for INT8 weights (K, N)."""
    return _sum_bits_of(np.asarray(weights).astype(np.int64), check_act_bits(act_bits))


def _sum_bits_of(values, act_bits):
    values = np.asarray(values).astype(object)
    if values.ndim != 2:
        raise ValueError(f"Weights must be a (K, N) matrix, not of shape {values.shape}")
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    # Per column the largest sum takes x = hi on positive weights and lo on negative ones; the smallest
    # the other way round.
    largest = np.maximum(values * hi, values * lo).sum(axis=0) if values.size else np.zeros(1, object)
    smallest = np.minimum(values * hi, values * lo).sum(axis=0) if values.size else np.zeros(1, object)
    top = max([0, *(int(v) for v in largest)])
    bottom = min([0, *(int(v) for v in smallest)])
    return max(2, top.bit_length() + 1, (-bottom - 1).bit_length() + 1)


def _exact_int(values, width):
    """Cast an integer-valued array to int64 if `width` allows, else to Python ints."""
    if width <= _INT64_SAFE_BITS:
        return np.asarray(values).astype(np.int64)
    return np.vectorize(int, otypes=[object])(values) if np.size(values) else np.asarray(values, object)


def wrap(values, acc_bits):
    """Reduce integers to `acc_bits`-bit two's complement: ``((v + 2**(w-1)) mod 2**w) - 2**(w-1)``."""
    acc_bits = check_acc_bits(acc_bits)
    half = 1 << (acc_bits - 1)
    values = np.asarray(values)
    if values.dtype == object or acc_bits > _INT64_SAFE_BITS:
        out = (values.astype(object) + half) % (2 * half) - half
        return _exact_int(out, acc_bits)
    return ((values.astype(np.int64) + half) % (2 * half) - half).astype(np.int64)


def _check_activations(x, act_bits):
    x = np.asarray(x)
    if x.dtype.kind not in "iu":
        raise TypeError(f"Activations must be integers, not {x.dtype}")
    lo, hi = -(1 << (act_bits - 1)), (1 << (act_bits - 1)) - 1
    if x.size and (x.min() < lo or x.max() > hi):
        raise ValueError(f"Activation {int(x.min()) if x.min() < lo else int(x.max())} "
                         f"does not fit in {act_bits} signed bits ({lo}..{hi})")
    return x.astype(np.int64)


def pot_matmul(x, codes, bits, act_bits=16):
    """Exact ``sum_k t[..., k, n]`` for integer activations ``x`` (..., K) and codes (K, N).

    Where the exact width is at most 53 bits, one float64 matrix product of the
    activations and the codes' integer values is exact (every partial sum is an
    integer below 2**53) and fast. Wider sums are formed per exponent,
    ``sum_e (x @ S_e) << (Emax - e)`` where ``S_e`` holds the signs of the codes
    with exponent ``e``: each ``x @ S_e`` is exact in float64, the shifts and the
    final sum are integer.
    """
    fmt = PotFormat(bits)
    act_bits = check_act_bits(act_bits)
    x = _check_activations(x, act_bits)
    codes = fmt.check_codes(codes)
    if codes.ndim != 2 or x.shape[-1] != codes.shape[0]:
        raise ValueError(f"Activations of shape {x.shape} do not match codes of shape {codes.shape}")
    k = codes.shape[0]
    if k * (1 << (act_bits - 1)) >= 1 << 53:
        raise ValueError(f"K = {k} is too large for exact evaluation")
    xf = x.astype(np.float64)
    width = pot_acc_bits(k, act_bits, bits)
    if width <= _FLOAT64_EXACT_BITS:
        # Every product and partial sum is an integer below 2**53: one float64 product is exact.
        product = xf.reshape(-1, k) @ fmt.to_int(codes).astype(np.float64)       # one 2-D BLAS call
        return np.rint(product).astype(np.int64).reshape(x.shape[:-1] + (codes.shape[1],))
    sign, exponent, is_zero = fmt.decode(codes)
    signed = np.where(is_zero, 0.0, np.where(sign == 1, -1.0, 1.0))
    acc = _exact_int(np.zeros(x.shape[:-1] + (codes.shape[1],)), width)
    for e in np.unique(exponent[~is_zero]):
        partial = _exact_int((xf.reshape(-1, k) @ np.where(exponent == e, signed, 0.0))
                             .reshape(acc.shape), width)
        acc = acc + partial * (1 << (fmt.emax - int(e)))
    return acc


def int8_matmul(x, weights, act_bits=16):
    """Exact ``sum_k x[..., k] * w[k, n]`` for integer activations and int8 weights (K, N). int64."""
    act_bits = check_act_bits(act_bits)
    x = _check_activations(x, act_bits)
    weights = np.asarray(weights)
    if weights.dtype != np.int8:
        raise TypeError(f"INT8 weights must be an int8 array, not {weights.dtype}")
    if weights.ndim != 2 or x.shape[-1] != weights.shape[0]:
        raise ValueError(f"Activations of shape {x.shape} do not match weights of shape {weights.shape}")
    return x @ weights.astype(np.int64)


def pot_accumulate(x, codes, bias, bits, act_bits, acc_bits=None):
    """The accumulators of a PoT layer: ``wrap(bias + sum_k t_k, acc_bits)``, shape (..., N).

    `acc_bits` None means the exact width for this K and these biases (never wraps).
    """
    act_bits = check_act_bits(act_bits)
    bias = np.asarray(bias)
    bias_max = int(np.max(np.abs(bias.astype(object)))) if bias.size else 0
    exact = pot_acc_bits(np.shape(codes)[0], act_bits, bits, bias_max)
    acc = pot_matmul(x, codes, bits, act_bits) + _exact_int(bias, exact)
    return wrap(acc, exact if acc_bits is None else acc_bits)


def int8_accumulate(x, weights, bias, act_bits, acc_bits=None):
    """The accumulators of an INT8 layer: ``wrap(bias + x @ w, acc_bits)``, int64."""
    act_bits = check_act_bits(act_bits)
    bias = np.asarray(bias, dtype=np.int64)
    bias_max = int(np.abs(bias).max()) if bias.size else 0
    exact = int8_acc_bits(np.shape(weights)[0], act_bits, bias_max)
    if exact > _INT64_SAFE_BITS:
        raise ValueError(f"An INT8 layer needs {exact} accumulator bits; at most {_INT64_SAFE_BITS} supported")
    return wrap(int8_matmul(x, weights, act_bits) + bias, exact if acc_bits is None else acc_bits)


def pot_real_unit(scales, act_scale, bits):
    """The real value of one accumulator step per channel: ``s_n * 2**-Emax * act_scale`` (float64)."""
    emax = PotFormat(bits).emax
    return np.ldexp(np.asarray(scales, np.float32).astype(np.float64), -emax) * np.float64(np.float32(act_scale))


def quantize_bias(bias, unit):
    """Round a float bias onto the accumulator grid of step `unit` (per channel). Exact integers."""
    ratio = np.rint(np.asarray(bias, np.float32).astype(np.float64) / np.asarray(unit, np.float64))
    if not np.all(np.isfinite(ratio)):
        raise ValueError("Bias does not fit the accumulator grid (non-finite after scaling)")
    width = int(np.max(np.abs(ratio))).bit_length() + 1 if ratio.size else 1
    return _exact_int(ratio, width)


def dequantize(acc, unit):
    """Real values of accumulators: ``acc * unit`` per channel, float32."""
    return (np.asarray(acc).astype(np.float64) * np.asarray(unit, np.float64)).astype(np.float32)
