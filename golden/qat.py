"""Quantization-aware training (QAT) of a GPT-2 onto golden's power-of-two grid.

    python -m golden.qat [--checkpoint PATH] [--train FILE] [--val FILE] [--calib FILE] --bits 4 [--method M]
                         [--steps N] [--lr LR] [--batch-size B] [--block T] [--seed S] [--plot OUT.png] --out DIR

The checkpoint is loaded into ``transformers.GPT2LMHeadModel``; each block's
four linear weights (``attn.c_attn``, ``attn.c_proj``, ``mlp.c_fc``,
``mlp.c_proj``) are replaced, in every forward pass, by their PoT values, and
the float "latent" weights behind them are trained with straight-through
gradients (the gradient of the PoT value is passed to the latent weight
unchanged). Embeddings, layer norms and biases -- float on the host in the
accelerator too -- train as usual.

The quantizer
    is golden's, bit for bit: the same rounding rule computed the same way in
    float64 (:func:`pot_values`), so at the start the fake-quantized weight *is*
    ``golden.quantize.quantize(W, bits, method).dequantize()``, and at every
    step it is a matrix golden's ``pot-channel`` quantizer maps to itself.

Scales are fixed
    They are chosen once, before training, by golden's quantizer for
    ``--method`` (``pot-channel`` and ``gptq-pot``: golden's MSE search per
    channel) and not learned. The latent weights then train *for that grid*:
    re-deriving scales from the moved weights at the end would change the grid
    under them, and learning them LSQ-style moves every rounding boundary under
    every weight at every step. In probes on the default model (4-bit, scored
    on part of the val split) LSQ scales did not do better: ΔCE +0.005 against
    +0.003 for fixed ones after 1500 steps, +0.014 against +0.016 after 600
    (seed-to-seed spread about 0.002), so the simpler choice, whose grid is
    known before training starts, stays. (The shipped 1500-step model scores
    +0.007 on the whole val split.)

Start
    ``--method gptq-pot`` (the default) starts from the post-training solution
    of :mod:`golden.gptq`: pot-channel's scales and GPTQ's PoT values as the
    latent weights, so step 0 is already the best PTQ model and QAT only has to
    close the rest of the gap (default model, 4-bit, 600 steps: ΔCE +0.016 from
    this start, +0.050 from nearest rounding even at a 3x higher learning
    rate). ``pot-channel``, ``pot-tensor`` and ``paper`` start from the float
    weights at those methods' scales (``paper`` keeps its rounding in the log
    domain). The learning rate is low (3e-4, cosine to 3e-5) because the latent
    weights start on grid points: larger steps flip the codes of the small
    weights, whose levels are close together, back and forth.

Loss
    Cross-entropy on random train windows; ``--distill A`` mixes in (weight A)
    the KL divergence from the float model's next-token distribution. On the
    default model distillation did not help reliably (4-bit: +0.003 with A = 0.5
    against +0.004 and +0.005 without, two seeds; 3-bit: +0.024 against +0.019)
    and costs a teacher forward per step, so it is off by default. Note that
    the same recipe *without* quantization lowers the default float model's own
    val CE by 0.020: part of what QAT recovers there is further training.

Output
    ``--out`` is a Hugging Face GPT-2 directory (``save_pretrained``, safetensors)
    whose linear weights ARE the PoT values (dequantized codes), written whole
    or not at all, with ``vocab.json``, ``train.bin`` and ``val.bin`` copied from
    the source when it has them and ``qat.json`` (settings, losses, final val
    CE). Hence ``python -m golden.eval --checkpoint DIR --bits B --methods
    pot-channel`` scores exactly the trained model: re-quantizing changes no code.

Validation follows :func:`golden.eval.windows` (non-overlapping windows of the
model's context length) and scores the fake-quantized model, so the final val
CE is what ``golden.eval`` reports for the saved model. Only the optimizer's
working state lives in memory; the directory holds no optimizer state.

Needs torch and transformers; ``import golden`` does not import this module.
"""

import argparse
import functools
import json
import math
import os
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .atomic import atomic_directory
from .checkpoint import load_checkpoint
from .cli import HelpFormatter, UserError, run
from .data import TRAIN_FILE, VAL_FILE, VOCAB_FILE
from .eval import DEFAULT_CALIB_TOKENS, windows
from .model_loading import split_tokens
from .paths import DEFAULT_MODEL_DIR
from .pot_format import DEFAULT_BITS, PotFormat, check_bits
from .quantize import METHODS, quantize
from .tokens import HF_TOKENIZER_FILE, MERGES_FILE, read_token_file

__all__ = ["QAT_METHODS", "QatSettings", "pot_values", "PotFakeQuant", "hf_model", "fake_quantize",
           "quantized_state", "train_qat", "main"]

QAT_JSON = "qat.json"

#: Quantizers QAT can train for: golden's weight methods, and gptq-pot as a start.
QAT_METHODS = (*METHODS, "gptq-pot")

#: The linear layers of every block, as named inside a transformers GPT2Block.
_BLOCK_LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


@dataclass(frozen=True)
class QatSettings:
    """Everything that determines a QAT run (saved in ``qat.json``)."""

    bits: int = DEFAULT_BITS
    method: str = "gptq-pot"
    pot_scale: bool = False
    steps: int = 1500
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup: int = 50
    batch_size: int = 32
    block: int = 0                 # 0: the model's n_positions
    weight_decay: float = 0.0
    distill: float = 0.0
    grad_clip: float = 1.0
    eval_interval: int = 250
    eval_tokens: int = 0           # 0: the whole val split
    calib_tokens: int = DEFAULT_CALIB_TOKENS
    seed: int = 1337
    threads: int = os.cpu_count() or 1

    def check(self):
        """Raise UserError for the first setting out of range."""
        check_bits(self.bits)
        if self.method not in QAT_METHODS:
            raise UserError(f"Unknown quantization method {self.method!r}; choose from {', '.join(QAT_METHODS)}")
        if self.method == "paper" and self.pot_scale:
            raise UserError("Method 'paper' has a per-tensor max scale; it does not take --pot-scale")
        for name in ("steps", "batch_size", "eval_interval", "calib_tokens", "threads"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise UserError(f"--{name.replace('_', '-')} must be a positive integer, not {value!r}")
        if isinstance(self.block, bool) or not isinstance(self.block, int) or self.block < 0:
            raise UserError(f"--block must be a positive integer, not {self.block!r}")
        if isinstance(self.eval_tokens, bool) or not isinstance(self.eval_tokens, int) or self.eval_tokens < 0:
            raise UserError(f"--eval-tokens must be a non-negative integer, not {self.eval_tokens!r}")
        if not 0 <= self.warmup < self.steps:
            raise UserError(f"--warmup must be in 0..{self.steps - 1} (below --steps), not {self.warmup}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise UserError(f"--lr must be a positive number, not {self.lr!r}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            raise UserError(f"--min-lr must be in 0..{self.lr} (at most --lr), not {self.min_lr!r}")
        for name in ("weight_decay", "grad_clip"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise UserError(f"--{name.replace('_', '-')} must be a non-negative number, not {value!r}")
        if not 0 <= self.distill <= 1:
            raise UserError(f"--distill must be in [0, 1], not {self.distill!r}")
        if not 0 <= self.seed < 2**63:
            raise UserError(f"--seed must be in 0..2**63-1, not {self.seed!r}")

    def lr_at(self, step):
        """Learning rate of step ``step`` (0-based): linear warmup, then cosine decay to ``min_lr``."""
        if step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        ratio = (step - self.warmup) / max(1, self.steps - 1 - self.warmup)
        return self.min_lr + 0.5 * (1.0 + math.cos(math.pi * min(1.0, ratio))) * (self.lr - self.min_lr)


# -- the quantizer, in torch ---------------------------------------------------------------

def pot_values(weight, scales, bits, rule="nearest"):
    """The PoT value of every weight at fixed channel scales, as golden computes it: float32 (K, N).

    ``weight`` (K, N) and ``scales`` (N,) are torch tensors (float32). ``rule``
    ``"nearest"`` is :func:`golden.quantize.round_to_pot` (the ``pot-*``
    methods); ``"paper"`` is the seed papers' rounding of
    :mod:`golden.quantize` (``q = rint(W / step)``, ``step = scale / 2**P``,
    then the nearest power of two in the log domain), with magnitudes above the
    scale clipped to it. Both run in float64 exactly as golden's numpy does,
    so the result equals golden's dequantized codes bit for bit.
    """
    import torch

    fmt = PotFormat(bits)
    w = weight.detach().to(torch.float64)
    s = scales.detach().to(torch.float64)
    if rule == "nearest":
        ratio = w.abs() / s
        mantissa, power = torch.frexp(ratio)                   # ratio = mantissa * 2**power, mantissa in [0.5, 1)
        exponent = torch.where(mantissa >= 0.75, -power, 1 - power).to(torch.int64)
        is_zero = ratio < math.ldexp(1.0, -(fmt.emax + 1))
    elif rule == "paper":
        top = fmt.emax + 1                                      # P: the paper's largest level is 2**P
        q = torch.round(w / (s / math.ldexp(1.0, top)))          # half to even, as np.rint
        level = torch.round(torch.log2(torch.where(q == 0, torch.ones_like(q), q.abs()))).to(torch.int64)
        is_zero = level < 1
        exponent = top - level
    else:
        raise ValueError(f"Rounding rule must be 'nearest' or 'paper', not {rule!r}")
    levels = torch.tensor(np.append(fmt.levels, 0.0), dtype=torch.float64)   # 2**-e exactly, then zero
    magnitude = levels[torch.where(is_zero, fmt.emax + 1, exponent.clamp(0, fmt.emax))] * s
    return torch.where(torch.signbit(w), -magnitude, magnitude).to(torch.float32)


@functools.cache
def _straight_through():
    import torch

    class StraightThrough(torch.autograd.Function):
        """Forward: the PoT value. Backward: the gradient passes to the latent weight unchanged."""

        @staticmethod
        def forward(ctx, weight, scales, bits, rule):
            return pot_values(weight, scales, bits, rule)

        @staticmethod
        def backward(ctx, grad):
            return grad, None, None, None

    return StraightThrough


@functools.cache
def _fake_quant_class():
    import torch

    straight_through = _straight_through()

    class PotFakeQuant(torch.nn.Module):
        """A parametrization of a Conv1D weight: the latent (K, N) weight -> its PoT value at fixed scales.

        Parameters
        ----------
        scales : array (N,)
            Channel scales (float32), fixed.
        bits : int
        rule : str
            ``"nearest"`` or ``"paper"``, see :func:`pot_values`.
        """

        def __init__(self, scales, bits, rule="nearest"):
            super().__init__()
            self.bits, self.rule = check_bits(bits), rule
            self.register_buffer("scales", torch.as_tensor(np.asarray(scales, np.float32)))

        def forward(self, weight):
            return straight_through.apply(weight, self.scales, self.bits, self.rule)

    return PotFakeQuant


def __getattr__(name):
    if name == "PotFakeQuant":      # built on first use, so that importing this module does not import torch
        return _fake_quant_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# -- models -------------------------------------------------------------------------------

def hf_model(checkpoint):
    """The checkpoint as a float32 ``transformers.GPT2LMHeadModel`` and as a golden ``GPT2``.

    A Hugging Face directory is read by transformers itself; anything else
    golden can read (a nanoGPT ``ckpt.pt``) is rebuilt from golden's parameters.

    Raises
    ------
    CheckpointError
        If golden cannot read it as a GPT-2 (one line naming the path and the problem).
    """
    import torch
    import transformers

    golden_model = load_checkpoint(checkpoint)                 # validates: GPT-2 or a one-line error
    path = Path(checkpoint)
    transformers.utils.logging.disable_progress_bar()
    if path.is_dir() and (path / "config.json").is_file():
        model = transformers.GPT2LMHeadModel.from_pretrained(path, dtype=torch.float32)
    else:
        c = golden_model.config
        config = transformers.GPT2Config(
            vocab_size=c.vocab_size, n_positions=c.n_positions, n_embd=c.n_embd, n_layer=c.n_layer,
            n_head=c.n_head, activation_function=c.activation, layer_norm_epsilon=c.layer_norm_epsilon,
            n_inner=c.n_inner, scale_attn_weights=c.scale_attn_weights,
            scale_attn_by_inverse_layer_idx=c.scale_attn_by_inverse_layer_idx,
            reorder_and_upcast_attn=c.reorder_and_upcast_attn, tie_word_embeddings=c.tied_head, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
            bos_token_id=None, eos_token_id=None)
        model = transformers.GPT2LMHeadModel(config)
        state = {_hf_key(name): torch.from_numpy(np.array(value)) for name, value in golden_model.params.items()}
        missing, unexpected = model.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.endswith((".attn.bias", ".attn.masked_bias", "lm_head.weight"))]
        if missing or unexpected:
            raise AssertionError(f"rebuilding {path}: missing {missing}, unexpected {unexpected}")
        if c.tied_head:
            model.tie_weights()
    return model.float().eval(), golden_model


def _hf_key(name):
    """transformers' GPT2LMHeadModel state key of golden's parameter `name`."""
    if name in ("wte", "wpe"):
        return f"transformer.{name}.weight"
    return name if name == "lm_head.weight" else f"transformer.{name}"


def _linear_modules(model):
    """name (golden's, ``h.{i}.attn.c_attn`` ...) -> Conv1D module of a GPT2LMHeadModel, in forward order."""
    blocks = model.transformer.h
    return {f"h.{i}.{layer}": block.get_submodule(layer) for i, block in enumerate(blocks) for layer in _BLOCK_LINEARS}


def fake_quantize(model, scales, bits, rule="nearest", latents=None):
    """Put a :class:`PotFakeQuant` on every linear weight of `model`, in place.

    `scales` maps golden's layer names to (N,) scales; `latents`, if given, maps
    them to (K, N) float weights to start from (default: the model's own).
    """
    import torch
    from torch.nn.utils import parametrize

    fake_quant = _fake_quant_class()
    for name, module in _linear_modules(model).items():
        if latents is not None and name in latents:
            with torch.no_grad():
                module.weight.copy_(torch.from_numpy(np.asarray(latents[name], np.float32)))
        parametrize.register_parametrization(module, "weight", fake_quant(scales[name], bits, rule))
    return model


def quantized_state(model):
    """Remove the fake quantizers of `model`, in place, leaving each linear weight at its PoT value."""
    from torch.nn.utils import parametrize

    for module in _linear_modules(model).values():
        if parametrize.is_parametrized(module, "weight"):
            parametrize.remove_parametrizations(module, "weight", leave_parametrized=True)
    return model


def initial_quantization(golden_model, settings, calib_tokens=None):
    """Scales and starting latent weights for `settings.method`: (scales, latents or None, rule)."""
    names = golden_model.linear_names
    rule = "paper" if settings.method == "paper" else "nearest"
    if settings.method == "gptq-pot":
        from .gptq import gptq_pot

        if calib_tokens is None:
            raise ValueError("Method 'gptq-pot' needs calibration tokens")
        # GPTQ rounds at pot-channel's searched scales; QAT keeps those (not the canonical, possibly
        # shifted, scales of the result, which would drop top levels) and starts from GPTQ's values.
        scales = {name: quantize(golden_model.weight(name), settings.bits, "pot-channel", settings.pot_scale).scales
                  for name in names}
        weights = gptq_pot(golden_model, bits=settings.bits, pot_scale=settings.pot_scale,
                           calib_tokens=calib_tokens, names=names)
        return scales, {name: weights[name].dequantize() for name in names}, rule
    scales = {name: quantize(golden_model.weight(name), settings.bits, settings.method, settings.pot_scale).scales
              for name in names}
    return scales, None, rule


# -- training -----------------------------------------------------------------------------

def _ce(logits, targets):
    import torch.nn.functional as F

    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), targets.reshape(-1))


def evaluate_ce(model, inputs, targets, batch=32):
    """Mean CE (nats) of `model` on windows (W, T) as golden.eval scores them."""
    import torch

    was_training = model.training
    model.eval()
    total = 0.0
    with torch.no_grad():
        for start in range(0, len(inputs), batch):
            x = torch.from_numpy(inputs[start:start + batch])
            y = torch.from_numpy(targets[start:start + batch])
            total += float(_ce(model(input_ids=x).logits, y)) * len(x)
    model.train(was_training)
    return total / len(inputs)


def train_qat(checkpoint, train_tokens, val_tokens, settings, progress=True, calib_tokens=None):
    """Run QAT; returns (model with PoT weights and no quantizers, record for qat.json).

    ``train_tokens`` / ``val_tokens`` are token arrays; the model is a
    ``GPT2LMHeadModel`` whose linear weights are the PoT values. gptq-pot's
    initial quantization calibrates on ``calib_tokens`` (default: the train tokens).
    """
    import torch
    import transformers
    from tqdm import tqdm

    settings.check()
    start_time = time.time()
    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    model, golden_model = hf_model(checkpoint)
    block = settings.block or golden_model.config.n_positions
    if block > golden_model.config.n_positions:
        raise UserError(f"--block {block} is larger than the model's n_positions {golden_model.config.n_positions}")
    vocab = golden_model.config.vocab_size
    for what, tokens in (("train", train_tokens), ("val", val_tokens)):
        if len(tokens) and int(np.max(tokens)) >= vocab:
            raise UserError(f"The {what} tokens hold id {int(np.max(tokens))}, outside the model's vocabulary of {vocab}")
    if len(train_tokens) <= block:
        raise UserError(f"The train split has {len(train_tokens)} tokens, too few for one window of --block {block} + 1")
    context = golden_model.config.n_positions
    val_inputs, val_targets = windows(val_tokens, context)
    probe_inputs, probe_targets = windows(val_tokens, context, settings.eval_tokens or None)
    calib_inputs, _ = windows(train_tokens if calib_tokens is None else calib_tokens, context, settings.calib_tokens)

    teacher = None
    if settings.distill > 0:
        teacher, _ = hf_model(checkpoint)
        teacher.requires_grad_(False)
    float_ce = evaluate_ce(model, val_inputs, val_targets)
    float_probe_ce = evaluate_ce(model, probe_inputs, probe_targets) if settings.eval_tokens else float_ce
    scales, latents, rule = initial_quantization(golden_model, settings, calib_inputs)
    fake_quantize(model, scales, settings.bits, rule, latents)
    model.train()
    for module in model.modules():                                 # QAT adapts weights; no dropout
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    start_ce = evaluate_ce(model, val_inputs, val_targets)

    params = [p for p in model.parameters() if p.requires_grad]
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": settings.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.AdamW(groups, lr=settings.lr, betas=(0.9, 0.99))
    train = torch.from_numpy(np.asarray(train_tokens, dtype=np.int64))
    generator = torch.Generator().manual_seed(settings.seed)
    offsets = torch.arange(block + 1)

    history = [{"step": 0, "val_ce": evaluate_ce(model, probe_inputs, probe_targets), "time_s": 0.0}]
    losses = []
    bar = tqdm(range(settings.steps), desc=f"qat {settings.bits}-bit", unit="step", file=sys.stderr,
               disable=not progress, mininterval=1.0, dynamic_ncols=True)
    train_start = time.time()
    smooth = None
    for step in bar:
        lr = settings.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(len(train) - block, (settings.batch_size,), generator=generator)
        chunk = train[starts[:, None] + offsets]
        x, y = chunk[:, :-1], chunk[:, 1:]
        logits = model(input_ids=x).logits
        loss = ce = _ce(logits, y)
        if teacher is not None:
            with torch.no_grad():
                target = torch.log_softmax(teacher(input_ids=x).logits, dim=-1)
            kl = torch.nn.functional.kl_div(torch.log_softmax(logits, dim=-1).reshape(-1, vocab),
                                            target.reshape(-1, vocab), log_target=True, reduction="batchmean")
            loss = (1 - settings.distill) * ce + settings.distill * kl
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if settings.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
        optimizer.step()
        ce = ce.item()
        if not math.isfinite(ce):
            raise UserError(f"QAT diverged at step {step} (loss {ce}); lower --lr, not {settings.lr}")
        losses.append(ce)
        smooth = ce if smooth is None else 0.95 * smooth + 0.05 * ce
        if (step + 1) % settings.eval_interval == 0 or step + 1 == settings.steps:
            history.append({"step": step + 1, "train_ce": smooth, "time_s": time.time() - train_start,
                            "val_ce": evaluate_ce(model, probe_inputs, probe_targets)})
            bar.set_postfix(loss=f"{smooth:.3f}", val=f"{history[-1]['val_ce']:.3f}", refresh=False)
        elif step % 10 == 0:
            bar.set_postfix(loss=f"{smooth:.3f}", val=f"{history[-1]['val_ce']:.3f}", refresh=False)
    bar.close()
    train_time = time.time() - train_start

    quantized_state(model)
    model.eval()
    final_ce = evaluate_ce(model, val_inputs, val_targets)
    record = {
        "settings": {**asdict(settings), "block": block},
        "checkpoint": str(checkpoint),
        "train_tokens": int(len(train_tokens)),
        "val_tokens": int(val_inputs.size),
        "val_note": "val split in golden.eval's windows of n_positions tokens, mean CE in nats",
        "float_val_ce": float_ce,
        "float_probe_ce": float_probe_ce,
        "start_val_ce": start_ce,
        "final_val_ce": final_ce,
        "final_delta_ce": final_ce - float_ce,
        "steps": settings.steps,
        "tokens_seen": settings.steps * settings.batch_size * block,
        "history": history,
        "train_losses": [round(v, 5) for v in losses],
        "train_time_s": train_time,
        "wall_time_s": time.time() - start_time,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    return model, record


def save(model, record, source, out):
    """Write the QAT model directory `out` whole: HF files, the source's vocab/splits, qat.json."""
    import transformers

    source = Path(source)
    source_dir = source if source.is_dir() else source.parent
    transformers.utils.logging.disable_progress_bar()
    with atomic_directory(out) as tmp:
        model.save_pretrained(tmp, safe_serialization=True)
        for name in (VOCAB_FILE, HF_TOKENIZER_FILE, MERGES_FILE, TRAIN_FILE, VAL_FILE):
            if (source_dir / name).is_file():
                shutil.copyfile(source_dir / name, tmp / name)
        (tmp / QAT_JSON).write_text(json.dumps(record, indent=2) + "\n")
    return Path(out)


def plot(record, path):
    """Train loss (smoothed) and quantized val CE against steps, with the float and start CE for reference."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    losses = np.asarray(record["train_losses"])
    window = max(1, len(losses) // 50)
    smooth = np.convolve(losses, np.ones(window) / window, mode="valid")
    history = record["history"]
    s = record["settings"]
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    ax.plot(np.arange(len(smooth)) + window, smooth, color="C0", alpha=0.6, label=f"train CE (mean of {window})")
    ax.plot([h["step"] for h in history], [h["val_ce"] for h in history], "-o", color="C1",
            label=f"val CE, {s['bits']}-bit PoT ({s['method']} start)")
    ax.axhline(record["float_probe_ce"], color="k", ls="--", lw=1, label="float, same val windows")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy (nats)")
    ax.set_title(f"QAT: val CE {record['start_val_ce']:.3f} -> {record['final_val_ce']:.3f} "
                 f"(float {record['float_val_ce']:.3f})")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


# -- command line -------------------------------------------------------------------------

def parse_args(argv):
    d = QatSettings()
    parser = argparse.ArgumentParser(
        prog="python -m golden.qat", formatter_class=HelpFormatter,
        description="Quantization-aware training of a GPT-2 onto power-of-two weights; writes a Hugging Face "
                    "directory whose linear weights are the PoT values.",
        epilog="example:\n  python -m golden.qat --bits 4 --out golden/models/shakespeare_char_qat4 "
               "--plot build/qat4.png\n"
               "  python -m golden.eval --checkpoint golden/models/shakespeare_char_qat4 --bits 4 "
               "--methods pot-channel")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(DEFAULT_MODEL_DIR),
                        help="Hugging Face GPT-2 directory or nanoGPT ckpt.pt")
    parser.add_argument("--train", metavar="FILE", help="train text: uint16 .bin tokens or a UTF-8 .txt encoded with "
                                                        "the checkpoint's tokenizer (default: the checkpoint's train.bin)")
    parser.add_argument("--val", metavar="FILE", help="val text, .bin or .txt (default: the checkpoint's val.bin)")
    parser.add_argument("--calib", metavar="FILE", help="text gptq-pot calibrates on, .bin or .txt (default: the "
                                                        "train text)")
    parser.add_argument("--out", metavar="DIR", required=True, help="output directory (replaced whole)")
    parser.add_argument("--bits", metavar="B", type=int, default=d.bits, help="weight code width, 3..8")
    parser.add_argument("--method", metavar="M", default=d.method,
                        help=f"quantizer whose scales (and, for gptq-pot, values) QAT starts from: "
                             f"{', '.join(QAT_METHODS)}")
    parser.add_argument("--pot-scale", action="store_true", help="restrict channel scales to powers of two")
    parser.add_argument("--steps", metavar="N", type=int, default=d.steps, help="optimizer steps")
    parser.add_argument("--lr", metavar="LR", type=float, default=d.lr, help="peak learning rate (AdamW)")
    parser.add_argument("--min-lr", metavar="LR", type=float, default=d.min_lr, help="final learning rate (cosine)")
    parser.add_argument("--warmup", metavar="N", type=int, default=d.warmup, help="linear warmup steps")
    parser.add_argument("--weight-decay", metavar="WD", type=float, default=d.weight_decay,
                        help="AdamW weight decay of 2-D parameters")
    parser.add_argument("--distill", metavar="A", type=float, default=d.distill,
                        help="weight of distillation from the float model (0: cross-entropy only, 1: KL only)")
    parser.add_argument("--batch-size", metavar="B", type=int, default=d.batch_size, help="windows per step")
    parser.add_argument("--block", metavar="T", type=int, default=None,
                        help="train window length (default: the model's n_positions)")
    parser.add_argument("--eval-interval", metavar="N", type=int, default=d.eval_interval,
                        help="steps between val CE estimates")
    parser.add_argument("--eval-tokens", metavar="N", type=int, default=d.eval_tokens,
                        help="val tokens of each periodic estimate, 0: all (the final val CE uses the whole split)")
    parser.add_argument("--calib-tokens", metavar="N", type=int, default=d.calib_tokens,
                        help="tokens of the calibration text that gptq-pot calibrates on")
    parser.add_argument("--seed", metavar="S", type=int, default=d.seed, help="random seed")
    parser.add_argument("--threads", metavar="N", type=int, default=d.threads, help="torch CPU threads")
    parser.add_argument("--plot", metavar="OUT.png", help="plot train loss and val CE against steps")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.block is not None and args.block < 1:
        raise UserError(f"--block must be a positive integer, not {args.block}")
    settings = QatSettings(bits=args.bits, method=args.method, pot_scale=args.pot_scale, steps=args.steps,
                           lr=args.lr, min_lr=min(args.min_lr, args.lr), warmup=min(args.warmup, args.steps - 1),
                           batch_size=args.batch_size, block=args.block or 0, weight_decay=args.weight_decay,
                           distill=args.distill, eval_interval=args.eval_interval, eval_tokens=args.eval_tokens,
                           calib_tokens=args.calib_tokens, seed=args.seed, threads=args.threads)
    settings.check()                                       # every argument checked before any work
    out = Path(args.out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out must be a directory, but {str(out)!r} is a file")
    try:
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except ImportError as error:
        raise UserError(f"QAT needs torch and transformers ({error}); pip install 'potgen[torch]'") from None
    checkpoint = args.checkpoint
    vocab_size = load_checkpoint(checkpoint).config.vocab_size   # a one-line error before the splits are looked for
    train_tokens = split_tokens(checkpoint, "train", vocab_size, args.train, "--train")
    val_tokens = split_tokens(checkpoint, "val", vocab_size, args.val, "--val")
    calib_tokens = None if args.calib is None else read_token_file(args.calib, checkpoint, vocab_size)
    model, record = train_qat(checkpoint, train_tokens, val_tokens, settings, progress=not args.quiet,
                              calib_tokens=calib_tokens)
    save(model, record, checkpoint, out)
    if args.plot:
        plot(record, args.plot)
    print(f"wrote {out}: {settings.bits}-bit PoT, {settings.steps} steps in {record['train_time_s']:.0f} s; "
          f"val CE {record['final_val_ce']:.4f} nats (float {record['float_val_ce']:.4f}, "
          f"start {record['start_val_ce']:.4f}, ΔCE {record['final_delta_ce']:+.4f})")
    return 0


if __name__ == "__main__":
    run(main, "python -m golden.qat")
