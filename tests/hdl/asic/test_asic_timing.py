"""Characterisation in ngspice and OpenSTA over the NLDM Liberty it gives (slow: transistor-level runs)."""

import shutil

import pytest

from hdl.asic.characterize import LOADS, SLEWS, characterize, fo4_delay
from hdl.asic.liberty import liberty_text
from hdl.asic.pdk import FLOP, LIBRARY, PdkError, load_cells
from hdl.asic.timing import critical_path, sta_command

pytestmark = pytest.mark.slow

NETLIST = f"""\
module top(clk, a, y);
  input clk;
  input a;
  output y;
  wire q0, q1, n0, n1, n2;
  {FLOP} r0 (.CLK(clk), .D(a), .Q(q0));
  {LIBRARY}__inv_1 i0 (.A(q0), .Y(n0));
  {LIBRARY}__xor2_1 x0 (.A(n0), .B(q1), .X(n1));
  {LIBRARY}__nand2_1 g0 (.A(n1), .B(q0), .Y(n2));
  {FLOP} r1 (.CLK(clk), .D(n2), .Q(q1));
  assign y = q1;
endmodule
"""


@pytest.fixture(scope="module")
def cells():
    if shutil.which("ngspice") is None:
        pytest.skip("ngspice not found; install it with apt-get install ngspice (./setup.sh does)")
    try:
        return load_cells()
    except PdkError as error:
        pytest.skip(str(error))


def test_fo4(cells, tmp_path):
    assert 0.05 < fo4_delay(cells, tmp_path) < 0.12          # ns; published tt figures are 60-90 ps


def test_characterise_and_time(cells, tmp_path):
    if sta_command() is None:
        pytest.skip("OpenSTA not found; install it with apt-get install opensta (./setup.sh does)")
    used = {n: cells[n] for n in (FLOP, f"{LIBRARY}__inv_1", f"{LIBRARY}__xor2_1", f"{LIBRARY}__nand2_1")}
    timing = characterize(used, tmp_path / "char")
    inv = timing[f"{LIBRARY}__inv_1"]
    (arc,) = inv["arcs"]["Y"]
    assert arc["sense"] == "negative_unate"
    for table in ("cell_rise", "cell_fall"):
        values = arc[table]
        assert len(values) == len(SLEWS) and len(values[0]) == len(LOADS)
        assert values[0][0] < values[0][1] and values[0][0] < values[1][0]    # slower with load and slew
    assert 0.0005 < inv["capacitance"]["A"] < 0.005                           # pF
    assert timing[f"{LIBRARY}__xor2_1"]["arcs"]["X"][0]["sense"] == "non_unate"
    assert 0.02 < timing[FLOP]["setup"] < 0.3
    lib = tmp_path / "timed.lib"
    lib.write_text(liberty_text(cells, timing))
    work = tmp_path / "sta"
    work.mkdir()
    (work / "mapped.v").write_text(NETLIST)
    result = critical_path(work, lib, timing)
    assert result["method"] == "nldm-sta"
    assert (result["startpoint"], result["endpoint"]) == ("r0", "r1")
    assert 0.2 < result["period_ns"] < 2.0
    # Again from the cache: nothing simulated, the same tables.
    assert characterize(used, tmp_path / "char") == timing
