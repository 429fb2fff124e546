# amaranth: UnusedElaboratable=no

import json

import numpy as np
import pytest

from golden.rom_layout import RomLayout
from hdl.bench import TARGET_RATIO, main, synthesize
from hdl.engine import Engine
from hdl.toolchain import ToolError, tool_command

from hdl_cases import cases


@pytest.fixture(scope="module", autouse=True)
def yosys():
    try:
        tool_command("YOSYS")
    except ToolError as error:
        pytest.skip(str(error))


def test_engine_synthesizes(tmp_path):
    """The whole engine maps to iCE40 cells (block RAMs for the buffers and ROMs)."""
    layout = RomLayout(cases(np.random.default_rng(0), 4, 8, [(5, 7), (3, 2)]), columns=2, bits=4)
    result = synthesize(Engine(layout=layout, rows=2), "engine", tmp_path, pack=False)
    assert result["lut4"] > 0 and result["dff"] > 0


def test_main_json(capsys):
    assert main(["--arrays", "1x2", "--no-pack", "--json", "--acc-bits", "16"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["parameters"] == {"act_bits": 8, "bits": 4, "acc_bits": 16, "broadcast_columns": 4,
                                 "exact_negation": False}
    assert [row["design"] for row in out["rows"]] == ["PE", "array 1x2"]
    pe, array = out["rows"]
    assert array["pes"] == 2 and array["pot"]["lut4"] > 2 * pe["pot"]["lut4"]
    # The resource target the board depends on: PoT PE <= 0.45 of the INT8 PE in LUT4.
    assert pe["lut4_ratio"] <= TARGET_RATIO
    # The adder is one LUT4 + carry per accumulator bit; registers: acc, term, x, code, drain
    # (no carry-in: the engine's PEs add ones' complements, `hdl.pot_pe.PotPE`).
    assert pe["pot"]["carry"] <= 16 and pe["pot"]["dff"] == 16 + 14 + 8 + 4 + 1


def test_main_table(capsys):
    assert main(["--arrays", "", "--no-pack", "--bits", "3", "--act-bits", "6"]) == 0
    out = capsys.readouterr().out
    assert "act 6 bits, code 3 bits" in out and "PoT PE / INT8 PE LUT4" in out


@pytest.mark.parametrize("args, message", [
    (["--arrays", "4by16"], "array sizes are RxC"),
    (["--bits", "2"], "Weight bits must be from 3 to 8, not 2"),
    (["--acc-bits", "1"], "Accumulator bits"),
    (["--broadcast-columns", "0"], "Broadcast columns must be a positive integer, not 0"),
])
def test_main_wrong(capsys, args, message):
    assert main([*args, "--no-pack"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
