"""hdl.forward.budget: every memory of the forward design placed on the UP5K and the ECP5-85F, the largest
context found and named, and a checkpoint that does not fit refused in one line."""

import json
import subprocess
import sys

import pytest

from golden.compile import compile_checkpoint
from golden.paths import HARDWARE_MODEL_DIR, REPO_DIR
from hdl.forward.budget import BOARDS, fit, flash_stream, forward_memories, place, refusal

UP5K, ECP5 = BOARDS["icebreaker"], BOARDS["ulx3s"]


@pytest.fixture(scope="module")
def hardware():
    return compile_checkpoint(HARDWARE_MODEL_DIR, bits=4)


@pytest.fixture(scope="module")
def tiny(tiny_checkpoint):
    return compile_checkpoint(tiny_checkpoint, bits=4)


def _by_name(budget):
    return {row["name"]: row for row in budget["placement"]}


def test_block_shapes():
    # iCE40 EBR: 16x256, 8x512, 4x1024, 2x2048; the best shape wins
    assert UP5K.blocks_of(8, 4160) == 9
    assert UP5K.blocks_of(16, 256) == 1 and UP5K.blocks_of(17, 256) == 2 and UP5K.blocks_of(2, 2049) == 2
    assert UP5K.blocks_of(26, 576) == 6                     # 2 wide x 3 deep of 16 x 256
    # DP16KD: 36x512 .. 1x16384
    assert ECP5.blocks_of(48, 16384) == 48 and ECP5.blocks_of(8, 65536) == 32
    # SPRAM words: narrow entries packed, wide ones split
    assert UP5K.spram_words_of(8, 100) == 50 and UP5K.spram_words_of(4, 100) == 25
    assert UP5K.spram_words_of(48, 10) == 30


def test_memories_are_the_cores(hardware):
    c = hardware.config
    needs = {n.name: n for n in forward_memories(hardware, context=64)}
    linear_codes = sum(hardware.tensors[op["name"] + ".codes"].size for op in hardware.program
                       if op["op"] == "linear")
    codes = needs["linear_codes"]
    assert codes.kind == "codes" and codes.width == 4 * 3 * 4 and codes.token_bits == linear_codes * 4
    assert codes.bits > linear_codes * 4                  # N = 64 and 256 padded to 66 and 258 columns
    assert needs["kv_cache"].kind == "kv" and needs["kv_cache"].bits == 2 * c.n_layer * 64 * c.n_embd * 8
    assert needs["wpe"].depth == 64 * c.n_embd and needs["wpe"].token_bits == c.n_embd * 8   # one row a token
    assert needs["linear_bias"].kind == "constant" and needs["linear_bias"].token_bits == needs["linear_bias"].bits
    units = {n.name: n.kind for n in forward_memories(hardware, context=64, attention_units=4, attention_lanes=16)}
    assert units["kv_cache3"] == "kv" and units["attention_exp23"] == "table" and units["head_banks"] == "buffer"
    assert {n for n, need in needs.items() if need.kind == "table"} == {"gelu", "attention_exp2", "sampler_exp2"}
    with pytest.raises(ValueError, match="context"):
        forward_memories(hardware, context=c.n_positions + 1)


def test_up5k_default_model(hardware):
    """The 4 x 3 core's codes take all 4 SPRAMs; a 4 x 4 array's take 3, and the context is then SPRAM-bound."""
    budget = place(forward_memories(hardware, context=64), UP5K)
    assert budget["code_sprams"] == 4 and not budget["fits"]
    assert fit(hardware, UP5K)["context"] == 0
    line = refusal(hardware, UP5K, 64)
    assert "\n" not in line and line.startswith("the forward design won't fit the iCE40UP5K at context 64")
    assert "no context fits" in line

    square = {"rows": 4, "columns": 4}
    budget = place(forward_memories(hardware, context=64, **square), UP5K)
    assert budget["code_sprams"] == 3                  # 786,432 bits of 4-bit codes: exactly 3 SPRAMs
    by_name = _by_name(budget)
    assert by_name["kv_cache"]["spram_words"] == 16384       # the 4th SPRAM, whole
    assert not budget["fits"]
    reached = fit(hardware, UP5K, **square)
    assert 0 < reached["context"] < 64 and "SPRAM" in reached["limit"]
    assert reached["budget"]["fits"] and reached["budget"]["blocks"] <= 30
    assert not place(forward_memories(hardware, context=reached["context"] + 1, **square), UP5K)["fits"]
    assert refusal(hardware, UP5K, reached["context"], **square) is None
    assert f"the largest context that fits is {reached['context']}" in refusal(hardware, UP5K, 64, **square)


def test_up5k_flash_streaming(hardware):
    square = {"rows": 4, "columns": 4}
    flash = flash_stream(hardware, UP5K, context=64, clock_hz=36e6, **square)
    assert flash["fits"] and flash["largest_context"] == 64
    budget = place(forward_memories(hardware, context=64, **square), UP5K, flash=True)
    streamed = [row for row in budget["placement"] if row["where"] == "flash"]
    needs = {n.name: n for n in forward_memories(hardware, context=64, **square)}
    assert streamed and flash["bytes_per_token"] == sum(needs[row["name"]].token_bits for row in streamed) // 8
    assert flash["cycles_per_token"] == -(-flash["bytes_per_token"] * 8 // 2)


def test_ecp5_holds_the_whole_context(hardware, tiny):
    for compiled in (hardware, tiny):
        reached = fit(compiled, ECP5)
        assert reached["context"] == compiled.config.n_positions
        assert reached["limit"].startswith("the model's context")
        assert reached["budget"]["blocks"] <= 208 and reached["budget"]["sprams"] == 0
    assert fit(tiny, UP5K)["context"] == tiny.config.n_positions


def _budget(*args):
    return subprocess.run([sys.executable, "-m", "hdl.forward.budget", *args], capture_output=True, text=True,
                          cwd=REPO_DIR, timeout=300)


def test_cli(tiny_checkpoint):
    done = _budget("--board", "ulx3s", "--checkpoint", str(tiny_checkpoint), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["context"] == report["largest_context"] == 32 and report["fits"]
    done = _budget("--board", "icebreaker", "--checkpoint", str(tiny_checkpoint), "--context", "99")
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "32 positions" in done.stderr
    done = _budget("--board", "arty")
    assert done.returncode == 2 and "invalid choice" in done.stderr
