"""Quality study: cross-entropy of a GPT-2 with PoT weights against the float model.

    python -m golden.eval [--checkpoint PATH] [--data FILE] [--calib FILE] [--bits 3 4 5 6] [--methods ...]
                          [--act-bits 8] [--forward float linear integer] [--tables int pot pot-head]
                          [--block T] [--max-tokens N] [--reference PATH] [--json OUT] [--plot OUT.png]

Protocol: the token file is cut from its start into contiguous, non-overlapping
windows of ``--block`` tokens (default: the model's context length); each
window is scored at every position (the target of position ``i`` is token
``i + 1``), so a window of T inputs needs T + 1 tokens and the next window starts
where the last one's targets end. Only whole windows are scored, at most
``--max-tokens`` scored positions. CE is the mean negative log-likelihood in
nats over every scored position; ppl = exp(CE).

For every method and bit width there is a row per ``--forward``, which says
which operations were integer:

``float``
    PoT weights, everything else float (``act_bits`` null).
``linear``
    The integer datapath of the array for the linear layers only (activations
    quantized to ``--act-bits`` with static per-layer scales calibrated on
    ``--calib`` text, integer biases, exact accumulation, dequantization);
    embeddings, layer norm, attention, GELU and the head float.
``integer``
    The whole forward in integers (`golden.compile`, `golden.int_forward`):
    embeddings, layer norms, attention and softmax, GELU, residuals and the
    head, one row per ``--tables`` format of the embedding and head tables
    (``int``: 8-bit integers; ``pot``: PoT codes of the weights' width;
    ``pot-head``: 8-bit embeddings and a PoT head). Only the scoring of its
    integer logits is float.

The calibration text is ``--calib``, else the checkpoint's train.bin, else its
val.bin, else the ``--data`` text (a uint16 .bin or UTF-8 text encoded with the
checkpoint's tokenizer); the JSON's ``calibration`` says which.

ΔCE is taken against the checkpoint's own float weights, or with ``--reference``
against another float model on the same windows: the model a QAT checkpoint was
trained from, whose weights are already PoT values and so are their own float.
"""

import argparse
import json
import sys
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .atomic import atomic_write
from .checkpoint import load_checkpoint
from .cli import HelpFormatter, UserError, run
from .compile import IntFormats, compile_model, parse_int_formats
from .datapath import DEFAULT_ACT_BITS, check_act_bits
from .int_forward import IntegerForward
from .integer_model import method_names, quantize_model, quantize_weights, with_quantized_weights
from .model_loading import DEFAULT_CALIB_TOKENS, split_tokens
from .paths import DEFAULT_MODEL_DIR
from .pot_format import check_bits
from .tokens import add_calib_arguments, calibration_tokens

__all__ = ["windows", "windows_per_batch", "cross_entropy", "evaluate", "main"]

DEFAULT_BITS_SWEEP = (3, 4, 5, 6)
FORWARDS = ("float", "linear", "integer")
DEFAULT_FORWARDS = ("float", "linear")
INT_TABLE_BITS = 8
TABLE_CHOICES = ("int", "pot", "pot-head")
_WINDOWS_PER_BATCH = 32
#: Largest logits array (floats) of one batch: GPT-2's 50,257-token head makes 206 MB a window of 1,024.
_BATCH_LOGITS = 1 << 26


def windows(tokens, block, max_tokens=None):
    """Inputs and targets (W, block) of the protocol above."""
    usable = len(tokens) - 1 if max_tokens is None else min(len(tokens) - 1, max_tokens)
    count = usable // block
    if count < 1:
        raise UserError(f"{len(tokens)} tokens hold no window of {block} inputs and targets"
                        + (f" within --max-tokens {max_tokens}" if max_tokens is not None else ""))
    flat = np.asarray(tokens[:count * block + 1], dtype=np.int64)
    return flat[:-1].reshape(count, block), flat[1:].reshape(count, block)


def windows_per_batch(block, vocab_size):
    """Windows scored at once: up to 32, fewer when their logits would pass `_BATCH_LOGITS` floats."""
    return max(1, min(_WINDOWS_PER_BATCH, _BATCH_LOGITS // (block * vocab_size)))


def cross_entropy(forward_loss, inputs, targets, progress=None, batch_windows=_WINDOWS_PER_BATCH):
    """Mean CE over every position, `batch_windows` windows at a time; `forward_loss(inputs, targets)` is a
    batch mean."""
    total = 0.0
    for start in range(0, len(inputs), batch_windows):
        batch = slice(start, start + batch_windows)
        total += forward_loss(inputs[batch], targets[batch]) * len(inputs[batch])
        if progress is not None:
            progress.update(len(inputs[batch]))
    return total / len(inputs)


def integer_formats(act_bits, tables, bits, overrides=None):
    """The `IntFormats` of an integer row: ``tables`` "int" (8-bit), "pot" (codes of `bits` bits) or
    "pot-head" (8-bit embeddings, PoT head); `overrides` (``--int-format``) replace any field."""
    embed = "pot" if tables == "pot" else "int"
    head = "int" if tables == "int" else "pot"
    fields = {"act_bits": act_bits, "tables": embed, "table_bits": INT_TABLE_BITS if embed == "int" else bits,
              "head": head, "head_bits": INT_TABLE_BITS if head == "int" else bits}
    return IntFormats(**{**fields, **(overrides or {})})


def tables_label(formats):
    """How a row names its table formats: "int8", "pot4", "int8+pot4 head"."""
    label = f"{formats.tables}{formats.table_bits}"
    head = f"{formats.head}{formats.head_bits}"
    return label if head == label else f"{label}+{head} head"


def evaluate(model, tokens, *, bits=DEFAULT_BITS_SWEEP, methods=None, act_bits=DEFAULT_ACT_BITS, block=None,
             max_tokens=None, calib_tokens=None, pot_scale=False, reference=None, progress=True,
             forwards=DEFAULT_FORWARDS, tables=("int",), int_formats=None):
    """Run the study; returns the JSON-ready result dictionary (without the checkpoint paths).

    `reference`, a float model, becomes the baseline of every ΔCE instead of `model`'s own float CE.
    `forwards` are the row kinds of the module docstring ("linear" and "integer" need `act_bits`)."""
    methods = list(methods or method_names())
    block = block or model.config.n_positions
    inputs, targets = windows(tokens, block, max_tokens)
    if act_bits is None:
        forwards = [f for f in forwards if f == "float"]
    per_weights = ("float" in forwards) + ("linear" in forwards) + ("integer" in forwards) * len(tables)
    runs = 1 + (reference is not None) + len(methods) * len(bits) * per_weights
    bar = tqdm(total=runs * len(inputs), unit="win", desc="eval", disable=not progress, file=sys.stderr)

    batch_windows = windows_per_batch(block, model.config.vocab_size)

    def ce_of(loss):
        return float(cross_entropy(loss, inputs, targets, bar, batch_windows))

    float_ce = ce_of(model.loss)
    baseline = float_ce if reference is None else ce_of(reference.loss)
    rows = []
    for method in methods:
        for b in bits:
            bar.set_postfix_str(f"{method} {b}-bit")
            weights = quantize_weights(model, bits=b, method=method, pot_scale=pot_scale, calib_tokens=calib_tokens)
            row_runs = []
            if "float" in forwards:
                row_runs.append(({"forward": "float", "act_bits": None}, with_quantized_weights(model, weights).loss))
            if "linear" in forwards:
                integer = quantize_model(model, calib_tokens=calib_tokens, bits=b, act_bits=act_bits, weights=weights)
                row_runs.append(({"forward": "linear", "act_bits": act_bits}, integer.loss))
            for kind in tables if "integer" in forwards else ():
                formats = integer_formats(act_bits, kind, b, int_formats)
                compiled = compile_model(model, calib_tokens=calib_tokens, bits=b, method=method, weights=weights,
                                         formats=formats)
                row_runs.append(({"forward": "integer", "act_bits": act_bits,
                                  "tables": tables_label(formats)}, IntegerForward(compiled).loss))
            for fields, loss in row_runs:
                ce = ce_of(loss)
                rows.append({"method": method, "bits": b, **fields, "ce": ce,
                             "ppl": float(np.exp(ce)), "delta": ce - baseline})
    bar.close()
    result = {"tokens": int(inputs.size), "block": block, "pot_scale": pot_scale,
              "float": {"ce": float_ce, "ppl": float(np.exp(float_ce))}, "rows": rows}
    if reference is not None:
        result["reference"] = {"ce": baseline, "ppl": float(np.exp(baseline))}
        result["float"]["delta"] = float_ce - baseline
    return result


def format_table(result):
    lines = [f"{'method':<12} {'bits':>4} {'act bits':>8} {'forward':>8} {'tables':>15} {'CE':>8} {'ppl':>8} "
             f"{'ΔCE':>8}"]
    if "reference" in result:
        reference = result["reference"]
        lines.append(f"{'reference':<12} {'-':>4} {'-':>8} {'float':>8} {'-':>15} {reference['ce']:8.4f} "
                     f"{reference['ppl']:8.3f} {'':>8}")
    delta = f"{result['float']['delta']:+8.4f}" if "delta" in result["float"] else f"{'':>8}"
    lines.append(f"{'float':<12} {'-':>4} {'-':>8} {'float':>8} {'-':>15} {result['float']['ce']:8.4f} "
                 f"{result['float']['ppl']:8.3f} {delta}")
    for row in result["rows"]:
        act = "float" if row["act_bits"] is None else str(row["act_bits"])
        forward = row.get("forward", "float" if row["act_bits"] is None else "linear")
        lines.append(f"{row['method']:<12} {row['bits']:>4} {act:>8} {forward:>8} {row.get('tables', '-'):>15} "
                     f"{row['ce']:8.4f} {row['ppl']:8.3f} {row['delta']:+8.4f}")
    return "\n".join(lines)


def plot(result, path):
    """ΔCE against bits, one line per method and forward (solid: float activations; dashed: integer
    linear layers; dotted: the whole integer forward, one line per table format)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    methods = dict.fromkeys(row["method"] for row in result["rows"])
    styles = {"float": "-o", "linear": "--s", "integer": ":^"}
    for index, method in enumerate(methods):
        kinds = dict.fromkeys((r.get("forward", "float" if r["act_bits"] is None else "linear"), r.get("tables"))
                              for r in result["rows"] if r["method"] == method)
        for forward, tables in kinds:
            rows = [r for r in result["rows"] if r["method"] == method and r.get("tables") == tables
                    and r.get("forward", "float" if r["act_bits"] is None else "linear") == forward]
            label = method if forward == "float" else f"{method}, A={rows[0]['act_bits']} {forward}"
            label += f" ({tables} tables)" if tables else ""
            ax.plot([r["bits"] for r in rows], [max(r["delta"], 1e-4) for r in rows], styles[forward],
                    color=f"C{index}", label=label)
    ax.set_yscale("log")
    ax.set_xlabel("weight bits (sign + exponent)")
    baseline = result.get("reference", result["float"])["ce"]
    ax.set_ylabel("ΔCE vs " + ("reference " if "reference" in result else "") + "float (nats)")
    ax.set_title(f"PoT quantization, float CE {baseline:.3f} on {result['tokens']} tokens")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m golden.eval", formatter_class=HelpFormatter,
        description="Cross-entropy of a GPT-2 with power-of-two weights against the float model.",
        epilog="examples:\n"
               "  python -m golden.eval --bits 3 4 5 6 --json build/eval.json --plot build/eval.png\n"
               "  python -m golden.eval --checkpoint golden/models/shakespeare_char_qat4 --bits 4 \\\n"
               "      --methods pot-channel --reference golden/models/shakespeare_char\n"
               "  python -m golden.eval --checkpoint golden/models/shakespeare_char_qat4 --bits 4 \\\n"
               "      --methods pot-channel --forward float linear integer --tables int pot")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(DEFAULT_MODEL_DIR),
                        help="Hugging Face GPT-2 directory or nanoGPT ckpt.pt")
    parser.add_argument("--data", metavar="FILE", help="text to score: a uint16 .bin token file or a UTF-8 .txt "
                                                       "encoded with the checkpoint's tokenizer "
                                                       "(default: the checkpoint's val.bin)")
    parser.add_argument("--bits", metavar="B", type=int, nargs="+", default=list(DEFAULT_BITS_SWEEP),
                        help="weight code widths, 3..8")
    parser.add_argument("--methods", metavar="M", nargs="+", default=None,
                        help=f"quantizers (default: all of {', '.join(method_names())})")
    parser.add_argument("--act-bits", metavar="A", type=int, default=DEFAULT_ACT_BITS,
                        help="activation bits of the linear and integer rows, 2..16 (0: no such rows)")
    parser.add_argument("--forward", metavar="F", nargs="+", choices=FORWARDS, default=None,
                        help=f"which rows: {', '.join(FORWARDS)}, the ops that are integer (default: "
                             f"{' '.join(DEFAULT_FORWARDS)}; float only with --act-bits 0)")
    parser.add_argument("--tables", metavar="T", nargs="+", choices=TABLE_CHOICES, default=["int"],
                        help="embedding and head tables of the integer rows: int (8-bit), pot (codes of --bits), "
                             "pot-head (8-bit embeddings, PoT head)")
    parser.add_argument("--int-format", metavar="NAME=VALUE", nargs="+", default=[],
                        help="integer rows: override a width of golden.compile.IntFormats, e.g. exp_frac_bits=6")
    parser.add_argument("--pot-scale", action="store_true", help="restrict channel scales to powers of two")
    parser.add_argument("--block", metavar="T", type=int, help="window length (default: the model's n_positions)")
    parser.add_argument("--max-tokens", metavar="N", type=int, help="score at most N positions (default: all)")
    add_calib_arguments(parser, DEFAULT_CALIB_TOKENS)
    parser.add_argument("--reference", metavar="PATH",
                        help="float model whose CE on the same windows is the ΔCE baseline, e.g. the model a "
                             "QAT checkpoint was trained from (default: the checkpoint's own float weights)")
    parser.add_argument("--json", metavar="OUT", help="write the result as JSON")
    parser.add_argument("--plot", metavar="OUT.png", help="plot ΔCE against bits")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    # Check every argument before any work starts.
    bits = [check_bits(b) for b in args.bits]
    act_bits = None if args.act_bits == 0 else check_act_bits(args.act_bits)
    int_formats = parse_int_formats(args.int_format)
    if act_bits is None and args.forward and set(args.forward) - {"float"}:
        raise UserError(f"--forward {' '.join(args.forward)} needs activation bits; "
                        f"--act-bits 0 leaves float rows only")
    methods = args.methods or method_names()
    for method in methods:
        if method not in method_names():
            raise UserError(f"Unknown quantization method {method!r}; choose from {', '.join(method_names())}")
    for name, value in (("--max-tokens", args.max_tokens), ("--calib-tokens", args.calib_tokens),
                        ("--block", args.block)):
        if value is not None and value < 1:
            raise UserError(f"{name} must be a positive integer, not {value}")
    model = load_checkpoint(args.checkpoint)
    if args.block is not None and args.block > model.config.n_positions:
        raise UserError(f"--block {args.block} is larger than the model's n_positions {model.config.n_positions}")
    reference = None
    if args.reference is not None:
        reference = load_checkpoint(args.reference)
        if reference.config.vocab_size != model.config.vocab_size:
            raise UserError(f"--reference {args.reference} has a vocabulary of {reference.config.vocab_size} tokens, "
                            f"the checkpoint {model.config.vocab_size}: they cannot score the same text")
        block = args.block or model.config.n_positions
        if block > reference.config.n_positions:
            raise UserError(f"--reference {args.reference} takes at most {reference.config.n_positions} positions, "
                            f"not the {block} of the windows")
    tokens = split_tokens(args.checkpoint, "val", model.config.vocab_size, args.data)
    calibration = calibration_tokens(args.checkpoint, model.config.vocab_size, args.calib, args.data)
    calib_inputs = windows(calibration.tokens, args.block or model.config.n_positions, args.calib_tokens)[0]

    result = evaluate(model, tokens, bits=bits, methods=methods, act_bits=act_bits, block=args.block,
                      max_tokens=args.max_tokens, calib_tokens=calib_inputs, pot_scale=args.pot_scale,
                      reference=reference, progress=not args.quiet, forwards=args.forward or DEFAULT_FORWARDS,
                      tables=args.tables, int_formats=int_formats)
    result = {"checkpoint": str(args.checkpoint),
              **({"reference_checkpoint": str(args.reference)} if reference is not None else {}), **result,
              "calibration": {**calibration.describe(), "tokens": int(calib_inputs.size)}}
    print(format_table(result))
    if args.json:
        atomic_write(args.json, json.dumps(result, indent=2) + "\n")
    if args.plot:
        plot(result, args.plot)
    return 0


if __name__ == "__main__":
    run(main, "python -m golden.eval")
