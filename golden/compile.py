"""Compiling a float GPT-2 into the integer forward: every constant and the order of the operations.

`compile_model` takes a float `GPT2`, its quantized linear weights (or a
method to quantize them) and calibration text, and returns a `CompiledModel`:
the one artefact the numpy integer forward (:mod:`golden.int_forward`) runs and
the hardware loads (`golden.export --compiled` writes it). After compilation
nothing is floating point: the artefact holds integer arrays and a program.

Formats (:class:`IntFormats`, every width a parameter; the defaults are the
design point of the iCE40UP5K / ECP5 forward):

- the residual stream: ``res_bits`` signed (16), one scale for the whole model;
- every activation the PoT array, the KV cache, the GELU table and the
  attention unit see: ``act_bits`` signed (8), one static scale per tensor (q,
  k and v of a layer have their own);
- linear layers: PoT codes, integer biases on the accumulator grid, exact
  accumulators, then per output channel a requantiser ``(mult, shift)`` with
  ``mult`` a ``mult_bits`` unsigned mantissa, onto the next tensor's scale
  (``act_bits`` saturated) or onto the residual's (added, ``res_bits`` saturated);
- embeddings and head: tables of ``table_bits`` signed integers
  (``tables="int"``) or PoT codes (``tables="pot"``) with a scale per row
  (token or position); lookup is a per-row requantiser into the residual. The
  head has its own format (``head``, ``head_bits``): it runs on the PoT array
  like a linear layer (``head="pot"``) or on integer multipliers, and a
  per-row requantiser gives ``logit_bits`` logits. A tied head whose format is
  the embeddings' shares their table; otherwise the head has its own;
- layer norm, attention, GELU and sampling: :mod:`golden.int_ops`.

Scales are static, calibrated on the calibration text by a float forward with
the PoT linear weights: each tensor's largest magnitude (the residual's with
``RESIDUAL_HEADROOM``) maps to the largest code. Float is used here and only
here; its results are rounded into the integers the artefact holds.

Compilation refuses, with `CompileError` naming the constant and its value, a
checkpoint whose integer forward would not fit a declared width: a
requantiser ratio that needs more than ``mult_bits`` (a left shift), a layer
norm gain beyond ``ln_gamma_bits``, an accumulator whose product with its
multiplier leaves 62 bits, and so on.
"""

import math
from dataclasses import asdict, dataclass, fields

import numpy as np

from .datapath import check_act_bits, pot_acc_bits
from .gpt2 import ACTIVATIONS, GPT2Config
from .int_ops import exp2_table
from .integer_model import quantize_weights, with_quantized_weights
from .pot_format import PotFormat, check_bits
from .quantize import quantize

__all__ = ["RESIDUAL_HEADROOM", "TABLE_KINDS", "IntFormats", "CompiledModel", "CompileError", "compile_model",
           "compile_checkpoint", "parse_int_formats",
           "program_of", "multiplier"]

#: The residual scale leaves this factor above the largest calibrated residual before saturation.
RESIDUAL_HEADROOM = 2.0
#: Embedding / head formats: plain signed integers with a per-row scale, or PoT codes with a per-row scale.
TABLE_KINDS = ("int", "pot")
_MAX_PRODUCT_BITS = 62


class CompileError(ValueError):
    """A checkpoint whose integer forward would overflow a declared width; the message names it."""


@dataclass(frozen=True)
class IntFormats:
    """The widths of the integer forward; see the module docstring and :mod:`golden.int_ops`.

    Parameters
    ----------
    act_bits : int
        Activations into the PoT array, q / k / v (the KV cache), attention
        output, GELU input and output: signed.
    res_bits : int
        The residual stream: signed.
    mult_bits : int
        Requantiser mantissas (unsigned, normalised to ``[2**(m-1), 2**m)``).
    ln_frac_bits, ln_inv_bits, ln_gamma_bits : int
        Layer norm: fraction bits of the normalised value, width of the
        per-row reciprocal of the standard deviation, width of the gains.
    exp_frac_bits, exp_bits : int
        Softmax and sampler: the base-2 exp table has ``2**exp_frac_bits``
        entries of ``exp_bits`` unsigned bits.
    recip_bits : int
        The per-row reciprocal of the softmax sum.
    avg_frac_bits : int
        Fraction bits of the attention's weighted mean of values.
    logit_bits : int
        The head's logits: signed.
    tables : "int" or "pot"
        Embedding tables (wte, wpe) as signed integers or as PoT codes.
    table_bits : int
        Their width (PoT code width for "pot", 3..8).
    head, head_bits : str, int
        The same for the head's table.
    """

    act_bits: int = 8
    res_bits: int = 16
    mult_bits: int = 16
    ln_frac_bits: int = 10
    ln_inv_bits: int = 16
    ln_gamma_bits: int = 16
    exp_frac_bits: int = 8
    exp_bits: int = 16
    recip_bits: int = 16
    avg_frac_bits: int = 8
    logit_bits: int = 16
    tables: str = "int"
    table_bits: int = 8
    head: str = "int"
    head_bits: int = 8

    def __post_init__(self):
        check_act_bits(self.act_bits)
        limits = {"res_bits": (4, 24), "mult_bits": (2, 24), "ln_frac_bits": (1, 20), "ln_inv_bits": (4, 24),
                  "ln_gamma_bits": (4, 24), "exp_frac_bits": (1, 12), "exp_bits": (4, 24),
                  "recip_bits": (4, 24), "avg_frac_bits": (0, 16), "logit_bits": (4, 32), "table_bits": (2, 16),
                  "head_bits": (2, 16)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
        if self.ln_frac_bits > self.ln_inv_bits - 1:
            raise ValueError(f"ln_frac_bits must be at most ln_inv_bits - 1 = {self.ln_inv_bits - 1}, "
                             f"not {self.ln_frac_bits}")
        for kind, bits in (("tables", "table_bits"), ("head", "head_bits")):
            if getattr(self, kind) not in TABLE_KINDS:
                raise ValueError(f"{kind} must be one of {', '.join(map(repr, TABLE_KINDS))}, "
                                 f"not {getattr(self, kind)!r}")
            if getattr(self, kind) == "pot":
                check_bits(getattr(self, bits))


def parse_int_formats(items):
    """``["exp_frac_bits=6", ...]`` (a command line's ``--int-format``) as a dict of IntFormats overrides.

    Raises ValueError naming an unknown field or a value that is not an integer
    (the format fields ``tables`` and ``head`` take their names).
    """
    overrides = {}
    known = {f.name: f.type for f in fields(IntFormats)}
    for item in items or ():
        name, _, value = item.partition("=")
        if name not in known or not value:
            raise ValueError(f"--int-format {item!r}: give NAME=VALUE with NAME one of {', '.join(known)}")
        if name in ("tables", "head"):
            overrides[name] = value
            continue
        try:
            overrides[name] = int(value)
        except ValueError:
            raise ValueError(f"--int-format {item!r}: {name} takes an integer") from None
    IntFormats(**overrides)                                   # range checks, one line each
    return overrides


@dataclass
class CompiledModel:
    """Everything the integer forward needs, as integers, and the order of its operations.

    Attributes
    ----------
    config : GPT2Config
        The model's shape.
    formats : IntFormats
    bits : int
        PoT code width of the linear layers.
    tensors : dict of str to integer ndarray
        Every constant, by name (see :func:`program_of` for who reads which).
    program : list of dict
        The operations of one forward, in order (``{"op": ..., "name": ...}``).
    scales : dict of str to float
        The real value of one step of the residual and of the logits: not used
        by the forward, only to score its logits (``golden.eval``) and to read them.
    """

    config: GPT2Config
    formats: IntFormats
    bits: int
    tensors: dict
    program: list
    scales: dict

    def describe(self):
        """JSON-ready metadata: config, formats, bits, program, scales (the tensors go in an image)."""
        return {"config": asdict(self.config), "formats": asdict(self.formats), "bits": self.bits,
                "program": self.program, "scales": self.scales}

    @classmethod
    def from_description(cls, description, tensors):
        config = GPT2Config(**description["config"])
        known = {f.name for f in fields(IntFormats)}
        formats = IntFormats(**{k: v for k, v in description["formats"].items() if k in known})
        return cls(config, formats, int(description["bits"]), dict(tensors), list(description["program"]),
                   dict(description["scales"]))


def program_of(config, head_table="wte.table"):
    """The operations of GPT-2's forward on the integer registers ``x`` (residual) and ``a`` (activations).

    ``embed``: x = wte[token] + wpe[position] (per-row requantisers, saturated to res_bits).
    ``layer_norm`` name: a = int_ops.layer_norm(x, name.gamma, name.beta, ...).
    ``linear`` name, to "act": a = requantize(acc(a), name.mult, name.shift, act_bits).
    ``linear`` name, to "residual": x = saturate(x + requantize(acc(a), ...), res_bits).
    ``attention`` name: a (q | k | v) appends k, v to the layer's KV cache, a = int_ops.attention(...).
    ``gelu`` name: a = name.table[a + 2**(act_bits-1)].
    ``head`` (table: "wte.table" or "head.table"): logits = requantize(acc(a) with that table, head.mult,
    head.shift, logit_bits).
    """
    program = [{"op": "embed"}]
    for i in range(config.n_layer):
        h = f"h.{i}."
        program += [{"op": "layer_norm", "name": h + "ln_1"},
                    {"op": "linear", "name": h + "attn.c_attn", "to": "act"},
                    {"op": "attention", "name": h + "attn", "layer": i},
                    {"op": "linear", "name": h + "attn.c_proj", "to": "residual"},
                    {"op": "layer_norm", "name": h + "ln_2"},
                    {"op": "linear", "name": h + "mlp.c_fc", "to": "act"},
                    {"op": "gelu", "name": h + "mlp"},
                    {"op": "linear", "name": h + "mlp.c_proj", "to": "residual"}]
    return program + [{"op": "layer_norm", "name": "ln_f"}, {"op": "head", "table": head_table}]


def multiplier(ratio, mult_bits, what):
    """``(mult, shift)`` int64 arrays with ``mult / 2**shift`` the nearest to each positive ``ratio``.

    ``mult`` is normalised into ``[2**(mult_bits-1), 2**mult_bits)``; a ratio
    so small that the shift would pass 62 keeps shift 62 and a smaller mult
    (possibly 0); a zero ratio gives (0, 0). A ratio that would need a
    negative shift (``ratio`` of ``2**mult_bits - 0.5`` or more) does not fit: CompileError
    naming `what` and the ratio.
    """
    ratio = np.asarray(ratio, np.float64)
    if not np.all(np.isfinite(ratio)) or np.any(ratio < 0):
        raise CompileError(f"{what}: rescale ratio {ratio[~np.isfinite(ratio) | (ratio < 0)].flat[0]!r} "
                           f"is not a finite non-negative number")
    safe = np.where(ratio > 0, ratio, 1.0)
    shift = (mult_bits - 1) - np.floor(np.log2(safe)).astype(np.int64)
    mult = np.floor(np.ldexp(safe, shift) + 0.5).astype(np.int64)
    carry = mult >= 1 << mult_bits                               # rounding reached the next octave
    shift = np.where(carry, shift - 1, shift)
    mult = np.where(carry, np.floor(np.ldexp(safe, shift) + 0.5).astype(np.int64), mult)
    if np.any(shift < 0):
        bad = float(ratio[shift < 0].flat[0])
        raise CompileError(f"{what}: rescale ratio {bad:.6g} needs a multiplier of more than "
                           f"{mult_bits} bits (below {2.0 ** mult_bits - 0.5:.6g})")
    deep = shift > _MAX_PRODUCT_BITS
    mult[deep] = np.floor(np.ldexp(safe[deep], _MAX_PRODUCT_BITS) + 0.5).astype(np.int64)
    shift = np.minimum(shift, _MAX_PRODUCT_BITS)
    zero = ratio == 0
    return np.where(zero, 0, mult).astype(np.int64), np.where(zero, 0, shift).astype(np.int64)


def _fits(values, bits, what, signed=True):
    """Raise CompileError naming `what` when an integer of `values` does not fit `bits` bits."""
    values = np.asarray(values)
    if not values.size:
        return
    low, high = (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)
    worst = values.min() if values.min() < low else values.max()
    if worst < low or worst > high:
        raise CompileError(f"{what}: value {int(worst)} does not fit {bits} {'signed' if signed else 'unsigned'} "
                           f"bits ({low}..{high})")


def _calibrate(model, weights, tokens, batch=16):
    """Largest magnitude of every tensor the integer forward quantizes, from a float forward: name -> float."""
    model = with_quantized_weights(model, weights)
    config, p = model.config, model.params
    act = ACTIVATIONS[config.activation]
    d = config.n_embd
    head = p["wte" if config.tied_head else "lm_head.weight"]
    tokens = np.asarray(tokens, np.int64).reshape(-1, np.shape(tokens)[-1])
    stats = {}

    def record(name, value):
        stats[name] = max(stats.get(name, 0.0), float(np.abs(value).max()))

    def linear(name, a):
        return a @ p[name + ".weight"] + p[name + ".bias"]

    for start in range(0, len(tokens), batch):
        ids = tokens[start:start + batch]
        x = p["wte"][ids] + p["wpe"][:ids.shape[1]]
        record("residual", x)
        for i in range(config.n_layer):
            h = f"h.{i}."
            a = model._norm(h + "ln_1", x)
            record(h + "ln_1", a)
            qkv = linear(h + "attn.c_attn", a)
            for part, name in enumerate(("q", "k", "v")):
                record(h + "attn." + name, qkv[..., part * d:(part + 1) * d])
            a = model._attention(qkv)
            record(h + "attn", a)
            x = x + linear(h + "attn.c_proj", a)
            record("residual", x)
            a = model._norm(h + "ln_2", x)
            record(h + "ln_2", a)
            u = linear(h + "mlp.c_fc", a)
            record(h + "mlp.c_fc", u)
            g = act(u)
            record(h + "mlp.gelu", g)
            x = x + linear(h + "mlp.c_proj", g)
            record("residual", x)
        a = model._norm("ln_f", x)
        record("ln_f", a)
        record("logits", a @ head.T)
    return stats


def _scale(absmax, bits):
    """The step that maps `absmax` onto the largest `bits`-bit signed code (1.0 for a zero tensor)."""
    return absmax / ((1 << (bits - 1)) - 1) if absmax > 0 else 1.0


def _table(matrix, kind, bits, method, what):
    """A (rows, d) float table as (integers or PoT codes (rows, d), int values (rows, d), unit per row)."""
    matrix = np.asarray(matrix, np.float64)
    if kind == "int":
        qmax = (1 << (bits - 1)) - 1
        absmax = np.abs(matrix).max(axis=1)
        unit = np.where(absmax > 0, absmax / qmax, 1.0)
        values = np.clip(np.floor(matrix / unit[:, None] + 0.5), -qmax, qmax).astype(np.int64)
        return values.astype(np.int8 if bits <= 8 else np.int16), values, unit
    fmt = PotFormat(bits)
    if fmt.emax >= _MAX_PRODUCT_BITS // 2:
        raise CompileError(f"{what}: PoT tables of {bits} bits are too wide; use at most 6")
    pot = quantize(matrix.T.astype(np.float32), bits, method, name=what)    # channels = rows
    codes = np.ascontiguousarray(pot.codes.T)
    return codes, fmt.to_int(codes).astype(np.int64), np.ldexp(pot.scales.astype(np.float64), -fmt.emax)


def compile_model(model, *, calib_tokens, bits=4, method="pot-channel", weights=None, formats=None):
    """Compile `model` into a `CompiledModel` (see the module docstring).

    Parameters
    ----------
    model : GPT2
    calib_tokens : int array (T,) or (W, T)
        Calibration text (the model's train split by convention).
    bits : int
        PoT code width of the linear layers.
    method : str
        Quantizer of the linear layers when `weights` is None (and of PoT
        tables, when it is a weight-only method; else ``pot-channel``).
    weights : dict of name -> PotWeights, optional
        Already quantized linear weights.
    formats : IntFormats, optional

    Raises
    ------
    CompileError
        When a constant does not fit its declared width.
    """
    formats = formats or IntFormats()
    bits = check_bits(bits)
    config = model.config
    d, hd, A = config.n_embd, config.head_dim, formats.act_bits
    for field, plain in (("scale_attn_weights", True), ("scale_attn_by_inverse_layer_idx", False)):
        if getattr(config, field) is not plain:      # the integer attention scales by 1 / sqrt(head_dim) only
            raise CompileError(f"{field} {getattr(config, field)!r} is not supported by the integer forward; "
                               f"only {plain!r}")
    if PotFormat(bits).emax + A + math.ceil(math.log2(max(d, config.inner_dim))) + 2 > \
            _MAX_PRODUCT_BITS - formats.mult_bits:
        raise CompileError(f"{bits}-bit codes: the accumulators of this model would not leave room for a "
                           f"{formats.mult_bits}-bit multiplier in {_MAX_PRODUCT_BITS} bits; use at most 6 bits")
    ln_bits = 2 * formats.res_bits + 2 * math.ceil(math.log2(d)) + 1
    if ln_bits > _MAX_PRODUCT_BITS:
        raise CompileError(f"layer norm: d * sum(x**2) of a {formats.res_bits}-bit residual over {d} channels needs "
                           f"{ln_bits} bits, more than {_MAX_PRODUCT_BITS}")
    if config.vocab_size << (formats.exp_bits - 1) >= 1 << 32:
        raise CompileError(f"sampler: {config.vocab_size} weights of {formats.exp_bits} bits may sum past 32 bits")
    weights = weights or quantize_weights(model, bits=bits, method=method, calib_tokens=calib_tokens)
    stats = _calibrate(model, weights, calib_tokens)
    table_method = method if method in ("pot-channel", "pot-tensor", "paper") else "pot-channel"
    res_scale = RESIDUAL_HEADROOM * _scale(stats["residual"], formats.res_bits)
    act = {name: _scale(value, A) for name, value in stats.items()}
    tensors = {"exp2.lut": exp2_table(formats.exp_frac_bits, formats.exp_bits)}
    mb = formats.mult_bits

    def requantiser(prefix, ratio):
        tensors[prefix + ".mult"], tensors[prefix + ".shift"] = multiplier(ratio, mb, prefix)

    # Embeddings: per-row requantisers into the residual.
    for name in ("wte", "wpe"):
        stored, _, unit = _table(model.params[name], formats.tables, formats.table_bits, table_method, name)
        tensors[name + ".table"] = stored
        requantiser(name, unit / res_scale)
        if name == "wte":
            wte_unit = unit

    # Layer norms: gains and biases with the output scale folded in.
    F = formats.ln_frac_bits
    eps = max(1, int(round(config.layer_norm_epsilon * d * d / res_scale ** 2)))
    for i in list(range(config.n_layer)) + [None]:
        for ln in (("ln_f",) if i is None else (f"h.{i}.ln_1", f"h.{i}.ln_2")):
            gain = model.params[ln + ".weight"].astype(np.float64) / act[ln]
            shift = _gamma_shift(gain, F, formats.ln_gamma_bits, ln)
            gamma = np.floor(np.ldexp(gain, shift - F) + 0.5).astype(np.int64)
            beta = np.floor(np.ldexp(model.params[ln + ".bias"].astype(np.float64) / act[ln], shift) + 0.5)
            beta = beta.astype(np.int64)
            _fits(gamma, formats.ln_gamma_bits, ln + ".gamma")
            n_bits = F + math.ceil(math.log2(math.sqrt(d))) + 2
            _fits(beta, n_bits + formats.ln_gamma_bits, ln + ".beta")
            tensors.update({ln + ".gamma": gamma, ln + ".beta": beta, ln + ".shift": np.int64(shift),
                            ln + ".eps": np.int64(eps)})

    # Linear layers: codes, integer biases, per-channel requantisers.
    for i in range(config.n_layer):
        h = f"h.{i}."
        out_scale = {h + "attn.c_attn": np.repeat([act[h + "attn.q"], act[h + "attn.k"], act[h + "attn.v"]], d),
                     h + "attn.c_proj": res_scale, h + "mlp.c_fc": act[h + "mlp.c_fc"], h + "mlp.c_proj": res_scale}
        in_scale = {h + "attn.c_attn": act[h + "ln_1"], h + "attn.c_proj": act[h + "attn"],
                    h + "mlp.c_fc": act[h + "ln_2"], h + "mlp.c_proj": act[h + "mlp.gelu"]}
        for name, scale in out_scale.items():
            pot = weights[name]
            unit = np.ldexp(pot.scales.astype(np.float64), -PotFormat(bits).emax) * in_scale[name]
            bias = np.floor(model.bias(name).astype(np.float64) / unit + 0.5).astype(np.int64)
            acc_bits = pot_acc_bits(pot.codes.shape[0], A, bits, int(np.abs(bias).max()))
            if acc_bits + mb > _MAX_PRODUCT_BITS:
                raise CompileError(f"{name}: the {acc_bits}-bit accumulator times a {mb}-bit multiplier "
                                   f"passes {_MAX_PRODUCT_BITS} bits (bias up to {int(np.abs(bias).max())})")
            tensors.update({name + ".codes": pot.codes.astype(np.uint8), name + ".bias": bias})
            requantiser(name, unit / scale)
        # Attention: score gap -> base-2 exponent, weighted mean -> output scale.
        score = act[h + "attn.q"] * act[h + "attn.k"] / math.sqrt(hd) * math.log2(math.e)
        requantiser(h + "attn.score", score * (1 << formats.exp_frac_bits))
        requantiser(h + "attn.out", act[h + "attn.v"] / act[h + "attn"] / (1 << formats.avg_frac_bits))
        # GELU: one table from the c_fc output's scale to c_proj's input scale.
        grid = np.arange(-(1 << (A - 1)), 1 << (A - 1), dtype=np.float64) * act[h + "mlp.c_fc"]
        gelu = ACTIVATIONS[config.activation](grid) / act[h + "mlp.gelu"]
        tensors[h + "mlp.gelu"] = np.clip(np.floor(gelu + 0.5), -(1 << (A - 1)), (1 << (A - 1)) - 1).astype(np.int64)

    # Head: the token table (or lm_head) on the PoT array, per-row requantisers onto one logit scale.
    logit_scale = RESIDUAL_HEADROOM * _scale(stats["logits"], formats.logit_bits)
    head_table = "wte.table"
    if config.tied_head and (formats.head, formats.head_bits) == (formats.tables, formats.table_bits):
        unit = wte_unit
    else:
        head_table = "head.table"
        tensors[head_table], _, unit = _table(model.params["wte" if config.tied_head else "lm_head.weight"],
                                              formats.head, formats.head_bits, table_method, "head")
    requantiser("head", unit * act["ln_f"] / logit_scale)
    requantiser("sampler.logit", logit_scale * math.log2(math.e) * (1 << formats.exp_frac_bits))
    tensors = {name: np.asarray(value) for name, value in tensors.items()}
    return CompiledModel(config, formats, bits, tensors, program_of(config, head_table),
                         {"residual": float(res_scale), "logits": float(logit_scale)})


def _gamma_shift(gain, frac_bits, gamma_bits, what):
    """The largest shift (<= 40) at which every ``gain * 2**(shift - frac_bits)`` fits `gamma_bits` signed."""
    largest = float(np.abs(gain).max())
    limit = (1 << (gamma_bits - 1)) - 1
    if largest == 0:
        return frac_bits
    shift = min(40, frac_bits + math.floor(math.log2(limit / largest)))
    while shift >= 0 and math.floor(largest * 2.0 ** (shift - frac_bits) + 0.5) > limit:
        shift -= 1
    if shift < 0:
        raise CompileError(f"{what}: gain {largest:.6g} over its output scale does not fit {gamma_bits} signed bits")
    return shift


def compile_checkpoint(checkpoint=None, *, bits=4, method="pot-channel", formats=None, calib=None,
                       calib_tokens=None):
    """Load `checkpoint` (default: the model the hardware runs), quantize its linear layers and compile it.

    Calibration text and quantization follow `golden.model_loading` (the
    checkpoint's train split, ``DEFAULT_CALIB_TOKENS`` tokens), so the linear
    layers get the same codes as every other command's.
    """
    from .checkpoint import load_checkpoint
    from .model_loading import DEFAULT_CALIB_TOKENS, calibration_windows
    from .paths import HARDWARE_MODEL_DIR

    checkpoint = checkpoint or HARDWARE_MODEL_DIR
    model = load_checkpoint(checkpoint)
    tokens = calibration_windows(model, checkpoint, calib, calib_tokens or DEFAULT_CALIB_TOKENS)
    return compile_model(model, calib_tokens=tokens, bits=bits, method=method, formats=formats)
