"""Train the embedded default model: a small GPT-2 character model on tiny Shakespeare.

``python -m golden.train`` writes a genuine Hugging Face GPT-2 directory
(``config.json``, ``model.safetensors``) with ``vocab.json``, the token splits
``train.bin`` / ``val.bin`` and ``train.json`` (settings and results). The
training loop is nanoGPT's: AdamW with weight decay on 2-D parameters only,
linear warmup then cosine decay, gradient clipping at 1.0, random contiguous
windows of the train split, periodic evaluation on fixed windows.

The size is fixed by the FPGA budget: 4 layers of width 64 hold 196,608 linear
weights, 96 KiB at 4 bits per weight. The defaults below are the settings that
produced the shipped ``golden/models/shakespeare_char``.

This module needs torch and transformers; ``golden`` itself stays numpy-only, so
import it only where training or evaluation is wanted.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .data import DataError, prepare_char_dataset, read_tokens, TRAIN_FILE, VAL_FILE
from .paths import DEFAULT_MODEL_DIR, SHAKESPEARE_TEXT

__all__ = ["TrainSettings", "TrainError", "make_config", "evaluate_ce", "train", "main"]

TRAIN_JSON = "train.json"


class TrainError(ValueError):
    """A training setting is out of range; the message names the value and what is allowed."""


@dataclass(frozen=True)
class TrainSettings:
    """Everything that determines a training run (saved in ``train.json``)."""

    n_layer: int = 4
    n_embd: int = 64
    n_head: int = 4
    block: int = 128
    dropout: float = 0.0
    steps: int = 6000
    batch_size: int = 32
    lr: float = 1e-2
    min_lr: float = 1e-3
    warmup: int = 200
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0
    eval_interval: int = 500
    eval_windows: int = 64
    seed: int = 1337

    def check(self) -> None:
        """Raise :class:`TrainError` for the first setting out of range."""
        for name in ("n_layer", "n_embd", "n_head", "block", "steps", "batch_size",
                     "eval_interval", "eval_windows"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainError(f"--{name.replace('_', '-')} must be a positive integer, not {value!r}")
        if self.n_embd % self.n_head:
            raise TrainError(f"--n-embd must be divisible by --n-head ({self.n_head}), not {self.n_embd}")
        if not 0 <= self.warmup < self.steps:
            raise TrainError(f"--warmup must be in 0..{self.steps - 1} (below --steps), not {self.warmup}")
        if not (math.isfinite(self.lr) and self.lr > 0):
            raise TrainError(f"--lr must be a positive number, not {self.lr!r}")
        if not (math.isfinite(self.min_lr) and 0 <= self.min_lr <= self.lr):
            raise TrainError(f"--min-lr must be in 0..{self.lr} (at most --lr), not {self.min_lr!r}")
        if not (math.isfinite(self.weight_decay) and self.weight_decay >= 0):
            raise TrainError(f"--weight-decay must be a non-negative number, not {self.weight_decay!r}")
        if not 0 <= self.dropout < 1:
            raise TrainError(f"--dropout must be in [0, 1), not {self.dropout!r}")
        if not 0 <= self.seed < 2**63:
            raise TrainError(f"--seed must be in 0..2**63-1, not {self.seed!r}")

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (0-based): linear warmup, then cosine decay to ``min_lr``."""
        if step < self.warmup:
            return self.lr * (step + 1) / (self.warmup + 1)
        ratio = (step - self.warmup) / max(1, self.steps - 1 - self.warmup)
        coeff = 0.5 * (1.0 + math.cos(math.pi * min(1.0, ratio)))
        return self.min_lr + coeff * (self.lr - self.min_lr)


def make_config(vocab_size: int, settings: TrainSettings):
    """The ``transformers.GPT2Config`` of a model with ``settings``'s shape."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=vocab_size,
        n_positions=settings.block,
        n_embd=settings.n_embd,
        n_layer=settings.n_layer,
        n_head=settings.n_head,
        n_inner=None,  # 4 * n_embd, as GPT-2
        activation_function="gelu_new",
        resid_pdrop=settings.dropout,
        embd_pdrop=settings.dropout,
        attn_pdrop=settings.dropout,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=None,
    )


def _windows(tokens, starts, block):
    """Inputs ``tokens[s:s+block]`` and targets ``tokens[s+1:s+1+block]`` for each start ``s``, as int64."""
    import torch

    idx = torch.as_tensor(starts, dtype=torch.int64)[:, None] + torch.arange(block + 1)
    chunk = tokens[idx]
    return chunk[:, :-1], chunk[:, 1:]


def _ce(model, x, y):
    import torch.nn.functional as F

    logits = model(input_ids=x).logits
    return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))


def evaluate_ce(model, tokens, block: int, batch_size: int = 64, starts=None) -> float:
    """Mean next-token cross-entropy in nats of ``model`` on ``tokens``.

    By default over every non-overlapping window: inputs ``tokens[i:i+block]``
    predicting ``tokens[i+1:i+1+block]`` for ``i = 0, block, 2*block, ...``
    (every predicted token counts once); ``starts`` picks other windows.
    """
    import torch

    tokens = torch.as_tensor(np.asarray(tokens, dtype=np.int64))
    if starts is None:
        starts = np.arange(0, len(tokens) - block, block)
    if len(starts) == 0:
        raise DataError(f"Token split of {len(tokens)} tokens is too short for one window of {block} + 1")
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(starts), batch_size):
            x, y = _windows(tokens, starts[i:i + batch_size], block)
            total += float(_ce(model, x, y)) * y.numel()
            count += y.numel()
    model.train(was_training)
    return total / count


def _optimizer(model, settings: TrainSettings):
    """AdamW with weight decay on 2-D parameters (matmul weights, embeddings) only, as nanoGPT."""
    import torch

    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": settings.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=settings.lr, betas=(settings.beta1, settings.beta2))


def train(text_path, out_dir, settings: TrainSettings, threads: int | None = None, progress: bool = True) -> dict:
    """Train a model on ``text_path`` and write it, with its data and ``train.json``, to ``out_dir``.

    Everything is written to a temporary directory next to ``out_dir`` and
    renamed into place at the end, so a failure leaves no half-written output
    (and an existing ``out_dir`` untouched). ``threads`` is torch's CPU thread
    count (default: every core); it changes speed, not the result beyond float
    rounding. Returns the ``train.json`` record.

    Raises
    ------
    TrainError, DataError
        For settings out of range, a missing or unusable text file, or an
        ``out_dir`` that is a file.
    """
    settings.check()
    threads = (os.cpu_count() or 1) if threads is None else threads
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise TrainError(f"--threads must be a positive integer, not {threads!r}")
    text_path, out_dir = Path(text_path), Path(out_dir)
    if not text_path.is_file():
        raise DataError(f"Text file {str(text_path)!r} does not exist")
    if out_dir.exists() and not out_dir.is_dir():
        raise TrainError(f"--out must be a directory, but {str(out_dir)!r} is a file")
    out_dir.parent.mkdir(parents=True, exist_ok=True)

    tmp_dir = Path(tempfile.mkdtemp(dir=out_dir.parent, prefix=f".{out_dir.name}.tmp-"))
    try:
        record = _train_into(text_path, tmp_dir, settings, threads, progress)
        _usual_modes(tmp_dir)
        _replace_dir(tmp_dir, out_dir)
    except BaseException:
        shutil.rmtree(tmp_dir, ignore_errors=True)
        raise
    return record


def _usual_modes(directory: Path) -> None:
    """Give ``directory`` (made 0700 by mkdtemp) and its files the modes the umask would give."""
    mask = os.umask(0o022)
    os.umask(mask)
    os.chmod(directory, 0o777 & ~mask)
    for path in directory.iterdir():
        if path.is_file():
            os.chmod(path, 0o666 & ~mask)


def _replace_dir(new: Path, old: Path) -> None:
    """Move directory ``new`` to ``old``, replacing it if present."""
    if old.exists():
        trash = Path(tempfile.mkdtemp(dir=old.parent, prefix=f".{old.name}.old-"))
        os.replace(old, trash / old.name)
        os.replace(new, old)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        os.replace(new, old)


def _train_into(text_path: Path, out: Path, settings: TrainSettings, threads: int, progress: bool) -> dict:
    import torch
    import transformers
    from tqdm import tqdm
    from transformers import GPT2LMHeadModel

    start_time = time.time()
    torch.set_num_threads(threads)
    torch.manual_seed(settings.seed)

    vocab = prepare_char_dataset(text_path, out)
    train_tokens = torch.from_numpy(read_tokens(out / TRAIN_FILE, vocab.size).astype(np.int64))
    val_tokens = torch.from_numpy(read_tokens(out / VAL_FILE, vocab.size).astype(np.int64))
    for name, split in (("train", train_tokens), ("val", val_tokens)):
        if len(split) <= settings.block:
            raise DataError(f"The {name} split of {str(text_path)!r} has {len(split)} tokens, "
                            f"too few for one window of --block {settings.block} + 1")

    model = GPT2LMHeadModel(make_config(vocab.size, settings))
    model.train()
    optimizer = _optimizer(model, settings)

    # Fixed evaluation windows (nanoGPT's estimate_loss, but the same windows every time).
    eval_gen = np.random.default_rng(settings.seed + 1)
    eval_starts = {
        "train": eval_gen.integers(0, len(train_tokens) - settings.block, settings.eval_windows),
        "val": eval_gen.integers(0, len(val_tokens) - settings.block, settings.eval_windows),
    }

    def estimate():
        return (evaluate_ce(model, train_tokens, settings.block, starts=eval_starts["train"]),
                evaluate_ce(model, val_tokens, settings.block, starts=eval_starts["val"]))

    batch_gen = torch.Generator().manual_seed(settings.seed)
    history = []
    bar = tqdm(range(settings.steps), desc="train", unit="step", file=sys.stderr,
               disable=not progress, mininterval=2.0, dynamic_ncols=True)
    train_start = time.time()
    smooth = None
    val_ce = float("nan")
    for step in bar:
        if step % settings.eval_interval == 0:
            tr, val_ce = estimate()
            history.append({"step": step, "train_ce": tr, "val_ce": val_ce, "time_s": time.time() - train_start})
        lr = settings.lr_at(step)
        for group in optimizer.param_groups:
            group["lr"] = lr
        starts = torch.randint(len(train_tokens) - settings.block, (settings.batch_size,), generator=batch_gen)
        x, y = _windows(train_tokens, starts, settings.block)
        loss = _ce(model, x, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        optimizer.step()
        loss = loss.item()
        if not math.isfinite(loss):
            raise TrainError(f"Training diverged at step {step} (loss {loss}); lower --lr, not {settings.lr}")
        smooth = loss if smooth is None else 0.95 * smooth + 0.05 * loss
        bar.set_postfix(loss=f"{smooth:.3f}", val=f"{val_ce:.3f}", lr=f"{lr:.2e}", refresh=False)
    bar.close()
    train_time = time.time() - train_start

    final_train, final_val_est = estimate()
    history.append({"step": settings.steps, "train_ce": final_train, "val_ce": final_val_est, "time_s": train_time})
    val_ce = evaluate_ce(model, val_tokens, settings.block)

    model.eval()
    transformers.utils.logging.disable_progress_bar()
    model.save_pretrained(out, safe_serialization=True)
    n_linear = sum(m.weight.numel() for m in model.modules()
                   if type(m).__name__ == "Conv1D")
    record = {
        "settings": asdict(settings),
        "text": text_path.name,
        "text_chars": int(len(train_tokens) + len(val_tokens)),
        "vocab_size": vocab.size,
        "train_tokens": int(len(train_tokens)),
        "val_tokens": int(len(val_tokens)),
        "params": int(sum(p.numel() for p in model.parameters())),
        "linear_weights": int(n_linear),
        "steps": settings.steps,
        "tokens_seen": settings.steps * settings.batch_size * settings.block,
        "final_train_loss": loss,
        "final_train_loss_smoothed": smooth,
        "final_train_ce": final_train,
        "final_val_ce": val_ce,
        "final_val_ce_note": "full val split, non-overlapping windows of block tokens, mean CE in nats",
        "history": history,
        "train_time_s": train_time,
        "steps_per_s": settings.steps / train_time,
        "wall_time_s": time.time() - start_time,
        "threads": threads,
        "torch": torch.__version__,
        "transformers": transformers.__version__,
    }
    (out / TRAIN_JSON).write_text(json.dumps(record, indent=2) + "\n")
    return record


class _Parser(argparse.ArgumentParser):
    """argparse, but errors are one line on stderr."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _parser() -> argparse.ArgumentParser:
    d = TrainSettings()
    cores = os.cpu_count() or 1
    p = _Parser(
        prog="python -m golden.train",
        description="Train the embedded default model: a GPT-2 character model on tiny Shakespeare, "
                    "saved as a Hugging Face directory with vocab.json, train.bin, val.bin and train.json.",
        epilog="example: python -m golden.train --out build/shakespeare_char --steps 500",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    p.add_argument("--text", metavar="FILE", type=Path, default=SHAKESPEARE_TEXT, help="UTF-8 training corpus")
    p.add_argument("--out", metavar="DIR", type=Path, default=DEFAULT_MODEL_DIR,
                   help="output directory (replaced atomically)")
    p.add_argument("--n-layer", metavar="N", type=int, default=d.n_layer, help="transformer blocks")
    p.add_argument("--n-embd", metavar="D", type=int, default=d.n_embd, help="model width")
    p.add_argument("--n-head", metavar="H", type=int, default=d.n_head, help="attention heads")
    p.add_argument("--block", metavar="T", type=int, default=d.block, help="context length (= n_positions)")
    p.add_argument("--dropout", metavar="P", type=float, default=d.dropout, help="dropout probability")
    p.add_argument("--steps", metavar="N", type=int, default=d.steps, help="optimizer steps")
    p.add_argument("--batch-size", metavar="B", type=int, default=d.batch_size, help="windows per step")
    p.add_argument("--lr", metavar="LR", type=float, default=d.lr, help="peak learning rate")
    p.add_argument("--min-lr", metavar="LR", type=float, default=d.min_lr, help="final learning rate")
    p.add_argument("--warmup", metavar="N", type=int, default=d.warmup, help="linear warmup steps")
    p.add_argument("--weight-decay", metavar="WD", type=float, default=d.weight_decay,
                   help="AdamW weight decay (2-D parameters only)")
    p.add_argument("--eval-interval", metavar="N", type=int, default=d.eval_interval,
                   help="steps between evaluations on fixed windows")
    p.add_argument("--seed", metavar="S", type=int, default=d.seed, help="random seed")
    p.add_argument("--threads", metavar="N", type=int, default=cores,
                   help="torch CPU threads (fewer can be faster on a busy machine)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    previous = signal.signal(signal.SIGTERM, _interrupt)  # `kill` cleans up like Ctrl-C
    prog = "python -m golden.train"
    try:
        settings = TrainSettings(
            n_layer=args.n_layer, n_embd=args.n_embd, n_head=args.n_head, block=args.block,
            dropout=args.dropout, steps=args.steps, batch_size=args.batch_size, lr=args.lr,
            min_lr=args.min_lr, warmup=args.warmup, weight_decay=args.weight_decay,
            eval_interval=args.eval_interval, seed=args.seed,
        )
        record = train(args.text, args.out, settings, threads=args.threads, progress=not args.quiet)
    except (TrainError, DataError) as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{prog}: interrupted, nothing written", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, previous)
    print(f"wrote {args.out}: {record['steps']} steps in {record['train_time_s']:.0f} s, "
          f"train CE {record['final_train_ce']:.4f}, val CE {record['final_val_ce']:.4f} nats")
    return 0


if __name__ == "__main__":
    sys.exit(main())
