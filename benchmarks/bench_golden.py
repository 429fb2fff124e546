"""Golden model speed: numpy PoT evaluation beside a torch float forward, same model, same tokens.

    python benchmarks/bench_golden.py [--checkpoint DIR] [--windows W] [--bits B] [--repeat R]

Prints seconds per pass and tokens/s for: torch float (transformers GPT2LMHeadModel),
numpy float, numpy with PoT weights (float activations) and the numpy integer
datapath, each as a ratio to torch, measured in one run (best of --repeat).
Needs the torch extra.
"""

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.checkpoint import load_checkpoint  # noqa: E402
from golden.data import read_tokens  # noqa: E402
from golden.eval import windows  # noqa: E402
from golden.integer_model import quantize_model, quantize_weights, with_quantized_weights  # noqa: E402
from golden.paths import DEFAULT_MODEL_DIR  # noqa: E402


def best_time(function, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return min(times)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", metavar="DIR", default=str(DEFAULT_MODEL_DIR))
    parser.add_argument("--windows", metavar="W", type=int, default=64, help="windows of n_positions tokens")
    parser.add_argument("--bits", metavar="B", type=int, default=4)
    parser.add_argument("--repeat", metavar="R", type=int, default=3)
    args = parser.parse_args()

    import torch
    import transformers

    torch.set_num_threads(max(1, len(__import__("os").sched_getaffinity(0))))
    model = load_checkpoint(args.checkpoint)
    tokens = read_tokens(Path(args.checkpoint) / "val.bin", model.config.vocab_size)
    inputs, targets = windows(tokens, model.config.n_positions, args.windows * model.config.n_positions)
    calib, _ = windows(read_tokens(Path(args.checkpoint) / "train.bin"), model.config.n_positions, 8192)

    hf = transformers.GPT2LMHeadModel.from_pretrained(args.checkpoint).eval()
    torch_inputs = torch.tensor(inputs)

    def torch_forward():
        with torch.no_grad():
            hf(torch_inputs)

    weights = quantize_weights(model, bits=args.bits)
    pot = with_quantized_weights(model, weights)
    integer = quantize_model(model, calib_tokens=calib, bits=args.bits, weights=weights)
    runs = [("torch float (transformers)", torch_forward),
            ("numpy float", lambda: model.forward(inputs)),
            (f"numpy PoT {args.bits}-bit weights", lambda: pot.forward(inputs)),
            (f"numpy integer datapath {args.bits}-bit, A=8", lambda: integer.forward(inputs))]
    print(f"{inputs.size} tokens ({len(inputs)} windows of {inputs.shape[1]}), {torch.get_num_threads()} threads, "
          f"best of {args.repeat}")
    print(f"{'run':<40} {'seconds':>8} {'tokens/s':>10} {'vs torch':>9}")
    reference = None
    for name, function in runs:
        function()                                                     # warm up
        seconds = best_time(function, args.repeat)
        reference = reference or seconds
        print(f"{name:<40} {seconds:8.3f} {inputs.size / seconds:10.0f} {seconds / reference:8.2f}x")


if __name__ == "__main__":
    main()
