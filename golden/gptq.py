"""GPTQ onto the power-of-two grid: rounding that sees the layer's real inputs.

Nearest rounding (``pot-channel``) puts every weight as close as it can be on
its own. GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", 2023) instead makes the layer's *output*
on real text move as little as it can: input rows are rounded one at a time,
and the error each row makes is pushed onto the rows not yet rounded through
the inverse of the Hessian ``H = X^T X`` of the layer's inputs.

Here the grid is golden's PoT code. For each layer, in forward order:

1. Scales: the ones ``pot-channel`` searches on the float weight (with
   ``pot_scale``, its power-of-two variant), taken from
   :func:`golden.quantize.quantize` and then held fixed.
2. Inputs: ``X_q``, the layer's inputs in the model whose earlier layers are
   already quantized, and ``X_f``, its inputs in the float model, on the same
   calibration tokens.
3. GPTQ: rows are visited in order of decreasing ``H_kk`` ("act-order": the
   inputs with the most energy are rounded while the most rows are left to
   absorb their error; a stable sort, so reproducible). Each row is rounded to
   the nearest PoT level at the fixed scale (:func:`golden.quantize.round_to_pot`)
   and its error, divided by the diagonal of the upper Cholesky factor ``U`` of
   ``(H + damp)^-1``, is pushed onto the later rows along ``U``'s row. An input
   that is never non-zero gets ``H_kk = 1`` and a zero row.
4. Refinement: a few sweeps of exact coordinate descent over the rows (as
   QuantEase, Behdin et al. 2023) on the output error against the *float*
   model plus a ridge towards the float weight,
   ``||X_f W - X_q W_q||^2 + lam ||W - W_q||^2`` with ``lam`` the same
   dampening. Matching ``X_f W`` rather than ``X_q W`` (the asymmetric target
   of GPTAQ, Li et al. 2025) lets a layer undo the drift its quantized
   predecessors caused; the ridge keeps it from fitting the calibration text
   instead. For one row the error is a quadratic whose best PoT value is the
   level nearest its unconstrained minimum, so no step raises it; the channels
   are independent and move together.

On the default model (8192 calibration tokens) plain GPTQ leaves about 0.7 of
nearest rounding's 4-bit ΔCE, this method about 0.45; more calibration text
(``golden.eval --calib-tokens``) lowers it further.

The result is in golden's canonical form (largest magnitude of every channel
at exponent 0, see :mod:`golden.quantize`), so quantizing its dequantized
weights again with ``pot-channel`` gives back the same codes and scales. All
arithmetic is numpy float64 and deterministic: same model and tokens, same codes.
"""

import numpy as np

from .pot_format import DEFAULT_BITS, PotFormat
# _canonical is golden's one definition of the canonical form; GPTQ produces
# exponents at fixed scales and needs exactly that normalisation.
from .quantize import _canonical, check_weight, quantize, round_to_pot

__all__ = ["DAMP", "REFINE_SWEEPS", "gptq_pot", "gptq_layer"]

#: Dampening added to the diagonal of H, as a fraction of its mean diagonal (GPTQ's ``percdamp``);
#: also the weight of the refinement's ridge towards the float weights.
DAMP = 0.1
#: Coordinate-descent sweeps after the GPTQ pass.
REFINE_SWEEPS = 3
#: Calibration windows per forward pass while collecting a layer's inputs (bounds memory).
_WINDOWS_PER_CHUNK = 64
#: The float model's layer inputs are computed once and kept if they fit in this many bytes, else per layer.
_FLOAT_CACHE_BYTES = 512 << 20


def _matmul(x, w):
    """``x (..., K) @ w (K, N)`` as one 2-D BLAS call."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + (w.shape[1],))


class _Captured(Exception):
    """Stops a forward pass once the wanted layer's input has been seen."""


def _layer_input(model, weights, name, tokens):
    """The input (rows, K) of layer `name` of `model` whose earlier layers have the float `weights` given."""
    captured = []

    def linear(layer, x):
        if layer == name:
            captured.append(x)
            raise _Captured
        w = weights.get(layer)
        return _matmul(x, model.weight(layer) if w is None else w) + model.bias(layer)

    try:
        model.forward(tokens, linear=linear)
    except _Captured:
        x = captured[0]
        return x.reshape(-1, x.shape[-1]).astype(np.float64)
    raise AssertionError(f"layer {name!r} was never called")


def _float_inputs(model, chunks, names):
    """Per chunk, name -> the float model's input of every layer of `names` (float32), or None if too big."""
    rows = sum(int(np.prod(chunk.shape)) for chunk in chunks)
    width = sum(model.weight(name).shape[0] for name in names)
    if 4 * rows * width > _FLOAT_CACHE_BYTES:
        return None
    cache = []
    for chunk in chunks:
        inputs = {}

        def recording_linear(layer, x):
            if layer in names:
                inputs[layer] = x.reshape(-1, x.shape[-1]).astype(np.float32)
            return _matmul(x, model.weight(layer)) + model.bias(layer)

        model.forward(chunk, linear=recording_linear)
        cache.append(inputs)
    return cache


def _nearest(value, scales, bits):
    """The PoT value (float64) nearest each entry of `value` at channel `scales`."""
    exponent, is_zero = round_to_pot(np.abs(value) / scales, bits)
    return np.copysign(np.where(is_zero, 0.0, np.ldexp(1.0, -exponent)) * scales, value)


def gptq_layer(weight, hessian, cross=None, *, bits=DEFAULT_BITS, pot_scale=False, damp=DAMP, act_order=True,
               sweeps=REFINE_SWEEPS, name="weight"):
    """GPTQ rounding of one (K, N) weight onto the PoT grid, then coordinate-descent refinement.

    Parameters
    ----------
    weight : float array (K, N)
        Conv1D layout: row ``k`` multiplies input ``k``.
    hessian : float array (K, K)
        ``X^T X`` of the layer's inputs.
    cross : float array (K, N), optional
        ``X^T Y`` of the output to match, ``Y = X_f W``; default ``H W`` (match ``X W``).
    damp : float
        Added to the diagonal of H, as a fraction of its mean: GPTQ's dampening
        and the refinement's ridge towards `weight`.
    act_order : bool
        GPTQ rounds the inputs of largest ``H_kk`` first.
    sweeps : int
        Coordinate-descent sweeps after GPTQ (0: none).

    Returns
    -------
    PotWeights

    Raises
    ------
    ValueError
        For a weight that is not a finite 2-D float matrix, a Hessian or cross
        term of the wrong shape or not finite, a bad dampening, or a bit width outside 3..8.
    """
    fmt = PotFormat(bits)
    weight = check_weight(weight, name)
    k, n = weight.shape
    hessian = np.array(hessian, dtype=np.float64)
    if hessian.shape != (k, k) or not np.isfinite(hessian).all():
        raise ValueError(f"Hessian of {name} must be a finite ({k}, {k}) matrix, not of shape {hessian.shape}")
    if cross is not None:
        cross = np.asarray(cross, dtype=np.float64)
        if cross.shape != (k, n) or not np.isfinite(cross).all():
            raise ValueError(f"Cross term of {name} must be a finite ({k}, {n}) matrix, not of shape {cross.shape}")
    if isinstance(damp, bool) or not isinstance(damp, (int, float)) or not damp > 0:
        raise ValueError(f"Dampening must be a positive fraction, not {damp!r}")
    if isinstance(sweeps, bool) or not isinstance(sweeps, (int, np.integer)) or sweeps < 0:
        raise ValueError(f"Refinement sweeps must be a non-negative integer, not {sweeps!r}")
    scales = quantize(weight, fmt.bits, "pot-channel", pot_scale, name=name).scales.astype(np.float64)

    w = weight.astype(np.float64)
    dead = np.diag(hessian) <= 0
    hessian[dead, dead] = 1.0
    w[dead] = 0.0
    cross = hessian @ w if cross is None else np.where(dead[:, None], 0.0, cross)

    # GPTQ, in act-order; U is the upper Cholesky factor of the dampened inverse Hessian.
    order = np.argsort(-np.diag(hessian), kind="stable") if act_order else np.arange(k)
    dampened = hessian[np.ix_(order, order)] + damp * np.mean(np.diag(hessian)) * np.eye(k)
    u = np.linalg.cholesky(np.linalg.inv(dampened)).T
    work, quantized = w[order], np.zeros((k, n))
    for i in range(k):
        quantized[i] = _nearest(work[i], scales, fmt.bits)
        work[i + 1:] -= np.outer(u[i, i + 1:], (work[i] - quantized[i]) / u[i, i])
    back = np.argsort(order, kind="stable")
    quantized = quantized[back]

    # Coordinate descent on ||Y - X Q||^2 + lam ||W - Q||^2 = tr(Q^T H' Q) - 2 tr(Q^T C') + const,
    # H' = H + lam I, C' = C + lam W; half its gradient is H' Q - C'.
    ridge = damp * np.mean(np.diag(hessian))
    hessian = hessian + ridge * np.eye(k)
    cross = cross + ridge * w
    gradient = hessian @ quantized - cross
    for _ in range(sweeps):
        for i in range(k):
            best = _nearest(quantized[i] - gradient[i] / hessian[i, i], scales, fmt.bits)
            step = best - quantized[i]
            if step.any():
                gradient += np.outer(hessian[:, i], step)
                quantized[i] = best

    exponent, is_zero = round_to_pot(np.abs(quantized) / scales, fmt.bits)   # exact: the values are levels
    return _canonical(quantized, scales, exponent, is_zero, fmt, per_channel=True)


def gptq_pot(model, *, bits=DEFAULT_BITS, pot_scale=False, calib_tokens, names=None, damp=DAMP, act_order=True,
             sweeps=REFINE_SWEEPS, float_target=True):
    """GPTQ onto the PoT grid of the linear layers `names` of `model` (all, by default): name -> PotWeights.

    The `MODEL_METHODS` entry ``"gptq-pot"`` of :mod:`golden.integer_model`.

    Parameters
    ----------
    model : golden.gpt2.GPT2
    calib_tokens : int array (T,) or (B, T)
        Calibration text (by convention windows of the model's train split).
    names : list of str, optional
        Layers to quantize; they are processed in the model's forward order,
        and the others stay float.
    damp, act_order, sweeps
        See :func:`gptq_layer`.
    float_target : bool
        Match the float model's layer outputs ``X_f W`` (default) rather than
        ``X_q W`` (plain GPTQ).

    Raises
    ------
    ValueError
        For an unknown layer name, calibration tokens the model cannot take, or
        a parameter out of range.
    """
    wanted = set(names or model.linear_names)
    unknown = wanted - set(model.linear_names)
    if unknown:
        raise ValueError(f"{sorted(unknown)[0]!r} is not a linear layer of the model")
    tokens = np.asarray(calib_tokens)
    chunks = [tokens] if tokens.ndim < 2 else [tokens[i:i + _WINDOWS_PER_CHUNK]
                                                for i in range(0, len(tokens), _WINDOWS_PER_CHUNK)]
    float_inputs = _float_inputs(model, chunks, wanted) if float_target else None
    weights, dequantized = {}, {}
    for name in model.linear_names:
        if name not in wanted:
            continue
        w = model.weight(name).astype(np.float64)
        hessian, cross = 0.0, 0.0
        for index, chunk in enumerate(chunks):
            x_q = _layer_input(model, dequantized, name, chunk)
            if not float_target:
                x_f = x_q
            elif float_inputs is not None:
                x_f = float_inputs[index][name].astype(np.float64)
            else:
                x_f = _layer_input(model, {}, name, chunk)
            hessian = hessian + x_q.T @ x_q
            cross = cross + x_q.T @ (x_f @ w)
        weights[name] = gptq_layer(model.weight(name), hessian, cross, bits=bits, pot_scale=pot_scale, damp=damp,
                                   act_order=act_order, sweeps=sweeps, name=name)
        dequantized[name] = weights[name].dequantize()
    return weights
