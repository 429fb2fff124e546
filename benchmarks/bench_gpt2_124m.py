"""GPT-2 124M's shapes: golden's PoT evaluation beside a torch float forward of the same tokens, in one run.

    python benchmarks/bench_gpt2_124m.py [--checkpoint DIR] [--windows W] [--bits B] [--threads N] [--repeat R]

The model is a randomly initialised GPT-2 of 124M's exact configuration (12
layers, n_embd 768, 12 heads, vocabulary 50,257, 1,024 positions), made with
transformers' own initialisation into ``build/gpt2-124m-shape`` the first
time (nothing is downloaded; a real GPT-2 directory can be given instead). The
tokens are W windows of 1,024 random ids (seed 0). Printed, best of --repeat:

- torch float: transformers' ``GPT2LMHeadModel`` forward and cross-entropy;
- golden float: ``golden.gpt2.GPT2.loss``;
- golden PoT: the same with the weights quantized to B-bit PoT codes
  (``--method``), which is what ``python -m golden.eval`` scores per row,

each as seconds, tokens/s and a ratio to torch, plus both float CEs. BLAS and
torch get the same --threads (1 by default: on a shared machine, multi-threaded
BLAS waits on busy cores and the figures stop meaning anything). Needs the torch extra.
"""

import argparse
import os
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_CHECKPOINT = REPO / "build" / "gpt2-124m-shape"


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", metavar="DIR", default=str(DEFAULT_CHECKPOINT),
                        help="GPT-2 directory; made (random, 124M's shapes) if it does not exist")
    parser.add_argument("--windows", metavar="W", type=int, default=1, help="windows of 1,024 tokens")
    parser.add_argument("--bits", metavar="B", type=int, default=4, help="PoT code width")
    parser.add_argument("--method", metavar="M", default="pot-channel", help="quantization method")
    parser.add_argument("--threads", metavar="N", type=int, default=1, help="BLAS and torch threads")
    parser.add_argument("--repeat", metavar="R", type=int, default=2, help="passes of each run (best is kept)")
    return parser.parse_args()


def best_time(function, repeat):
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = function()
        best = min(best, time.perf_counter() - start)
    return best, result


def main():
    args = parse_args()
    for variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[variable] = str(args.threads)              # before numpy loads its BLAS
    sys.path[:0] = [str(REPO), str(REPO / "tests")]

    import numpy as np
    import torch
    import torch.nn.functional as F
    import transformers

    from golden.checkpoint import load_checkpoint
    from golden.eval import cross_entropy, windows, windows_per_batch
    from golden.integer_model import quantize_weights, with_quantized_weights
    from tiny_checkpoints import write_gpt2_124m_shape_checkpoint

    torch.set_num_threads(args.threads)
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        print(f"making {checkpoint} (random GPT-2, 124M's shapes) ...", file=sys.stderr)
        write_gpt2_124m_shape_checkpoint(checkpoint)
    model = load_checkpoint(checkpoint)
    c = model.config
    block = c.n_positions
    tokens = np.random.default_rng(0).integers(0, c.vocab_size, args.windows * block + 1)
    inputs, targets = windows(tokens, block)
    batch = windows_per_batch(block, c.vocab_size)

    transformers.utils.logging.disable_progress_bar()
    hf = transformers.GPT2LMHeadModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    torch_inputs, torch_targets = torch.from_numpy(inputs), torch.from_numpy(targets)

    def torch_ce():
        with torch.no_grad():
            total = 0.0
            for start in range(0, len(inputs), batch):
                logits = hf(torch_inputs[start:start + batch]).logits
                ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), torch_targets[start:start + batch].reshape(-1))
                total += float(ce) * len(logits)
            return total / len(inputs)

    start = time.perf_counter()
    weights = quantize_weights(model, bits=args.bits, method=args.method)
    pot = with_quantized_weights(model, weights)
    quantize_seconds = time.perf_counter() - start

    runs = [("torch float (transformers)", torch_ce),
            ("golden float", lambda: cross_entropy(model.loss, inputs, targets, batch_windows=batch)),
            (f"golden PoT {args.bits}-bit ({args.method})", lambda: cross_entropy(pot.loss, inputs, targets,
                                                                                   batch_windows=batch))]
    params = sum(int(np.prod(p.shape)) for p in model.params.values())
    print(f"GPT-2 {c.n_layer} layers, n_embd {c.n_embd}, {c.n_head} heads, vocab {c.vocab_size}, "
          f"{c.n_positions} positions ({params / 1e6:.1f}M parameters); {inputs.size} tokens "
          f"({len(inputs)} windows of {block}), {args.threads} thread(s), best of {args.repeat}")
    print(f"{'run':<34} {'seconds':>8} {'tokens/s':>9} {'vs torch':>9} {'CE':>9}")
    reference = None
    for name, function in runs:
        seconds, ce = best_time(function, args.repeat)
        reference = reference or seconds
        print(f"{name:<34} {seconds:8.2f} {inputs.size / seconds:9.0f} {seconds / reference:8.2f}x {ce:9.4f}")
    print(f"quantizing the {len(model.linear_names)} linear layers to {args.bits}-bit PoT ({args.method}) took "
          f"{quantize_seconds:.1f} s, once")


if __name__ == "__main__":
    main()
