"""Fill the chip: per PE kind, the largest array that places and routes on the board top, in few runs.

``python -m hdl.sweep --fill`` calls `fill`. The board's resource estimate
ranks every array shape (one shape per PE count: the one the estimate finds
cheapest, counts whose shape costs more than a larger one's left out) and
brackets the search (`search`): each run of the flow corrects the estimate by
the ratio of the cells nextpnr packed to the cells estimated (a point that
does not fit still reports its packed count), and the next run is the largest
PE count the corrected estimate says fits, between the largest count known to
fit and the smallest known not to. On the iCE40 the packer's count is the
limit. On the ECP5 the placer fails well below it (no legal placement, or
nextpnr runs for most of an hour), so there a run that packs within the chip
but does not place, or that outlives its time cap, sets a ceiling of cells,
and the search bisects the packed cells between the largest fit and that
ceiling; it starts from the board's ceiling known from earlier runs and, since
each placement there takes tens of minutes, corrects the estimate first by one
run of nextpnr's packer alone. The search ends when the largest fit and the
smallest non-fit are neighbours in the list (or within the board's
``fill_within`` fraction of PEs). The largest fit is then built at every
further seed and its Fmax is the median over the seeds.
"""

import statistics
from dataclasses import dataclass

from .sweep import ESTIMATE_MARGIN, Point, estimate_point, make_setting, quantizer, sweep

__all__ = ["ROW_LC", "COLUMN_OVERESTIMATE", "CEILING_RAISE", "Candidate", "candidates", "search", "fill", "best_entry"]

#: Logic cells a row adds besides its PEs, which the board estimate leaves out (activation and result
#: buffer ports, write pointer, the emitter's row multiplexers, skew and broadcast registers), and what the
#: estimate's 36 cells per column overstate; only rank shapes. Fitted to the iCE40UP5K engine-alone top:
#: 4 x 11 packs 4546 cells, 3 x 16 4792, 7 x 7 5391, i.e. about 78 per PE, 23 per column and 183 per row
#: (the board top agrees: 4 x 10 5010, 3 x 14 5071). Since the engine's buffer read ports lost their
#: read-before-write logic a row costs about 130 (board top: 4 x 10 4530, 5 x 10 5427, 3 x 15 4935); the
#: shapes ranked for 36 to 50 PEs are the same either way.
ROW_LC = 180
COLUMN_OVERESTIMATE = 13
#: While nothing fits below a placement failure, the next build aims at this fraction of its packed cells.
BACKOFF = 0.85
#: A ceiling known only from earlier runs (never confirmed by a build of this search) that the fits have
#: reached is raised by this fraction at a time, not dropped: dropping it sent the next build to the
#: estimate's whole-chip pick, far past where placement is known to fail.
CEILING_RAISE = 0.05


@dataclass(frozen=True)
class Candidate:
    """The shape tried for one PE count, with the board's estimate of its logic cells."""

    point: Point
    lc_estimate: int


def candidates(board, top, quantized, pe, bits, *, max_rows, max_cols):
    """Per PE count the shape of least estimated cells (plus `ROW_LC` per row, less `COLUMN_OVERESTIMATE` per
    column) whose block RAM, SPRAM and
    DSP estimates fit the chip and whose cell estimate is within the sweep's margin, sorted by PEs; a count
    whose shape ranks no cheaper than one of more PEs is left out."""
    capacity = board.capacity
    best = {}
    for cols in range(1, max_cols + 1):
        for rows in range(1, max_rows + 1):
            point = Point(pe, bits, rows, cols)
            estimate, _ = estimate_point(board, point, top, quantized)
            if any(estimate.get(kind, 0) > capacity[kind] for kind in ("ebr", "spram", "dsp")
                   if capacity.get(kind) is not None):
                continue
            if estimate["lc"] > ESTIMATE_MARGIN * capacity["lc"]:
                continue
            rank = estimate["lc"] + ROW_LC * rows - COLUMN_OVERESTIMATE * cols
            if point.pes not in best or rank < best[point.pes][0]:
                best[point.pes] = (rank, Candidate(point, estimate["lc"]))
    # Keep a shape only if every shape of fewer PEs ranks cheaper, so that cost grows along the list and
    # a shape that does not fit says the same of every later one.
    frontier = []
    for pes in sorted(best, reverse=True):
        if not frontier or best[pes][0] < frontier[-1][0]:
            frontier.append(best[pes])
    return [candidate for _, candidate in reversed(frontier)]


def search(shapes, capacity_lc, build, *, within=0.0, backoff=BACKOFF, place_limit=None, pack=None, packs=1,
           trace=None):
    """The index in `shapes` of the largest that fits, by `build(candidate) -> result`; None if none fits.

    A result fits when its ``status`` is "ok"; anything else counts as not fitting: cells over the chip
    ("no-fit"), no legal placement ("no-place"), nextpnr stopped at its time cap ("timeout"), a failed flow.
    Each step builds one untried shape between the largest fit and the smallest non-fit, chosen by the
    estimate corrected by the last build's packed / estimated cells (``lc_used``):

    - while no build has failed to place within the chip's cells, the largest the corrected estimate packs
      into `capacity_lc` (the estimate's bracket: on the iCE40 the packer's count is the limit);
    - once one has (it packed ``lc_used`` <= `capacity_lc` cells and still failed, so the placer's limit
      lies below that count), a bisection of packed cells: the largest shape predicted to pack at most
      the midpoint between the largest fit's cells and the smallest such failure's, or `backoff` times the
      failure's cells while nothing fits yet.

    `place_limit` (cells) is a ceiling known beforehand (the board's, from earlier runs): the search starts
    as if a build of that many cells had failed to place, forgets it once a fit packs as many cells, and
    raises it by `CEILING_RAISE` each time the bisection under it closes without any build failing there.
    With `pack` (``pack(candidate) -> result``, the flow up to nextpnr's packer: minutes where a placement
    of a full chip takes tens), the estimate is first corrected by packing the pick, up to `packs` times
    while the corrected pick moves to a shape not yet packed, and only then is anything placed.

    The search ends when the largest fit and the smallest non-fit are neighbours in `shapes`, or, with
    `within` > 0, when the smallest non-fit, or the next shape to build, has at most ``1 + within`` times
    the largest fit's PEs (on a chip whose every run is long, a gain of less than that is not worth a run).
    With `trace` (a list) every build is appended to it as a dict: ``pes``, ``rows``, ``cols``,
    ``lc_estimate``, ``lc_predicted``, ``target_lc``, ``rule``, ``status``, ``lc_used``, ``seconds``,
    ``reason``."""
    fits = fails = None
    fit_lc = measured = None
    prior = place_limit
    scale = 1.0
    packed = []
    while True:
        window = [i for i in range(len(shapes)) if (fits is None or i > fits) and (fails is None or i < fails)]
        if not window:
            return fits
        if fits is not None and fails is not None and shapes[fails].point.pes <= (1 + within) * shapes[fits].point.pes:
            return fits
        limit = min(x for x in (measured, prior, capacity_lc + 1) if x is not None)
        if limit > capacity_lc:
            target, rule = capacity_lc, "estimate"
        elif fit_lc is None:
            target, rule = backoff * limit, "back off"
        else:
            target, rule = (fit_lc + limit) / 2, "bisect"
        predicted = [i for i in window if shapes[i].lc_estimate * scale <= target]
        pick = predicted[-1] if predicted else window[0]
        if prior == limit and fits is not None and (
                not predicted or shapes[pick].point.pes <= (1 + within) * shapes[fits].point.pes):
            # the fits reached the board's ceiling, which no build confirmed: raise it a step
            prior = prior * (1 + CEILING_RAISE)
            if prior > capacity_lc:
                prior = None
            continue
        if fits is not None and shapes[pick].point.pes <= (1 + within) * shapes[fits].point.pes and within > 0:
            return fits
        calibrating = pack is not None and len(packed) < packs and pick not in packed and fits is None \
            and fails is None
        result = (pack if calibrating else build)(shapes[pick])
        lc_used = result.get("lc_used")
        if trace is not None:
            point = shapes[pick].point
            trace.append({"label": point.label, "pes": point.pes, "rows": point.rows, "cols": point.cols,
                          "lc_estimate": shapes[pick].lc_estimate,
                          "lc_predicted": round(shapes[pick].lc_estimate * scale), "target_lc": round(target),
                          "rule": "pack" if calibrating else rule, "status": result["status"], "lc_used": lc_used,
                          "seconds": result.get("seconds"), "reason": result.get("reason")})
        if lc_used and shapes[pick].lc_estimate > 0:
            scale = lc_used / shapes[pick].lc_estimate
        if calibrating:
            packed.append(pick)
            if result["status"] != "packed" and not lc_used:
                pack = None                                 # the packer failed: place without it
            continue
        if result["status"] == "ok":
            fits, fit_lc = pick, lc_used or fit_lc
            if prior is not None and fit_lc and fit_lc >= prior:
                prior = None
        else:
            fails = pick
            if lc_used and lc_used <= capacity_lc and result["status"] != "no-fit":
                measured = lc_used if measured is None else min(measured, lc_used)


def best_entry(results):
    """The "best" record of one PE kind from its results at every seed: median Fmax over the seeds that routed."""
    ok = [r for r in results if r["status"] == "ok"]
    if not ok:
        return None
    first = ok[0]
    fmax = round(statistics.median(r["fmax_mhz"] for r in ok), 2)
    return {"pe": first["kind"], "rows": first["rows"], "cols": first["cols"], "pes": first["pes"],
            "lc_used": first["lc_used"], "fmax_mhz": fmax, "macs_per_s": round(first["pes"] * fmax * 1e6),
            "seeds": [r["seed"] for r in ok], "fmax_mhz_per_seed": [r["fmax_mhz"] for r in ok],
            "failed_seeds": [r["seed"] for r in results if r["status"] != "ok"]}


def fill(board, checkpoint, *, kinds, top="board", layers=None, freq_mhz=None, seeds=(1,), out, rebuild=False,
         progress=None, max_rows=None, max_cols=None, within=None, pnr_cpu_limit_s=None):
    """Search the largest array of every kind ``(pe, bits)`` in `kinds`; returns
    ``(setting, results, best, searches)``.

    `results` holds every build (search at the first seed, then the largest fit at the others), `best`
    maps each kind's series name (``pot-b4``, ``int8-dsp``) to `best_entry` (None if nothing fits),
    `searches` each kind's name to `search`'s trace (every shape tried, why, and its outcome).
    Points are built under ``out/seed<S>/<label>/`` and reused like the sweep's. `within` is `search`'s
    (None: the board's ``fill_within``); `pnr_cpu_limit_s` caps each nextpnr run's CPU time (None: the board's
    ``pnr_cpu_limit_s``, 0: no cap), and a run stopped by it counts as not fitting.
    """
    settings = {seed: make_setting(board, checkpoint, top=top, layers=layers, freq_mhz=freq_mhz, seed=seed,
                                   pnr_cpu_limit_s=pnr_cpu_limit_s)
                for seed in seeds}
    first = settings[seeds[0]]
    quantized = quantizer(first)
    max_cols = max_cols or max(shape[1] for shape in first["layer_shapes"])
    max_rows = max_rows or 64
    results, best, searches = [], {}, {}
    from .sweep import BOARDS
    board = BOARDS[first["board"]]

    def build(point, seed):
        (result,) = sweep([point], settings[seed], out=out / f"seed{seed}", rebuild=rebuild, progress=progress,
                          quantized=quantized)
        results.append(result)
        return result

    def pack(candidate):
        (result,) = sweep([candidate.point], dict(first, pack_only=True), out=out / "pack", rebuild=rebuild,
                          progress=progress, quantized=quantized)
        return result

    for pe, bits in kinds:
        shapes = candidates(board, top, quantized, pe, bits, max_rows=max_rows, max_cols=max_cols)
        kind = Point(pe, bits, 1, 1).kind
        searches[kind] = []
        prior = board.place_limit and round(board.place_limit * board.capacity["lc"])
        index = search(shapes, board.capacity["lc"], lambda candidate: build(candidate.point, seeds[0]),
                       within=board.fill_within if within is None else within, place_limit=prior,
                       pack=pack if board.fill_pack else None, trace=searches[kind])
        if index is None:
            best[kind] = None
            continue
        point = shapes[index].point
        runs = [r for r in results if r["label"] == point.label and r["seed"] == seeds[0]]
        runs += [build(point, seed) for seed in seeds[1:]]
        best[kind] = best_entry(runs)
    return first, results, best, searches


def ratios(best):
    """MAC/s of each PoT kind's largest fit over each INT8 kind's: ``{"pot-b4/int8-dsp": 6.1, ...}``."""
    out = {}
    for kind, entry in best.items():
        if not kind.startswith("pot") or entry is None:
            continue
        for other in ("int8", "int8-dsp"):
            if best.get(other):
                out[f"{kind}/{other}"] = round(entry["macs_per_s"] / best[other]["macs_per_s"], 2)
    return out


def search_lines(searches):
    """The human lines of each kind's search: every shape tried, by which rule, and its outcome."""
    lines = []
    for kind, steps in (searches or {}).items():
        lines.append(f"search {kind}:")
        for step in steps:
            lc = "-" if step["lc_used"] is None else step["lc_used"]
            seconds = "" if step["seconds"] is None else f", {step['seconds'] / 60:.1f} min"
            lines.append(f"  {step['rule']:<9} {step['label']:<16} target {step['target_lc']:>6} LC, predicted "
                         f"{step['lc_predicted']:>6}: {step['status']:<9} {lc} LC{seconds}")
    return lines


def best_table(best, seeds, searches=None):
    """The human lines of the fill: each kind's search, per kind the largest fit and its median Fmax, then the
    ratios."""
    lines = ["", *search_lines(searches),
             f"largest array that fits, per PE kind (Fmax: median of seeds {' '.join(map(str, seeds))}):"]
    for kind, entry in best.items():
        if entry is None:
            lines.append(f"  {kind:<9} nothing fits")
            continue
        per_seed = ", ".join(f"{f:.2f}" for f in entry["fmax_mhz_per_seed"])
        lines.append(f"  {kind:<9} {entry['rows']}x{entry['cols']} = {entry['pes']} PEs, {entry['lc_used']} LC, "
                     f"{entry['fmax_mhz']:.2f} MHz ({per_seed}), {entry['macs_per_s'] / 1e9:.2f} GMAC/s"
                     + (f"; failed at seed {', '.join(map(str, entry['failed_seeds']))}"
                        if entry["failed_seeds"] else ""))
    for name, ratio in ratios(best).items():
        lines.append(f"  MAC/s {name} = {ratio:.2f}x")
    return "\n".join(lines)


def best_markdown(best, seeds):
    lines = ["", f"| PE kind | largest that fits | PEs | LC | Fmax (MHz, median of seeds {', '.join(map(str, seeds))}) "
                 "| peak GMAC/s |", "|---|---|---:|---:|---:|---:|"]
    for kind, entry in best.items():
        if entry is not None:
            lines.append(f"| {kind} | {entry['rows']} x {entry['cols']} | {entry['pes']} | {entry['lc_used']} | "
                         f"{entry['fmax_mhz']:.2f} | {entry['macs_per_s'] / 1e9:.2f} |")
    lines += [""] + [f"- peak MAC/s {name}: **{ratio:.2f}x**" for name, ratio in ratios(best).items()]
    return "\n".join(lines) + "\n"
