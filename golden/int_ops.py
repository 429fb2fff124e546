"""Integer primitives of the whole-forward integer GPT-2: the operations the FPGA's units compute.

Every function here takes and returns integer numpy arrays (int64 unless
stated) and is a pure function of integers: no result depends on floating
point. Each one is the specification of one hardware unit of the forward
(issue 17): the requantiser behind the PoT array, the layer norm unit, the
softmax-and-values unit, the GELU table, the sampler and its generator.

Conventions, binding on every implementation:

Rounding
    ``round_shift(x, s) = floor((x + 2**(s-1)) / 2**s)`` for ``s >= 1`` and
    ``x`` for ``s = 0``: round half up (towards +inf), i.e. add half an output
    step and shift right arithmetically. It is the only rounding in the
    forward.
Saturation
    ``saturate(x, b)`` clips to the full ``b``-bit two's-complement range
    ``[-2**(b-1), 2**(b-1) - 1]``; unsigned results are never saturated (their
    width follows from the inputs').
Reciprocals
    One per row, never per element: ``reciprocal(v, bits)`` is a restoring
    divide of ``2**sh`` by ``v`` with ``sh = bit_length(v) + bits - 2``, so the
    quotient ``R = floor(2**sh / v)`` lies in ``[2**(bits-2), 2**(bits-1)]``:
    a ``bits``-bit unsigned number with ``bits - 2`` significant bits whatever
    the size of ``v``, and ``x / v ~ (x * R) >> sh``.
Square roots
    ``isqrt(v) = floor(sqrt(v))`` exactly (``math.isqrt``), for ``0 <= v < 2**62``.

The widths of intermediate results are stated per function; callers (the
compiler, :mod:`golden.compile`) check at compile time that the declared
widths hold every value the model can produce.
"""

import numpy as np

__all__ = [
    "XORSHIFT_SEED_MAX",
    "round_shift", "saturate", "requantize", "bit_length", "isqrt", "reciprocal",
    "layer_norm", "exp2_table", "exp2", "attention", "gelu_lookup",
    "xorshift32", "seed_state", "sample",
]

#: The largest sampler seed: the generator's state is ``seed + 1``, which must be a nonzero 32-bit word.
XORSHIFT_SEED_MAX = (1 << 32) - 2
_MASK32 = (1 << 32) - 1
_POWERS_OF_TWO = np.int64(1) << np.arange(63, dtype=np.int64)


def round_shift(x, shift):
    """``floor((x + 2**(shift-1)) / 2**shift)``: divide by ``2**shift``, round half up. int64.

    Parameters
    ----------
    x : int array
        Any int64 values with ``|x| + 2**(shift-1) < 2**63``.
    shift : int or int array (broadcast against ``x``)
        From 0 (``x`` unchanged) to 62.
    """
    x, shift = _int64(x), _int64(shift)
    return (x + ((np.int64(1) << shift) >> 1)) >> shift


def _int64(x):
    return x if type(x) is np.ndarray and x.dtype == np.int64 else np.asarray(x, np.int64)


def saturate(x, bits):
    """Clip to ``bits``-bit two's complement, ``[-2**(bits-1), 2**(bits-1) - 1]``. int64."""
    return np.minimum(np.maximum(_int64(x), -(1 << (bits - 1))), (1 << (bits - 1)) - 1)


def requantize(acc, mult, shift, out_bits):
    """``saturate(round_shift(acc * mult, shift), out_bits)``: a rescale by ``mult / 2**shift``.

    ``mult`` (unsigned, the compiler's ``mult_bits`` wide) and ``shift`` may be
    per channel (broadcast along the last axis). The product ``acc * mult`` is
    exact: the compiler checks that it stays below ``2**62``.
    """
    return saturate(round_shift(_int64(acc) * _int64(mult), shift), out_bits)


def bit_length(v):
    """``int.bit_length`` of each non-negative int64 (0 for 0): how many of 1, 2, 4, .. 2**62 are <= v. int64."""
    return np.searchsorted(_POWERS_OF_TWO, np.asarray(v, np.int64), side="right").astype(np.int64)


def isqrt(v):
    """``floor(sqrt(v))`` of each int64 ``0 <= v < 2**62``, exactly (``math.isqrt`` semantics). int64.

    A float64 square root seeds the result and integer compares correct it by
    one either way, so the answer is the integer square root whatever the
    float rounding (the hardware computes it bit-serially: 31 steps of a
    restoring square root for a 62-bit radicand).
    """
    v = np.asarray(v, np.int64)
    if v.size and (v.min() < 0 or v.max() >= 1 << 62):
        raise ValueError(f"isqrt takes 0 <= v < 2**62, not {int(v.min()) if v.min() < 0 else int(v.max())}")
    r = np.sqrt(v.astype(np.float64)).astype(np.int64)
    r -= r * r > v
    r += (r + 1) * (r + 1) <= v
    return r


def reciprocal(v, bits):
    """The normalised reciprocal of each positive int64 ``v``: ``(R, sh)`` with ``R = floor(2**sh / v)``.

    ``sh = bit_length(v) + bits - 2``, so ``2**(bits-2) <= R <= 2**(bits-1)``
    (``bits`` unsigned bits) and ``x / v`` is ``(x * R) >> sh`` to a relative
    error below ``2**-(bits-2)``. ``v`` must be below ``2**(63 - bits)``.
    """
    v = np.asarray(v, np.int64)
    sh = bit_length(v) + (bits - 2)
    return (np.int64(1) << sh) // v, sh


def layer_norm(x, gamma, beta, *, gamma_shift, eps, frac_bits, inv_bits, out_bits):
    """GPT-2's layer norm over the last axis of an integer residual, to ``out_bits`` activations.

    With ``d`` the row length, in exact integers per row (I-BERT's layer norm):

    - ``S1 = sum x``, ``S2 = sum x**2`` (one pass);
    - ``D = d * S2 - S1**2 + eps`` (``d**2`` times the variance plus epsilon, ``>= eps >= 1``);
    - ``r = isqrt(D)`` and one reciprocal ``(R, sh) = reciprocal(r, inv_bits)``;

    then per element two multiplies:

    - ``n = round_shift((d * x - S1) * R, sh - frac_bits)``: the normalised
      value ``(x - mean) / std`` with ``frac_bits`` fraction bits
      (``|n| <= sqrt(d) * 2**frac_bits``);
    - ``y = saturate(round_shift(n * gamma + beta, gamma_shift), out_bits)``.

    ``gamma`` and ``beta`` (per channel, int64) are the compiled affine
    weights with the output scale folded in: ``gamma = round(g / s_out *
    2**(gamma_shift - frac_bits))``, ``beta = round(b / s_out * 2**gamma_shift)``.
    ``frac_bits <= inv_bits - 1`` keeps ``sh - frac_bits >= 0``.

    Widths, for a ``w``-bit residual: ``S1`` ``w + log2 d``, ``S2`` and ``D``
    ``2w + 2 log2 d`` bits (below 2**62: checked by the compiler), ``d*x - S1``
    ``w + log2 d + 1`` signed, ``R`` ``inv_bits`` unsigned.
    """
    x = np.asarray(x, np.int64)
    d = x.shape[-1]
    s1 = x.sum(axis=-1, keepdims=True)
    s2 = (x * x).sum(axis=-1, keepdims=True)
    inv, sh = reciprocal(isqrt(d * s2 - s1 * s1 + eps), inv_bits)
    n = round_shift((d * x - s1) * inv, sh - frac_bits)
    return saturate(round_shift(n * gamma + beta, gamma_shift), out_bits)


def exp2_table(frac_bits, exp_bits):
    """The ``2**frac_bits`` entries ``round(2**(exp_bits-1) * 2**(-f / 2**frac_bits))``: base-2 exp of a fraction.

    Built once at compile time (float, then stored as integers); entry 0 is
    ``2**(exp_bits-1)`` and every entry fits ``exp_bits`` unsigned bits.
    """
    f = np.arange(1 << frac_bits, dtype=np.float64)
    return np.floor(np.exp2(exp_bits - 1 - f / (1 << frac_bits)) + 0.5).astype(np.int64)


def exp2(z, table, frac_bits):
    """``2**(exp_bits-1) * 2**(-z / 2**frac_bits)`` for ``z >= 0``: ``table[z mod 2**f] >> (z >> f)``. int64.

    The integer part of ``z`` is a right shift, the fraction a table lookup;
    shifts of 63 or more give 0 (the table entries are far below 2**62).
    """
    z = np.asarray(z, np.int64)
    return table[z & ((1 << frac_bits) - 1)] >> np.minimum(z >> frac_bits, 62)


def attention(q, k, v, *, start, score_mult, score_shift, table, exp_frac_bits, recip_bits, avg_frac_bits,
              out_mult, out_shift, out_bits, matmul=None):
    """Causal softmax attention of integer queries on an integer KV cache, with deferred normalisation.

    Parameters
    ----------
    q : int array (..., H, T, hd)
        Queries of the ``T`` new positions ``start .. start+T-1`` (``act_bits`` signed).
    k, v : int array (..., H, S, hd)
        Keys and values of positions ``0 .. S-1`` (the cache, ``S >= start + T``).

    For query ``i`` (position ``start + i``) and key ``j <= start + i``:

    - ``s_ij = sum q_i * k_j`` (exact, ``2 act_bits + log2 hd`` bits);
    - ``z_ij = round_shift((max_j s_ij - s_ij) * score_mult, score_shift)``,
      the logit gap in base-2 units with ``exp_frac_bits`` fraction bits (the
      ``1/sqrt(hd)``, both scales and ``log2 e`` are folded into ``score_mult``);
    - ``e_ij = exp2(z_ij)``: ``exp_bits`` unsigned, the largest exactly ``2**(exp_bits-1)``;
    - ``E_i = sum_j e_ij`` and ``acc_i = sum_j e_ij * v_j``, unnormalised;
    - one reciprocal per row and head: ``(R, sh) = reciprocal(E_i, recip_bits)``;
    - ``a_i = round_shift(acc_i * R, sh - avg_frac_bits)``: the weighted mean of
      ``v`` with ``avg_frac_bits`` fraction bits (``|a| <= 2**(act_bits-1+avg_frac_bits)``);
    - ``y_i = requantize(a_i, out_mult, out_shift, out_bits)``, onto the output scale.

    ``matmul(x, w, kind)`` (``kind`` "scores" or "values") may replace the
    int64 matrix products by an exact faster one; it must return ``x @ w`` exactly.

    Returns int64 (..., H, T, hd).
    """
    matmul = matmul or (lambda x, w, kind: x @ w)
    q, k, v = (np.asarray(a, np.int64) for a in (q, k, v))
    t, s = q.shape[-2], k.shape[-2]
    scores = matmul(q, np.swapaxes(k, -1, -2), "scores")                  # (..., H, T, S)
    allowed = np.arange(s)[None, :] <= start + np.arange(t)[:, None]       # (T, S), causal
    top = np.where(allowed, scores, np.iinfo(np.int64).min).max(axis=-1, keepdims=True)
    z = round_shift((top - scores) * score_mult, score_shift)
    e = np.where(allowed, exp2(np.where(allowed, z, 0), table, exp_frac_bits), 0)
    total = e.sum(axis=-1, keepdims=True)
    inv, sh = reciprocal(total, recip_bits)
    mean = round_shift(matmul(e, v, "values") * inv, sh - avg_frac_bits)
    return requantize(mean, out_mult, out_shift, out_bits)


def gelu_lookup(x, table, in_bits):
    """``table[x + 2**(in_bits-1)]``: GELU of a signed ``in_bits`` activation from a ``2**in_bits``-entry table."""
    return table[np.asarray(x, np.int64) + (1 << (in_bits - 1))]


def xorshift32(state):
    """One step of Marsaglia's xorshift32 (shifts 13, 17, 5) on a nonzero 32-bit state: the next state."""
    state ^= (state << 13) & _MASK32
    state ^= state >> 17
    state ^= (state << 5) & _MASK32
    return state


def seed_state(seed):
    """The generator's first state for a seed ``0 <= seed <= 2**32 - 2``: ``seed + 1`` (never 0)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= XORSHIFT_SEED_MAX:
        raise ValueError(f"Seed must be an integer from 0 to {XORSHIFT_SEED_MAX}, not {seed!r}")
    return int(seed) + 1


def sample(logits, state, *, inv_temperature, top_k, logit_mult, logit_shift, table, exp_frac_bits):
    """The next token from integer logits, and the generator's next state.

    Parameters
    ----------
    logits : int array (V,)
        The head's ``logit_bits`` signed logits (one common scale).
    state : int
        The xorshift32 state (nonzero, 32 bits).
    inv_temperature : int
        ``round(256 / T)`` (Q8.8, 1 .. 65535); 0 means greedy.
    top_k : int or None
        Sample among the ``top_k`` largest logits (ties: lower index first); None: all.
    logit_mult, logit_shift : int
        Compiled: one logit step times ``log2 e * 2**exp_frac_bits`` as ``logit_mult / 2**logit_shift``.

    Greedy (``inv_temperature == 0``) returns the first index of the largest
    logit and leaves the state unchanged. Otherwise, with ``m`` the largest
    logit: ``z_v = round_shift((m - l_v) * logit_mult * inv_temperature,
    logit_shift + 8)``, ``w_v = exp2(z_v)`` (0 outside the top k), ``W = sum w``
    (below 2**32), the state steps once, ``u`` = the new state, ``r = (u * W)
    >> 32`` (uniform in ``[0, W)``), and the token is the first ``v`` whose
    running sum ``w_0 + .. + w_v`` exceeds ``r``.
    """
    logits = np.asarray(logits, np.int64)
    if inv_temperature == 0:
        return int(np.argmax(logits)), state
    z = round_shift((logits.max() - logits) * (int(logit_mult) * int(inv_temperature)), int(logit_shift) + 8)
    weights = exp2(z, table, exp_frac_bits)
    if top_k is not None and top_k < logits.size:
        order = np.lexsort((np.arange(logits.size), -logits))             # by logit descending, index ascending
        weights[order[top_k:]] = 0
    running = np.cumsum(weights)
    state = xorshift32(state)
    r = (state * int(running[-1])) >> 32
    return int(np.searchsorted(running, r, side="right")), state

