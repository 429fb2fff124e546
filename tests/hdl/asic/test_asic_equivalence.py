# amaranth: UnusedElaboratable=no
"""Mapped netlists proven equivalent to their RTL (Yosys equiv_*), and the proof can fail."""

import pytest

from hdl.asic.check import prove_equivalent
from hdl.asic.liberty import liberty_text
from hdl.asic.pdk import PdkError, load_cells
from hdl.asic.synth import synthesize
from hdl.int8_pe import Int8PE
from hdl.pot_pe import PotPE
from hdl.toolchain import ToolError, tool_command


@pytest.fixture(scope="module")
def liberty(tmp_path_factory):
    try:
        tool_command("YOSYS")
        cells = load_cells()
    except (ToolError, PdkError) as error:
        pytest.skip(str(error))
    path = tmp_path_factory.mktemp("lib") / "cells.lib"
    path.write_text(liberty_text(cells))
    return path


@pytest.mark.parametrize("make, booth", [
    (lambda: PotPE(act_bits=4, bits=3, acc_bits=8), False),
    (lambda: Int8PE(act_bits=4, acc_bits=14), True)])
def test_small_pe_proven(liberty, tmp_path, make, booth):
    result = synthesize(make(), tmp_path, liberty, booth=booth)
    assert result["area_um2"] > 0 and result["flops"] > 0 and result["logic_depth"] > 0
    assert set(result["cell_types"]) <= {line.split("(")[1].split(")")[0]
                                          for line in liberty.read_text().splitlines() if "cell (" in line}
    assert prove_equivalent(tmp_path) is True


def test_mutated_netlist_not_proven(liberty, tmp_path):
    synthesize(PotPE(act_bits=4, bits=3, acc_bits=8), tmp_path, liberty)
    netlist = (tmp_path / "mapped.v").read_text()
    # Swap one two-input cell for its dual (same pins, other function).
    for a, b in (("nand2_1", "nor2_1"), ("nor2_1", "nand2_1"), ("and2_1", "or2_1"), ("or2_1", "and2_1")):
        if f"sky130_fd_sc_hd__{a} " in netlist:
            (tmp_path / "mapped.v").write_text(netlist.replace(f"sky130_fd_sc_hd__{a} ", f"sky130_fd_sc_hd__{b} ", 1))
            break
    else:
        pytest.fail("no two-input cell to mutate in the netlist")
    assert prove_equivalent(tmp_path) is False
