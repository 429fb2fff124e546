"""An icebram patch beside a full rebuild: the iCEBreaker bitstream of one checkpoint turned into another's.

    python benchmarks/bench_patch.py [--checkpoint DIR] [--other DIR] [--rows R] [--cols C] [--out DIR]

In one run: a full ``python -m hdl.build`` of --checkpoint (quantize, synthesize,
place and route, patch, pack), an export of --other (``python -m golden.export``,
not timed against either), then ``python -m hdl.build --patch`` of the build with
it. Prints the wall time of each command, the patch's own timings from its
report, and the ratio. The defaults are the hardware model and the embedded
model it was trained from: same shapes, other weights.
"""

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from golden.paths import BUILD_DIR, DEFAULT_MODEL_DIR, HARDWARE_MODEL_DIR, REPO_DIR  # noqa: E402


def timed(*args):
    """Run ``python -m`` `args` in the repository; returns the wall seconds (exits on failure)."""
    start = time.perf_counter()
    result = subprocess.run([sys.executable, "-m", *map(str, args)], cwd=REPO_DIR, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if result.returncode != 0:
        sys.exit(f"bench_patch: {' '.join(map(str, args[:1]))} failed: {result.stderr.strip()}")
    return seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--checkpoint", metavar="DIR", default=str(HARDWARE_MODEL_DIR), help="model built")
    parser.add_argument("--other", metavar="DIR", default=str(DEFAULT_MODEL_DIR), help="model patched in")
    parser.add_argument("--rows", metavar="R", type=int, default=2)
    parser.add_argument("--cols", metavar="C", type=int, default=16)
    parser.add_argument("--out", metavar="DIR", default=str(BUILD_DIR / "bench_patch"), help="scratch folder")
    args = parser.parse_args()
    out = Path(args.out)
    array = ("--rows", args.rows, "--cols", args.cols)

    print(f"full build of {args.checkpoint} ...", file=sys.stderr, flush=True)
    build = timed("hdl.build", "--board", "icebreaker", "--design", "linear", "--checkpoint", args.checkpoint, *array,
                  "--out", out / "build", "--quiet")
    timed("golden.export", "--checkpoint", args.other, "--cols", args.cols, "--out", out / "roms", "--quiet")
    print(f"patch with {args.other} ...", file=sys.stderr, flush=True)
    patch = timed("hdl.build", "--board", "icebreaker", "--patch", "--roms", out / "roms", "--build", out / "build",
                  "--out", out / "patched", "--quiet")
    report = json.loads((out / "patched" / "report.json").read_text())["patch"]
    print(f"{'full build (hdl.build)':<34} {build:8.1f} s")
    print(f"{'icebram patch (hdl.build --patch)':<34} {patch:8.1f} s   (in the command: icebram "
          f"{report['icebram_seconds']:.2f} s, icepack {report['icepack_seconds']:.2f} s, "
          f"all {report['seconds']:.2f} s)")
    print(f"{'ratio':<34} {build / patch:8.0f} x faster")


if __name__ == "__main__":
    main()
