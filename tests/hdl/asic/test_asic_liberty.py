"""The generated sky130_fd_sc_hd Liberty: areas from LEF, functions checked against the cells' own models."""

import shutil

import pytest

from hdl.asic.liberty import evaluate, liberty_text
from hdl.asic.pdk import FLOP, LIBRARY, PdkError, load_cells


@pytest.fixture(scope="module")
def cells():
    try:
        return load_cells()
    except PdkError as error:
        pytest.skip(str(error))


# Published sizes (the library's own documentation: site 0.46 x 2.72 um, cell width in sites).
@pytest.mark.parametrize("name, area", [("nand2_1", 3.7536), ("dfxtp_1", 20.0192), ("inv_1", 3.7536),
                                         ("xor2_1", 8.7584), ("fa_1", 20.0192), ("mux2_1", 11.2608)])
def test_published_areas(cells, name, area):
    assert cells[f"{LIBRARY}__{name}"].area == pytest.approx(area, abs=1e-6)


def test_areas_in_liberty(cells):
    text = liberty_text(cells)
    assert f"cell ({LIBRARY}__nand2_1) {{\n    area : 3.7536;" in text
    assert f"cell ({FLOP}) {{\n    area : 20.0192;" in text


def test_kept_cells(cells):
    families = {c.family for c in cells.values()}
    assert {"nand2", "nor2", "inv", "xor2", "fa", "maj3", "mux2", "a21oi", "o21ai", "dfxtp"} <= families
    assert not families & {"dfrtp", "sdfxtp", "dlxtp", "ebufn", "conb", "clkbuf", "lpflow_isobufsrc"}
    assert cells[FLOP].flop == ("D", "CLK") and cells[FLOP].functions == {"Q": "IQ"}


@pytest.mark.parametrize("expression, values, want", [
    ("!(A)^(B)", {"A": 1, "B": 0}, 0), ("A&B|C", {"A": 0, "B": 1, "C": 1}, 1),
    ("A|B&C", {"A": 0, "B": 1, "C": 0}, 0), ("!A&B", {"A": 0, "B": 1}, 1), ("(A^B)'", {"A": 1, "B": 1}, 1),
    ("A B", {"A": 1, "B": 0}, 0)])
def test_evaluate(expression, values, want):
    assert evaluate(expression, values) == want


def test_functions_from_models(cells):
    """Functions read from the models, including the ones whose definition.json is misleading."""
    lib = f"{LIBRARY}__"
    table = lambda name, pin: [evaluate(cells[lib + name].functions[pin], dict(zip(cells[lib + name].inputs, bits)))
                               for bits in ((0, 0, 0), (0, 1, 0), (1, 0, 1), (1, 1, 1))]
    assert table("mux2_1", "X") == [0, 0, 0, 1]                 # A0, A1, S: S=1 picks A1
    assert table("maj3_1", "X") == [0, 0, 1, 1]
    a2bb2oi = cells[lib + "a2bb2oi_1"]                           # Y = !(!(A1_N | A2_N) | (B1 & B2))
    assert a2bb2oi.inputs == ("A1_N", "A2_N", "B1", "B2")
    assert evaluate(a2bb2oi.functions["Y"], {"A1_N": 0, "A2_N": 0, "B1": 0, "B2": 0}) == 0
    assert evaluate(a2bb2oi.functions["Y"], {"A1_N": 1, "A2_N": 0, "B1": 0, "B2": 1}) == 1


@pytest.fixture(scope="module")
def icarus():
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not found; install it with apt-get install iverilog (./setup.sh does)")


def test_every_function_matches_its_model(cells, icarus, tmp_path):
    """Icarus runs each cell's functional model (with its UDPs) beside Yosys's reading of the Liberty."""
    from hdl.asic.check import check_functions
    path = tmp_path / "cells.lib"
    path.write_text(liberty_text(cells))
    result = check_functions(cells, path, tmp_path / "check")
    assert result["mismatches"] == []
    assert sorted(result["checked"]) == sorted(cells)


def test_check_finds_a_wrong_function(cells, icarus, tmp_path):
    from hdl.asic.check import check_functions
    text = liberty_text(cells)
    nand = cells[f"{LIBRARY}__nand2_1"].functions["Y"]
    wrong = text.replace(f'function : "{nand}"', 'function : "!(A|B)"')
    assert wrong != text
    (tmp_path / "bad.lib").write_text(wrong)
    few = {n: cells[n] for n in (f"{LIBRARY}__nand2_1", f"{LIBRARY}__inv_1", FLOP)}
    result = check_functions(few, tmp_path / "bad.lib", tmp_path / "check")
    assert result["mismatches"] and all("nand2_1" in line for line in result["mismatches"])
