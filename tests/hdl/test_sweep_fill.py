# amaranth: UnusedElaboratable=no
"""hdl.sweep --fill: the bracketed search (against a model chip, no tools), the median over seeds, the
command line, and one real fill through Yosys and nextpnr (slow)."""

import json

import pytest

import hdl.sweep
from golden.cli import run
from hdl.sweep import Point, main
from hdl.sweep_fill import CEILING_RAISE, Candidate, best_entry, ratios, search, search_lines
from hdl.toolchain import ToolError, tool_command

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")


def chip(capacity, true_scale, shapes):
    """A model flow: a shape packs `true_scale` times its estimate and fits if that is within `capacity`."""
    built = []

    def build(candidate):
        built.append(candidate.point.pes)
        lc = round(candidate.lc_estimate * true_scale)
        return {"status": "ok" if lc <= capacity else "no-fit", "lc_used": lc}
    return built, build


def shapes_of(pes_list, per_pe=90, fixed=1400):
    return [Candidate(Point("pot", 4, 1, n), fixed + per_pe * n) for n in pes_list]


@pytest.mark.parametrize("true_scale", [0.8, 0.95, 1.0, 1.07, 1.3])
def test_search_finds_the_largest_fit_in_few_builds(true_scale):
    shapes = shapes_of(range(1, 80))
    built, build = chip(5280, true_scale, shapes)
    index = search(shapes, 5280, build)
    fitting = [i for i, c in enumerate(shapes) if round(c.lc_estimate * true_scale) <= 5280]
    assert index == max(fitting)
    assert len(built) <= 4 and len(set(built)) == len(built)       # no shape built twice


def test_search_within_a_fraction_stops_early():
    """With `within`, a bracket of fit and non-fit closer than that fraction of PEs is settled in fewer
    builds than the exact search needs (the packed cells are not proportional to the estimate here)."""
    shapes = shapes_of(range(100, 1000, 4))

    def flow(built):
        def build(candidate):
            built.append(candidate.point.pes)
            lc = round(0.8 * candidate.lc_estimate + 6000)
            return {"status": "ok" if lc <= 60_000 else "no-fit", "lc_used": lc}
        return build
    largest = max(i for i, c in enumerate(shapes) if 0.8 * c.lc_estimate + 6000 <= 60_000)
    built, exact = [], []
    index = search(shapes, 60_000, flow(built), within=0.04)
    assert index <= largest and shapes[largest].point.pes <= 1.04 * shapes[index].point.pes
    assert search(shapes, 60_000, flow(exact)) == largest
    assert len(built) < len(exact)


def test_search_nothing_fits():
    shapes = shapes_of([10, 20, 30])
    built, build = chip(100, 1.0, shapes)
    assert search(shapes, 100, build) is None
    assert built == [10]


def test_search_treats_a_failed_build_as_no_fit():
    shapes = shapes_of([4, 8, 12])
    calls = []

    def build(candidate):
        calls.append(candidate.point.pes)
        return {"status": "error" if candidate.point.pes == 12 else "ok", "lc_used": None}
    assert search(shapes, 10_000, build) == 1 and calls == [12, 8]


def placer(built, *, capacity, limit, scale=0.9, failure="no-place"):
    """A model flow with a placement limit below the cell count: a shape packs `scale` times its estimate;
    it fails (`failure`, with its packed cells) above `limit` cells, and is "no-fit" above `capacity`."""
    def build(candidate):
        built.append(candidate.point.pes)
        lc = round(candidate.lc_estimate * scale)
        status = "no-fit" if lc > capacity else failure if lc > limit else "ok"
        return {"status": status, "lc_used": lc, "seconds": 1.0, "reason": None if status == "ok" else status}
    return build


@pytest.mark.parametrize("failure", ["no-place", "timeout"])
@pytest.mark.parametrize("limit", [0.45, 0.62, 0.80, 0.97])
def test_search_converges_below_a_placement_limit(failure, limit):
    """A shape that packs within the chip but does not place (or runs out of time) sets a ceiling of cells;
    the search bisects under it to the largest shape that places, exactly, without building a shape twice
    and in few builds, and records each build with its rule and outcome."""
    capacity = 83_640
    shapes = [Candidate(Point("pot", 4, 1, n), 6000 + 88 * n) for n in range(48, 1500, 12)]
    built, trace = [], []
    index = search(shapes, capacity, placer(built, capacity=capacity, limit=limit * capacity, failure=failure),
                   trace=trace)
    placing = [i for i, c in enumerate(shapes) if round(0.9 * c.lc_estimate) <= limit * capacity]
    assert index == max(placing)
    assert len(set(built)) == len(built) and len(built) <= 9
    assert [step["pes"] for step in trace] == built
    assert trace[0]["rule"] == "estimate" and trace[-1]["status"] in ("ok", failure, "no-fit")
    if limit < 0.9:
        assert trace[0]["status"] == failure and {"back off", "bisect"} & {step["rule"] for step in trace}
    for step in trace:
        assert step["lc_used"] == round(0.9 * step["lc_estimate"])
        assert (step["status"] == "ok") == (step["lc_used"] <= limit * capacity)


def test_search_placement_limit_within_a_fraction():
    """With `within`, the bisection stops once the bracket is that close, in fewer builds than the exact
    search, and never below the largest shape it built that places."""
    capacity = 83_640
    shapes = [Candidate(Point("pot", 4, 1, n), 6000 + 88 * n) for n in range(100, 1000, 4)]
    exact, near = [], []
    largest = search(shapes, capacity, placer(exact, capacity=capacity, limit=0.62 * capacity))
    index = search(shapes, capacity, placer(near, capacity=capacity, limit=0.62 * capacity), within=0.04)
    assert index <= largest and shapes[largest].point.pes <= 1.04 * shapes[index].point.pes
    assert len(near) < len(exact)


def test_search_packing_failures_do_not_set_a_placement_ceiling():
    """A shape over the chip's cells ("no-fit") leaves the search on the estimate's rule (the iCE40 case)."""
    shapes = shapes_of(range(1, 80))
    built, trace = [], []
    _, build = chip(5280, 1.07, shapes)
    search(shapes, 5280, lambda c: (built.append(c.point.pes), build(c))[1], trace=trace)
    assert {step["rule"] for step in trace} == {"estimate"}


def test_search_packs_before_it_places_and_starts_below_a_known_limit():
    """With a packer, the first step corrects the estimate (which overstates the cells by 25% here) by
    packing its pick, so the first placement already lands just under `backoff` times the board's known
    ceiling; when the bisection under that ceiling closes without a failure the search drops it and goes on
    to the true limit (within 4% here)."""
    capacity = 83_640
    shapes = [Candidate(Point("pot", 4, 1, n), 6000 + 100 * n) for n in range(100, 1000, 4)]
    built, packed, trace = [], [], []
    place = placer(built, capacity=capacity, limit=0.86 * capacity, scale=0.8)

    def pack(candidate):
        packed.append(candidate.point.pes)
        return {"status": "packed", "lc_used": round(0.8 * candidate.lc_estimate), "seconds": 1.0}
    index = search(shapes, capacity, place, place_limit=round(0.80 * capacity), pack=pack, trace=trace,
                   within=0.04)
    largest = max(i for i, c in enumerate(shapes) if round(0.8 * c.lc_estimate) <= 0.86 * capacity)
    assert index <= largest and shapes[largest].point.pes <= 1.04 * shapes[index].point.pes
    assert len(packed) == 1 and trace[0]["rule"] == "pack" and trace[0]["status"] == "packed"
    first = trace[1]
    assert first["rule"] == "back off" and first["status"] == "ok"
    assert 0.80 * 0.85 * capacity - 0.8 * 400 < first["lc_used"] <= 0.80 * 0.85 * capacity
    assert any(step["lc_used"] > 0.80 * capacity and step["status"] == "ok" for step in trace)
    assert built == [step["pes"] for step in trace[1:]] and len(built) <= 6
    lines = search_lines({"pot-b4": trace})
    assert lines[0] == "search pot-b4:" and len(lines) == 1 + len(trace)
    assert lines[1].split()[:2] == ["pack", trace[0]["label"]] and "packed" in lines[1]


def test_search_raises_an_unconfirmed_ceiling_a_step_at_a_time():
    """When the fits reach the board's known ceiling and the bisection under it closes (here with
    `within` 9 %, as the ULX3S rerun had), the ceiling is raised `CEILING_RAISE` at a time until a shape
    9 % larger than the fit lies under it, so the next build lands just above the old ceiling, not at the
    estimate's whole-chip pick; where the ceiling is real (placement fails just above it) the search ends
    on a shape under it, within 9 % of the largest."""
    capacity = 83_640
    shapes = [Candidate(Point("pot", 4, 1, n), 6000 + 88 * n) for n in range(100, 1000, 4)]
    built, trace = [], []
    ceiling = round(0.80 * capacity)
    index = search(shapes, capacity, placer(built, capacity=capacity, limit=ceiling), place_limit=ceiling,
                   trace=trace, within=0.09)
    above = [step for step in trace if step["lc_used"] > ceiling]
    assert len(above) == 1 and above[0]["status"] == "no-place"
    assert above[0]["lc_used"] <= (1 + 2 * CEILING_RAISE) * ceiling
    largest = max(i for i, c in enumerate(shapes) if round(0.9 * c.lc_estimate) <= ceiling)
    assert shapes[largest].point.pes <= 1.09 * shapes[index].point.pes


def result(seed, fmax, status="ok", pes=48):
    return {"kind": "pot-b4", "rows": 4, "cols": 12, "pes": pes, "lc_used": 5100, "seed": seed,
            "status": status, "fmax_mhz": fmax}


def test_best_entry_takes_the_median_over_seeds():
    best = best_entry([result(1, 40.0), result(2, 44.5), result(3, 41.25)])
    assert best == {"pe": "pot-b4", "rows": 4, "cols": 12, "pes": 48, "lc_used": 5100, "fmax_mhz": 41.25,
                    "macs_per_s": 48 * 41_250_000, "seeds": [1, 2, 3], "fmax_mhz_per_seed": [40.0, 44.5, 41.25],
                    "failed_seeds": []}
    partial = best_entry([result(1, 40.0), result(2, None, "no-fit"), result(3, 42.0)])
    assert partial["fmax_mhz"] == 41.0 and partial["failed_seeds"] == [2]
    assert best_entry([result(1, None, "no-fit")]) is None
    dsp = dict(best, pe="int8-dsp", pes=8, macs_per_s=8 * 45_000_000)
    assert ratios({"pot-b4": best, "int8-dsp": dsp}) == {"pot-b4/int8-dsp": round(48 * 41.25 / (8 * 45), 2)}


@pytest.mark.parametrize("argv, message", [
    (["--fill", "--sizes", "2x2"], "--fill searches the array sizes itself; drop --sizes"),
    (["--seed", "1", "2"], "several seeds (1 2) need --fill"),
])
def test_fill_arguments_wrong(argv, message, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(hdl.sweep, "run_tool", lambda *a, **k: pytest.fail("a tool ran"))
    with pytest.raises(SystemExit) as exit_info:
        run(main, "python -m hdl.sweep", ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), *argv])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.slow
def test_fill_ice40_dsp(tiny_checkpoint, tmp_path, capsys):
    """The real flow: INT8 in the UP5K's eight DSPs fills to eight PEs, built at two seeds; a rerun builds
    nothing."""
    for variable in ("YOSYS", "NEXTPNR_ICE40"):
        try:
            tool_command(variable)
        except ToolError as error:
            pytest.skip(str(error))
    out = tmp_path / "fill"
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(out), "--quiet", "--fill", "--pe", "int8-dsp",
            "--seed", "1", "2"]
    assert main(argv) == 0
    document = json.loads((out / "sweep.json").read_text())
    best = document["best"]["int8-dsp"]
    assert best["pes"] == 8 and best["rows"] * best["cols"] == 8 and best["seeds"] == [1, 2]
    assert best["fmax_mhz"] == pytest.approx(sum(best["fmax_mhz_per_seed"]) / 2, abs=0.01)
    assert best["macs_per_s"] == pytest.approx(8 * best["fmax_mhz"] * 1e6, rel=1e-6)
    assert 0 < best["lc_used"] <= 5280 and document["seeds"] == [1, 2]
    assert "largest array that fits" in capsys.readouterr().out
    assert (out / "seed2" / f"int8-dsp-{best['rows']}x{best['cols']}" / "result.json").is_file()
