"""Build the whole-forward design for a board: ``python -m hdl.build --design forward``.

The board top (`boards.forward_top.compose_forward`: PLL, UART, `ForwardLink`,
`hdl.forward.forward_core.ForwardCore`) takes a prompt and the generation's
settings over the UART and sends back tokens. Before anything long:

1. the checkpoint is compiled (`golden.compile.compile_checkpoint`, with the
   ``--int-format`` overrides) and its memories are weighed against the board
   (`hdl.forward.budget`): a checkpoint whose codes, KV cache, constants and
   buffers do not fit at the asked context is refused in one line with the
   budget (exit status 2), naming the largest context that would fit;
2. the board top is elaborated; beside synthesis, the core is simulated
   (`sim.forward_cycles.measure_cycles`: one prompt id, then tokens up to the
   full context) to count the cycles of a token at position 1 and at the
   last position;
3. Yosys, nextpnr and icepack (iCEBreaker) or ecppack (ULX3S) run as for the
   linear design; a design larger than the chip is refused with nextpnr's
   counts (LC / DSP / EBR / SPRAM against the chip).

``report.json`` holds what the linear design's does for the chip (cells used and
available, Fmax) and ``design`` ("forward"), ``context``, ``cycles_per_token``
(``position_1``, ``full_context``: simulated), ``tokens_per_s`` (the build's
clock over the full-context cycles) and ``tokens_per_s_fmax`` (the same at the
achieved Fmax), and the memory budget.

A top that reads the SPI flash (the iCEBreaker's: its core streams its
constants, ``constants="flash"``, and its codes are read into SPRAM at reset,
``codes="loaded"``: `boards.forward_top.ForwardTop.flash_image`) needs its
image in the flash beside the bitstream: the build writes it as
``constants.bin`` next to ``top.bin`` (inside the output folder, which
appears whole or not at all) and names it in ``report.json`` (``flash_image``:
file, flash offset, bytes, sha256, where the codes start) and in the table,
with the command that writes it (``iceprog -o 1M constants.bin``).
"""

import json
import re
import sys
import threading
import time
from pathlib import Path

from boards.forward_top import BOARDS as FORWARD_BOARDS
from golden.atomic import atomic_directory
from golden.cli import UserError

from .forward.budget import BOARDS as BUDGET_BOARDS
from .forward.budget import fit, forward_memories, place, refusal
from .read_port import YOSYS_AFTER_READ
from .reports import format_table, read_nextpnr_log, read_nextpnr_report
from .toolchain import ToolError, run_tool, tool_command

__all__ = ["DESIGNS", "FORWARD_FREQ_MHZ", "FORWARD_CORES", "FLASH_IMAGE", "build_forward", "check_budget",
           "forward_report_table", "write_flash_image"]

DESIGNS = ("linear", "forward")
#: The forward design's default clocks: a multiple of 3 MHz (UART at 3 Mbaud) below the Fmax nextpnr reaches at
#: seed 1. iCE40UP5K: the whole top routes at about 26 MHz (the core's handshake chain into the requantiser is
#: the worst path), so 24 MHz. ECP5: the default model's core at context 128 was estimated at 27.77 MHz after
#: placement and never routed; a tiny checkpoint's core reaches 48.5-50.9 MHz.
FORWARD_FREQ_MHZ = {"icebreaker": 24.0, "ulx3s": 33.0}
#: The core each board's forward build holds (`ForwardCore` parameters): on the UP5K the board's core defaults
#: (`boards.forward_top.BOARDS`: the 2 x 3 array its three code SPRAMs feed (a 16-bit word of two beats each),
#: codes read from the flash into SPRAM at reset, a 16-bit KV cache word, 1 head lane, constants from the SPI
#: flash); on the ECP5-85F the 16 x 16 array, 16 head lanes and a 16-lane attention unit per head
#: (`hdl.forward.forward_core`'s fastest measured shape at context 128).
FORWARD_CORES = {"icebreaker": dict(FORWARD_BOARDS["icebreaker"].core_defaults),
                 "ulx3s": {"rows": 16, "columns": 16, "head_lanes": 16, "attention_lanes": 16, "attention_units": 4}}
ICE40_TOOLS = ("YOSYS", "NEXTPNR_ICE40", "ICEPACK")
#: Options of the iCE40 build's ``synth_ice40``: ``-dsp`` puts the forward core's multipliers in the DSPs.
ICE40_SYNTH_OPTS = "-dsp"
#: The constant image's file name beside the bitstream.
FLASH_IMAGE = "constants.bin"


def _say(message, quiet=False):
    if not quiet:
        print(f"hdl.build: {message}", file=sys.stderr, flush=True)


def check_budget(compiled, board, context, core):
    """The context to build (`context`, or the board top's default) once the memory budget allows it.

    Raises `UserError` (one line: what the memories need against the chip, the largest context that fits).
    """
    from boards.forward_top import default_context

    chip = BUDGET_BOARDS[board]
    n_positions = compiled.config.n_positions
    if context is None:
        context = default_context(board, compiled)
    elif context > n_positions:
        raise UserError(f"--context {context}: the model has {n_positions} positions")
    problem = refusal(compiled, chip, context, **core)
    if problem:
        raise UserError(problem)
    return context


def _measure_in_background(compiled, board, context, core, quiet):
    """Start `sim.forward_cycles.measure_cycles` in a thread; returns a callable that waits for its result."""
    from sim.forward_cycles import measure_cycles

    result, failure = {}, []

    def work():
        try:
            result.update(measure_cycles(compiled, board=board, context=context, **core))
        except BaseException as error:          # noqa: BLE001 - re-raised in the caller's thread
            failure.append(error)

    _say(f"simulating the board top for its cycles per token (positions 1 to {context - 2}), beside synthesis ...",
         quiet)
    thread = threading.Thread(target=work, daemon=True)
    thread.start()

    def wait():
        thread.join()
        if failure:
            raise failure[0]
        _say(f"simulated: {result['position_1']} cycles per token at position 1, {result['full_context']} at "
             f"position {context - 2}", quiet)
        return dict(result)
    return wait


def _implement_ice40(top, work, seed, quiet):
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from .build import _implement

    platform = ICEBreakerPlatform()
    # The forward core's multipliers belong in the SB_MAC16s: Amaranth's synth_ice40 maps them to logic unless told.
    plan = platform.prepare(top, name="top", debug_verilog=True, synth_opts=ICE40_SYNTH_OPTS,
                            script_after_read=YOSYS_AFTER_READ)
    for name, content in plan.files.items():
        if name.startswith("top.") and not name.endswith((".sh", ".bat")):
            target = work / ("top.v" if name == "top.debug.v" else name)
            target.write_bytes(content.encode() if isinstance(content, str) else content)
    _implement(work, seed, quiet)
    run_tool("ICEPACK", ["top.asc", "top.bin"], cwd=work, log_path=work / "icepack.log")
    usage = read_nextpnr_report((work / "nextpnr.json").read_text())
    if not usage.fmax:
        usage.fmax = read_nextpnr_log((work / "nextpnr.log").read_text()).fmax
    return platform.device, usage


def _implement_ulx3s(top, work, seed, quiet):
    from .build_ecp5 import implement_ecp5, ulx3s_platform

    platform = ulx3s_platform()
    _say(f"synthesizing, placing and routing for the {platform.device} (seed {seed}) ...", quiet)
    return platform.device, implement_ecp5(top, work, platform=platform, seed=seed, verilog=True)


def _chip_refusal(error, board):
    """A place-and-route failure as the one line a too-large forward design gets."""
    text = str(error)
    timing = re.search(r"Max frequency for clock '[^']*': ([\d.]+) MHz \(FAIL at ([\d.]+) MHz\)", text)
    if timing:
        achieved = float(timing.group(1))
        return (f"timing not met: {achieved:.2f} MHz achieved for {float(timing.group(2)):.2f} MHz; rebuild with "
                f"--freq {int(achieved // 3) * 3} (or another --seed)")
    chip = BUDGET_BOARDS[board]
    if "does not fit" in text:
        detail = text.split("(", 1)[1].split(")", 1)[0] if "(" in text else text
        return f"the forward design won't fit the {chip.device}: {detail}"
    # nextpnr-ice40 may pack more logic cells than the chip has and fail only when the placer cannot spread them.
    spread = re.search(r"Failed to expand region .* of (\d+) ICESTORM_LCs", text)
    if spread:
        return f"the forward design won't fit the {chip.device}: LC {spread.group(1)}/{chip.lc}"
    return text


def write_flash_image(top, folder):
    """Write `top`'s flash image (``top.flash_image()``: the core's constants, then the codes the top reads at
    reset) into `folder` as `FLASH_IMAGE` if the top reads the flash; returns the report's ``flash_image``
    entry (None: no image): file, flash offset, bytes, sha256, the reader's bytes per cycle, and where the
    codes' part starts in the image (``codes_offset``, None without codes) and its bytes (``codes_bytes``)."""
    import hashlib

    from boards.forward_top import FLASH_CONSTANTS_OFFSET

    if getattr(top, "flash", None) is None:
        return None
    image = bytes(top.flash_image())
    (Path(folder) / FLASH_IMAGE).write_bytes(image)
    base = top.codes_base
    return {"file": FLASH_IMAGE, "offset": FLASH_CONSTANTS_OFFSET, "bytes": len(image),
            "sha256": hashlib.sha256(image).hexdigest(),
            "bytes_per_cycle": top.flash.bytes_per_cycle, "codes_offset": base,
            "codes_bytes": None if base is None else len(image) - base}


def build_forward(board, checkpoint, out, *, context=None, freq_mhz, seed=1, bits=4, formats=None, calib=None,
                  quiet=False, simulate=True, core=None):
    """Compile, weigh, compose, simulate beside synthesis, place and route, pack; returns the report dict.

    `formats`: a `golden.compile.IntFormats` (None: the defaults). `simulate` False skips the cycle count
    (the report's cycle and tokens/s fields are then None).
    """
    from boards.forward_top import compose_forward
    from golden.checkpoint import sha256_of_checkpoint
    from golden.compile import compile_checkpoint

    start = time.perf_counter()
    tools = ICE40_TOOLS if board == "icebreaker" else ("YOSYS", "NEXTPNR_ECP5", "ECPPACK")
    for variable in tools:
        tool_command(variable)                     # a missing tool fails now, not after compiling
    _say(f"compiling {checkpoint} into the integer forward ({bits}-bit codes)", quiet)
    compiled = compile_checkpoint(checkpoint, bits=bits, formats=formats, calib=calib)
    core = {**FORWARD_CORES[board], **(core or {})}
    context = check_budget(compiled, board, context, core)
    chip = BUDGET_BOARDS[board]
    budget = place(forward_memories(compiled, context=context, **core), chip)
    reached = fit(compiled, chip, **core)
    top = compose_forward(compiled, board=board, context=context, frequency=freq_mhz * 1e6, **core)
    _say(f"forward core ({core['rows']} x {core['columns']} array, " + ", ".join(
        f"{k} {v}" for k, v in core.items() if k not in ("rows", "columns")) + f") for {compiled.config.n_layer} layers, d {compiled.config.n_embd}, vocab "
         f"{compiled.config.vocab_size}, context {context}; budget: {budget['blocks']} {chip.block_name}"
         + (f", {budget['sprams']} SPRAM" if chip.sprams else "") + f"; clock {top.frequency / 1e6:g} MHz", quiet)
    wait_cycles = _measure_in_background(compiled, board, context, core, quiet) if simulate else None

    with atomic_directory(out) as work:
        try:
            implement = _implement_ice40 if board == "icebreaker" else _implement_ulx3s
            device, usage = implement(top, work, seed, quiet)
        except ToolError as error:
            raise ToolError(_chip_refusal(error, board)) from None
        flash_image = write_flash_image(top, work)
        cycles = wait_cycles() if wait_cycles else {"position_1": None, "full_context": None}
        clock = usage.main_clock
        fmax = round(clock[1], 2) if clock else None
        full = cycles["full_context"]
        totals = {"icebreaker": {"lc": 5280, "ebr": 30, "spram": 4, "dsp": 8},
                  "ulx3s": {"lc": chip.lc, "ebr": chip.blocks, "spram": 0, "dsp": chip.dsp}}[board]
        report = {
            "board": board, "device": device, "design": "forward", "context": context,
            **{f"{kind}_{what}": (usage.used(kind) if what == "used" else usage.available(kind) or totals[kind])
               for kind in ("lc", "ebr", "spram", "dsp") for what in ("used", "total")},
            "ff_used": usage.used("ff") if board == "ulx3s" else None,
            "target_mhz": round(top.frequency / 1e6, 6), "fmax_mhz": fmax,
            "cycles_per_token": cycles,
            "tokens_per_s": round(top.frequency / full, 1) if full else None,
            "tokens_per_s_fmax": round(fmax * 1e6 / full, 1) if full and fmax else None,
            "baud": top.baud, "uart_divisor": top.divisor, "flash_image": flash_image,
            "core": core, "n_layer": compiled.config.n_layer, "n_embd": compiled.config.n_embd,
            "vocab_size": compiled.config.vocab_size, "bits": compiled.bits, "act_bits": compiled.formats.act_bits,
            "budget": {"blocks": budget["blocks"], "block_kind": chip.block_name, "sprams": budget["sprams"],
                       "largest_context": reached["context"], "limit": reached["limit"]},
            "compiled_digest": top.identity.digest.hex() if hasattr(top.identity, "digest") else None,
            "model": str(checkpoint), "model_sha256": sha256_of_checkpoint(checkpoint), "seed": seed,
            "build_seconds": None,
        }
        report["build_seconds"] = round(time.perf_counter() - start, 1)
        (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def forward_report_table(report):
    """The forward report as the two-column table `hdl.build` prints."""
    def count(kind):
        return f"{report[kind + '_used']} / {report[kind + '_total']}"
    fmax = f"{report['fmax_mhz']:.2f} MHz" if report["fmax_mhz"] is not None else "n/a"
    cycles = report["cycles_per_token"]
    rows = [("board", f"{report['board']} ({report['device']})"),
            ("design", f"forward: {report['n_layer']} layers, d {report['n_embd']}, vocab {report['vocab_size']}, "
                       f"w{report['bits']} a{report['act_bits']}"),
            ("context", f"{report['context']} positions (largest that fits: {report['budget']['largest_context']}, "
                        f"limited by {report['budget']['limit']})"),
            ("logic cells", f"{count('lc')} ({100 * report['lc_used'] / report['lc_total']:.0f}%)"),
            ("block RAM", count("ebr"))]
    if report["spram_total"]:
        rows.append(("SPRAM", count("spram")))
    rows += [("DSP", count("dsp")), ("clock", f"{report['target_mhz']:g} MHz (Fmax {fmax})")]
    if cycles["full_context"]:
        rows += [("cycles/token", f"{cycles['position_1']} at position 1, {cycles['full_context']} at position "
                                  f"{cycles['full_context_position']} (simulated)"),
                 ("tokens/s", f"{report['tokens_per_s']:,.0f} at the full context ({report['tokens_per_s_fmax']:,.0f} "
                              f"at Fmax)" if report["tokens_per_s_fmax"] else f"{report['tokens_per_s']:,.0f}")]
    image = report.get("flash_image")
    if image:
        codes = (f" (constants, then {image['codes_bytes']:,} of codes from image byte {image['codes_offset']:#x})"
                 if image.get("codes_offset") is not None else " of constants")
        rows.append(("flash image", f"{image['file']}: {image['bytes']:,} bytes{codes} at flash "
                                    f"{image['offset']:#x} (iceprog -o {image['offset'] >> 20}M {image['file']})"))
    rows += [("UART", f"{report['baud'] / 1e6:g} Mbaud"),
             ("model", f"{report['model']} (sha256 {report['model_sha256'][:12]})"),
             ("build", f"{report['build_seconds']:.0f} s")]
    return format_table(rows)


def main_forward(args, out):
    """`hdl.build.main` for ``--design forward``: the parsed `args`, the output folder `out`."""
    from golden.compile import IntFormats, parse_int_formats

    if args.pe != "pot" or args.codes != "spram":
        raise UserError("--pe and --codes shape the linear design; the forward design's core is "
                        "sized from the checkpoint (leave them out, or use --design linear)")
    formats = IntFormats(**parse_int_formats(args.int_format))
    report = build_forward(args.board, Path(args.checkpoint), out, context=args.context, freq_mhz=args.freq,
                           seed=args.seed, bits=args.bits, formats=formats, calib=args.calib, quiet=args.quiet,
                           simulate=not args.no_verify,
                           core={k: v for k, v in (("rows", args.rows), ("columns", args.cols)) if v is not None})
    print(json.dumps(report, indent=2) if args.json else forward_report_table(report))
    _say(f"wrote {out}", args.quiet)
    return 0
