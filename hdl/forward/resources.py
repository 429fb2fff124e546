"""Resources of every whole-forward unit on iCE40, and of the whole core on iCE40 and ECP5.

    python -m hdl.forward.resources [--checkpoint DIR] [--only NAME] [--no-pack] [--json]
    python -m hdl.forward.resources --only attention --fmax [--context N] [--attention-lanes L --attention-units U]
    python -m hdl.forward.resources --core [--family ice40|ecp5] [--context N] [--constants rom|flash]
                                    [--checkpoint DIR] [--json]

Each unit is sized from the checkpoint's compiled artefact (`hdl.forward.units`)
and synthesized alone (`hdl.bench.synthesize` with DSP inference); the table gives Yosys's cell counts (SB_LUT4,
SB_CARRY, flip-flops, SB_MAC16 DSPs, SB_RAM40_4K EBRs) and nextpnr's packed
logic cells (ICESTORM_LC). The iCE40UP5K has 5,280 LC, 8 DSP and 30 EBR.
Figures come from the tools' own reports; nothing is estimated here.

``--fmax`` places and routes each chosen unit alone on the ECP5 (LFE5U-85F,
speed 6, the ULX3S's; Yosys ``synth_ecp5``, nextpnr-ecp5 with its ports on
pins of its choosing) and adds nextpnr's Fmax of the unit's clock (register
to register; the paths from and to the pins are not counted) and its ECP5
cells. ``--attention-lanes`` / ``--attention-units`` size the attention unit
as the core builds it (``ForwardCore(attention_lanes=, attention_units=)``: a
unit of ``n_head / units`` heads), ``--context`` its KV cache.

``--core`` synthesizes the whole `ForwardCore` once per family with
``-noflatten`` (Yosys ``synth_ice40 -dsp`` / ``synth_ecp5``), so each unit's
cells are counted where they sit in the full design (its subtree of the
hierarchy: the unit and everything inside it; the core's own sequencer, program
table and memory readers are the row "core (sequencer)"), and packs the whole
netlist with nextpnr (``--pack-only``) for the core's logic cells
(ICESTORM_LC, TRELLIS_COMB). The iCE40 core is the iCEBreaker's, its constants
streamed from the SPI flash (``--constants rom`` for block RAM). Keeping the hierarchy stops Yosys optimising
across units, so the sum can be a little above a flattened build's.
"""

import json
import re
import sys
import tempfile
from collections import Counter
from pathlib import Path

from golden.cli import ArgumentParser, HelpFormatter, positive_int, run

from ..bench import synthesize
from ..read_port import YOSYS_AFTER_READ
from ..toolchain import ToolError, run_tool, tool_command

__all__ = ["unit_resources", "unit_fmax", "FAMILIES", "hierarchy_resources", "core_resources", "main"]

UP5K = {"lc": 5280, "dsp": 8, "ebr": 30}

#: Per family: the synthesis command, the cell kinds a row counts (column -> Yosys cells), the device
#: nextpnr packs for, its logic-cell kind and what the device has.
FAMILIES = {
    "ice40": {"synth": "synth_ice40 -dsp", "nextpnr": "NEXTPNR_ICE40", "device": ["--up5k", "--package", "sg48"],
              "name": "iCE40UP5K", "lc_cell": "ICESTORM_LC",
              "columns": {"lut4": ("SB_LUT4",), "carry": ("SB_CARRY",), "ff": ("SB_DFF",), "dsp": ("SB_MAC16",),
                          "bram": ("SB_RAM40_4K",), "spram": ("SB_SPRAM256KA",)},
              "has": {"lc": 5280, "dsp": 8, "bram": 30, "spram": 4}},
    "ecp5": {"synth": "synth_ecp5", "nextpnr": "NEXTPNR_ECP5", "device": ["--85k", "--package", "CABGA381"],
             "name": "LFE5U-85F", "lc_cell": "TRELLIS_COMB",
             "columns": {"lut4": ("LUT4",), "carry": ("CCU2C",), "ff": ("TRELLIS_FF",), "dsp": ("MULT18X18D",),
                         "bram": ("DP16KD",), "lutram": ("TRELLIS_DPR16X4",)},
             "has": {"lc": 83640, "dsp": 156, "bram": 208}},
}


def _subtree_cells(modules, name, memo):
    """Primitive cells of module `name` and everything instantiated inside it (Yosys ``stat -json`` modules)."""
    if name not in memo:
        total = Counter()
        for cell, count in modules[name]["num_cells_by_type"].items():
            child = "\\" + cell
            if child in modules:
                for kind, n in _subtree_cells(modules, child, memo).items():
                    total[kind] += n * count
            else:
                total[cell] += count
        memo[name] = total
    return memo[name]


def _columns(cells, family):
    spec = FAMILIES[family]["columns"]
    return {column: sum(n for cell, n in cells.items() if any(cell.startswith(p) for p in prefixes))
            for column, prefixes in spec.items()}


def hierarchy_resources(component, family, work, *, pack=True, depth=1, platform=None):
    """Synthesize `component` for `family` keeping its hierarchy; returns ``{"units": [...], "total": {...}}``.

    Each unit row is ``{"unit": path below the top, cells by column}`` for the modules `depth` levels down
    (a unit and all inside it); a row "(own logic)" holds the top's cells outside any unit. ``total`` adds
    nextpnr's packed logic cells (``lc``, None with `pack` False or without nextpnr). `platform` is what the
    component is elaborated for (an iCE40 platform makes `hdl.single_port_memory.SinglePortMemory` SPRAM).
    """
    from amaranth.back import verilog

    spec = FAMILIES[family]
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    from amaranth import Signal
    from amaranth.lib import data

    # The ports are the signature's signals, a structured payload's (`data.View`) too: left out, it would be
    # a constant 0 and Yosys would fold away what it feeds (the core's `start` settings). An always-ready
    # stream's constant ``ready`` is not a port.
    values = [value for _, _, value in component.signature.flatten(component)]
    ports = [value for value in (v.as_value() if isinstance(v, data.View) else v for v in values)
             if isinstance(value, Signal)]
    (work / "top.v").write_text(verilog.convert(component, name="top", ports=ports, emit_src=False,
                                                platform=platform))
    (work / "synth.ys").write_text(f"read_verilog top.v\n{YOSYS_AFTER_READ}\n"
                                   f"{spec['synth']} -noflatten -top top -json top.json\n"
                                   "tee -q -o stat.json stat -json -top top\n")
    run_tool("YOSYS", ["-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=work, log_path=work / "yosys.stdout")
    modules = json.loads((work / "stat.json").read_text())["modules"]
    memo, rows = {}, []
    total = _subtree_cells(modules, "\\top", memo)

    def walk(name, path, level):
        for cell, count in modules[name]["num_cells_by_type"].items():
            child = "\\" + cell
            if child in modules:
                label = cell.split(".", 1)[1] if "." in cell else cell
                if level < depth:
                    walk(child, label, level + 1)
                else:
                    rows.append({"unit": label, "instances": count,
                                 **_columns(Counter({k: v * count for k, v in
                                                     _subtree_cells(modules, child, memo).items()}), family)})
    walk("\\top", "", 1)
    inside = Counter()
    for row in rows:
        for column in spec["columns"]:
            inside[column] += row[column]
    whole = _columns(total, family)
    rows.append({"unit": "(own logic)", "instances": 1, **{k: whole[k] - inside[k] for k in whole}})
    whole["lc"] = _pack(work, family) if pack else None
    return {"family": family, "device": spec["name"], "units": rows, "total": whole}


def _pack(work, family):
    """nextpnr's packed logic cells of ``top.json`` in `work` (None when nextpnr is missing or refuses)."""
    spec = FAMILIES[family]
    try:
        log = run_tool(spec["nextpnr"], [*spec["device"], "--json", "top.json", "--pack-only", "--log", "pack.log"],
                       cwd=work, log_path=work / "nextpnr.stdout")
    except ToolError:
        log = (work / "pack.log").read_text(errors="replace") if (work / "pack.log").is_file() else ""
    found = re.findall(rf"{spec['lc_cell']}:\s+(\d+)/", log or "")
    return int(found[-1]) if found else None


def core_resources(compiled, *, family, context, pack=True, work=None, **core):
    """`hierarchy_resources` of the `ForwardCore` of `compiled` at `context` positions.

    `core`: `ForwardCore` options; on ice40 by default the iCEBreaker forward build's
    (`hdl.build_forward.FORWARD_CORES`: codes loaded into SPRAM, 2 attention lanes; its constants streamed
    from the SPI flash, ``constants="flash"``, unless the build names its own), elaborated for the
    iCEBreaker's platform so that the codes and the KV cache are SPRAM; on ecp5 a 4 x 3 array.
    """
    from ..build_forward import FORWARD_CORES
    from .forward_core import ForwardCore

    platform = None
    if family == "ice40":
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        core, platform = {"constants": "flash", **FORWARD_CORES["icebreaker"], **core}, ICEBreakerPlatform()
    core = ForwardCore(compiled=compiled, context=context, **{"rows": 4, "columns": 3, **core})
    if work is not None:
        return {"constants": core.constant_source, **hierarchy_resources(core, family, work, pack=pack,
                                                                         platform=platform)}
    with tempfile.TemporaryDirectory(prefix="potgen-core-") as temporary:
        return {"constants": core.constant_source, **hierarchy_resources(core, family, temporary, pack=pack,
                                                                         platform=platform)}


def unit_fmax(component, work, *, frequency=45.0, seed=1):
    """Place and route `component` alone on the LFE5U-85F (speed 6) in folder `work`.

    Returns ``{"fmax_mhz", "target_mhz", "ecp5": {LUT4, CCU2C, ..: count}}``: nextpnr-ecp5's final Fmax of
    the component's one clock (``--timing-allow-fail``: a miss is a figure, not an error) and Yosys's cells.
    """
    from amaranth.back import verilog

    from ..reports_ecp5 import read_ecp5_report

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    (work / "top.v").write_text(verilog.convert(component, name="top", emit_src=False))
    (work / "synth.ys").write_text(f"read_verilog top.v\n{YOSYS_AFTER_READ}\nsynth_ecp5 -top top -json top.json\n"
                                   "tee -q -o stat.json stat -json\n")
    run_tool("YOSYS", ["-q", "-l", "yosys.log", "-s", "synth.ys"], cwd=work, log_path=work / "yosys.stdout")
    cells = json.loads((work / "stat.json").read_text())["design"]["num_cells_by_type"]
    spec = FAMILIES["ecp5"]
    run_tool(spec["nextpnr"], [*spec["device"], "--speed", "6", "--json", "top.json", "--freq", frequency,
                               "--seed", seed, "--timing-allow-fail", "--log", "nextpnr.log",
                               "--report", "report.json"], cwd=work, log_path=work / "nextpnr.stdout")
    usage = read_ecp5_report((work / "report.json").read_text())
    if not usage.fmax:
        raise ToolError(f"nextpnr-ecp5 reported no Fmax (log: {work / 'nextpnr.log'})")
    _, achieved, target = usage.main_clock
    kept = ("LUT4", "CCU2C", "TRELLIS_FF", "MULT18X18D", "DP16KD", "TRELLIS_DPR16X4")
    return {"fmax_mhz": achieved, "target_mhz": target,
            "ecp5": {kind: cells.get(kind, 0) for kind in kept}}


def unit_resources(compiled, *, pack=True, only=None, progress=None, units=None, fmax=False, seed=1):
    """``[{"unit", ...hdl.bench.synthesize's figures}]`` for the units of `compiled` (`hdl.forward.units.units_for`).

    `only`: a substring; only units whose name contains it. `units`: ``{name: component}`` in place of
    ``units_for(compiled)``. `fmax`: each row also gets `unit_fmax`'s figures (ECP5 place and route, `seed`).
    """
    from .units import units_for

    rows = []
    units = units if units is not None else units_for(compiled)
    units = {label: unit for label, unit in units.items() if only is None or only in label}
    if not units:
        raise ValueError(f"no unit name contains {only!r}")
    with tempfile.TemporaryDirectory(prefix="potgen-forward-") as work:
        for index, (label, unit) in enumerate(units.items()):
            row = {"unit": label, **synthesize(unit, f"unit{index}", work, pack=pack, dsp=True)}
            if fmax:
                row.update(unit_fmax(unit, Path(work) / f"ecp5_{index}", seed=seed))
            rows.append(row)
            if progress:
                progress(row)
    return rows


def _table(rows):
    timed = any("fmax_mhz" in r for r in rows)
    head = (f"{'unit':<44}{'LUT4':>7}{'CARRY':>7}{'DFF':>7}{'DSP':>5}{'EBR':>5}{'LC':>7}{'LC % UP5K':>11}"
            + (f"{'ECP5 LUT4':>11}{'MULT18':>8}{'DP16KD':>8}{'ECP5 MHz':>10}" if timed else ""))
    lines = [head, "-" * len(head)]
    for r in rows:
        lc = "-" if r["lc"] is None else str(r["lc"])
        share = "-" if r["lc"] is None else f"{100 * r['lc'] / UP5K['lc']:.1f}"
        line = (f"{r['unit']:<44}{r['lut4']:>7}{r['carry']:>7}{r['dff']:>7}{r['dsp']:>5}{r['ebr']:>5}"
                f"{lc:>7}{share:>11}")
        if timed:
            e = r["ecp5"]
            line += f"{e['LUT4']:>11}{e['MULT18X18D']:>8}{e['DP16KD']:>8}{r['fmax_mhz']:>10.2f}"
        lines.append(line)
    return "\n".join(lines)


def _core_table(result):
    has = FAMILIES[result["family"]]["has"]
    columns = list(FAMILIES[result["family"]]["columns"])
    head = f"{'unit':<22}" + "".join(f"{c.upper():>8}" for c in columns)
    lines = [f"{result['device']}: the forward core, context {result['context']}, constants "
             f"{result.get('constants', 'rom')} (hierarchy kept)", head,
             "-" * len(head)]
    for row in result["units"]:
        lines.append(f"{row['unit']:<22}" + "".join(f"{row[c]:>8}" for c in columns))
    total = result["total"]
    lines.append("-" * len(head))
    lines.append(f"{'core':<22}" + "".join(f"{total[c]:>8}" for c in columns))
    lc = "n/a" if total["lc"] is None else f"{total['lc']} of {has['lc']} ({100 * total['lc'] / has['lc']:.0f}%)"
    lines.append(f"packed logic cells: {lc}; DSP {total['dsp']} of {has['dsp']}; block RAM {total['bram']} of "
                 f"{has['bram']}" + (f"; SPRAM {total['spram']} of {has['spram']}" if "spram" in has else ""))
    return "\n".join(lines)


def main(argv=None):
    p = ArgumentParser(
        prog="python -m hdl.forward.resources", formatter_class=HelpFormatter,
        description="Synthesize each whole-forward unit, sized from a compiled checkpoint, for the iCE40UP5K "
                    "and print LUT4 / carry / DFF / DSP / EBR / logic cells per unit; with --core, the whole "
                    "forward core on iCE40 and ECP5, each unit counted inside it.",
        epilog="examples:\n"
               "  python -m hdl.forward.resources --only sampler --json > build/forward_units.json\n"
               "  python -m hdl.forward.resources --core --family ecp5 --context 128\n"
               "  python -m hdl.forward.resources --only attention --fmax --context 256 --attention-lanes 16 "
               "--attention-units 4")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--bits", metavar="b", type=positive_int, default=4, help="PoT code width of the linear layers")
    p.add_argument("--only", metavar="NAME", default=None, help="only the units whose name contains NAME")
    p.add_argument("--core", action="store_true", help="the whole ForwardCore, hierarchy kept, per family")
    p.add_argument("--family", metavar="F", choices=("ice40", "ecp5", "both"), default="both",
                   help="with --core: ice40, ecp5 or both")
    p.add_argument("--constants", choices=("rom", "flash"), default=None,
                   help="with --core: the core's constants in block RAM or streamed from the SPI flash (default: "
                        "the board build's; flash on ice40, rom on ecp5)")
    p.add_argument("--context", metavar="N", type=positive_int, default=None,
                   help="KV cache positions (default: the model's n_positions with --core, else 4)")
    p.add_argument("--attention-lanes", metavar="L", type=positive_int, default=None,
                   help="size the attention unit as the core does with this many lanes (a power of two)")
    p.add_argument("--attention-units", metavar="U", type=positive_int, default=1,
                   help="with --attention-lanes: units side by side (the unit has n_head / U heads)")
    p.add_argument("--fmax", action="store_true",
                   help="also place and route each unit alone on the ECP5 (LFE5U-85F) for its Fmax")
    p.add_argument("--seed", metavar="S", type=positive_int, default=1, help="with --fmax: nextpnr's seed")
    p.add_argument("--no-pack", action="store_true", help="skip nextpnr packing (no logic-cell counts)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    from golden.cli import UserError
    from golden.compile import compile_checkpoint

    tool_command("YOSYS")
    compiled = compile_checkpoint(args.checkpoint, bits=args.bits)
    if args.core:
        context = args.context or compiled.config.n_positions
        if context > compiled.config.n_positions:
            raise UserError(f"--context {context}: the model has {compiled.config.n_positions} positions")
        results = []
        for family in (("ice40", "ecp5") if args.family == "both" else (args.family,)):
            print(f"synthesizing the forward core for {FAMILIES[family]['name']} ...", file=sys.stderr, flush=True)
            options = {} if args.constants is None else {"constants": args.constants}
            results.append({"context": context, **core_resources(compiled, family=family, context=context,
                                                                 pack=not args.no_pack, **options)})
        print(json.dumps(results, indent=1) if args.json else "\n\n".join(map(_core_table, results)))
        return 0
    units = None
    if args.attention_lanes is not None or args.context is not None:
        from .units import attention_for, units_for

        positions = args.context or 4
        units = units_for(compiled, cache_positions=positions)
        if args.attention_lanes is not None:
            lanes, groups = args.attention_lanes, args.attention_units
            try:
                unit = attention_for(compiled, positions=positions, lanes=lanes, groups=groups)
            except ValueError as error:
                raise UserError(f"--attention-lanes {lanes} --attention-units {groups}: {error}") from None
            units = {label: u for label, u in units.items() if "attention" not in label}
            units[f"attention {lanes} lanes, 1 of {groups} (cache {positions})"] = unit
    if args.fmax:
        tool_command("NEXTPNR_ECP5")
    rows = unit_resources(compiled, pack=not args.no_pack, only=args.only, units=units, fmax=args.fmax,
                          seed=args.seed, progress=lambda row: print(f"synthesized {row['unit']}", file=sys.stderr))
    print(json.dumps({"device": "iCE40UP5K", "budget": UP5K, "units": rows}, indent=1) if args.json
          else _table(rows))
    return 0


if __name__ == "__main__":
    run(main, "python -m hdl.forward.resources")
