"""The MLP activations of a Hugging Face GPT-2, in numpy.

transformers builds GPT-2's MLP activation from ``config.activation_function``
through its ``ACT2FN`` table. Every entry of that table that has no learned
parameter is here, computing what transformers' module computes, elementwise,
in the dtype of the input (float32 in the model). Two entries of ``ACT2FN``
carry parameters of their own that GPT-2 checkpoints store per block
(``prelu``'s slope, ``xielu``'s alpha/beta); they are in :data:`REFUSED` with
the reason, and a checkpoint asking for them is refused in one line.

numpy has no erf; :func:`erf` is a Chebyshev fit accurate to 1.2e-7.
"""

import math

import numpy as np

__all__ = ["ACTIVATIONS", "REFUSED", "erf", "gelu", "gelu_new"]


def erf(x):
    """The error function, elementwise, in the dtype of ``x`` (float32 or float64).

    numpy has no erf. This is the complementary error function of Numerical
    Recipes (2nd ed., ``erfcc``, a Chebyshev fit), whose relative error in
    ``erfc`` is below 1.2e-7 everywhere, so ``|erf(x) - math.erf(x)| < 1.2e-7``
    in float64 (plus rounding in float32).
    """
    x = np.asarray(x)
    flat = x.astype(x.dtype if x.dtype in (np.float32, np.float64) else np.float64).reshape(-1)
    return ((1 - _erfc_abs(flat)) * np.sign(flat)).reshape(x.shape)


#: Numerical Recipes' ``erfcc`` polynomial in t = 1 / (1 + |x| / 2), highest power first.
_ERFC_COEFFS = (0.17087277, -0.82215223, 1.48851587, -1.13520398, 0.27886807,
                -0.18628806, 0.09678418, 0.37409196, 1.00002368, -1.26551223)


def _erfc_abs(x):
    """erfc(|x|) = t exp(-x^2 + P(t)), in the dtype of ``x``; accurate to 1.2e-7 relative."""
    z2 = x * x
    t = np.abs(x)
    t *= 0.5
    t += 1
    np.reciprocal(t, out=t)
    poly = np.full_like(t, _ERFC_COEFFS[0])
    for c in _ERFC_COEFFS[1:]:  # Horner, in place: this runs on every MLP activation
        poly *= t
        poly += x.dtype.type(c)
    poly -= z2
    np.exp(poly, out=poly)
    poly *= t
    return poly


def gelu(x):
    """Exact GELU, ``x * Phi(x) = 0.5 x (1 + erf(x / sqrt 2))``: torch's ``nn.GELU()``, nanoGPT's.

    Written as ``0.5 x erfc(-x / sqrt 2)`` so that the negative tail keeps its
    relative accuracy. Runs in blocks that stay in cache (about 1.6x faster
    than whole-array passes on an MLP activation).
    """
    x = np.asarray(x)
    flat, out = np.ascontiguousarray(x).reshape(-1), np.empty(x.size, x.dtype)
    for start in range(0, x.size, 1 << 16):
        block = flat[start:start + (1 << 16)]
        half_erfc = _erfc_abs(block * x.dtype.type(1 / math.sqrt(2)))
        half_erfc *= 0.5                                                  # 0.5 erfc(|x| / sqrt 2)
        np.subtract(1, half_erfc, out=half_erfc, where=block >= 0)       # Phi(x)
        np.multiply(block, half_erfc, out=out[start:start + block.size])
    return out.reshape(x.shape)


def gelu_new(x):
    """The tanh approximation of GELU used by GPT-2 (Hugging Face ``gelu_new``)."""
    x = np.asarray(x)
    c = x.dtype.type(math.sqrt(2 / math.pi))
    return 0.5 * x * (1 + np.tanh(c * (x + x.dtype.type(0.044715) * (x * x * x))))


def _gelu_fast(x):
    """transformers' ``FastGELUActivation``: the tanh form with its rounded constant."""
    t = x.dtype.type
    return 0.5 * x * (1 + np.tanh(x * t(0.7978845608) * (1 + t(0.044715) * x * x)))


def _sigmoid(x):
    """``1 / (1 + exp(-x))`` without overflow warnings for large ``|x|``."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


def _softplus(x):
    """torch's ``softplus`` (beta 1, threshold 20): ``log(1 + exp(x))``, ``x`` itself above 20."""
    return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, 20)))).astype(x.dtype, copy=False)


def _laplace(x, mu=0.707107, sigma=0.282095):
    """transformers' ``LaplaceActivation``: ``0.5 (1 + erf((x - mu) / (sigma sqrt 2)))``."""
    t = x.dtype.type
    return t(0.5) * (1 + erf((x - t(mu)) / t(sigma * math.sqrt(2.0))))


def _relu(x):
    return np.maximum(x, x.dtype.type(0))


#: ``activation_function`` (a key of transformers' ``ACT2FN``) -> numpy function of the same values.
ACTIVATIONS = {
    "gelu_new": gelu_new,
    "gelu": gelu,
    "gelu_python": gelu,
    "gelu_10": lambda x: np.clip(gelu(x), -10, 10),
    "gelu_fast": _gelu_fast,
    "gelu_pytorch_tanh": gelu_new,
    "gelu_python_tanh": gelu_new,
    "gelu_accurate": gelu_new,
    "quick_gelu": lambda x: x * _sigmoid(x * x.dtype.type(1.702)),
    "hardswish": lambda x: x * np.clip(x + 3, 0, 6) / x.dtype.type(6),
    "laplace": _laplace,
    "leaky_relu": lambda x: np.where(x >= 0, x, x * x.dtype.type(0.01)),
    "linear": lambda x: x,
    "mish": lambda x: x * np.tanh(_softplus(x)),
    "relu": _relu,
    "relu2": lambda x: np.square(_relu(x)),
    "relu6": lambda x: np.clip(x, 0, 6),
    "sigmoid": _sigmoid,
    "silu": lambda x: x * _sigmoid(x),
    "swish": lambda x: x * _sigmoid(x),
    "sqrtsoftplus": lambda x: np.sqrt(_softplus(x)),
    "tanh": np.tanh,
}

#: Activations transformers accepts but this model refuses, with the reason.
REFUSED = {
    "prelu": "its learned slope (mlp.act.weight) is a parameter golden's GPT-2 does not have",
    "xielu": "its learned alpha_p/alpha_n/beta/eps are parameters golden's GPT-2 does not have",
}
