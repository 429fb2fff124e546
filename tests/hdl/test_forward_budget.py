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


def test_memories_follow_the_artefact(hardware):
    c = hardware.config
    needs = {n.name: n for n in forward_memories(hardware, context=64)}
    linear_codes = sum(v.size for k, v in hardware.tensors.items() if k.endswith(".codes"))
    assert needs["linear codes"].bits >= linear_codes * 4
    assert needs["linear codes"].token_bits == linear_codes * 4
    assert needs["KV cache"].bits == 2 * c.n_layer * 64 * c.n_embd * 8
    assert needs["wpe table"].depth == 64 * c.n_embd                  # only the built context's rows
    assert needs["linear biases"].depth == sum(hardware.tensors[k].size for k in hardware.tensors
                                               if k.endswith(".bias") and k.startswith("h."))
    assert needs["layer norm offsets"].width == 26                   # |beta| up to 23,307,950
    assert sum(n.kind == "table" for n in needs.values()) == c.n_layer + 2
    with pytest.raises(ValueError, match="context"):
        forward_memories(hardware, context=c.n_positions + 1)


def test_up5k_default_model_context_is_limited_by_spram(hardware):
    budget = place(forward_memories(hardware, context=64), UP5K)
    assert budget["code_sprams"] == 3                  # 786,432 bits of 4-bit codes: exactly 3 SPRAMs
    by_name = _by_name(budget)
    assert by_name["KV cache"]["spram_words"] == 16384  # 64 positions: the 4th SPRAM whole
    assert not budget["fits"] and "SPRAM of 4" in budget["over"][0]
    reached = fit(hardware, UP5K)
    assert 0 < reached["context"] < 64
    assert "SPRAM" in reached["limit"]
    assert reached["budget"]["fits"] and reached["budget"]["blocks"] <= 30
    assert not place(forward_memories(hardware, context=reached["context"] + 1), UP5K)["fits"]
    line = refusal(hardware, UP5K, 64)
    assert "\n" not in line and line.startswith("the forward design won't fit the iCE40UP5K at context 64")
    assert f"the largest context that fits is {reached['context']}" in line
    assert refusal(hardware, UP5K, reached["context"]) is None


def test_up5k_flash_streaming_reaches_64(hardware):
    flash = flash_stream(hardware, UP5K, context=64, clock_hz=36e6)
    assert flash["fits"] and flash["largest_context"] == 64
    budget = place(forward_memories(hardware, context=64), UP5K, flash=True)
    streamed = [row for row in budget["placement"] if row["where"] == "flash"]
    needs = {n.name: n for n in forward_memories(hardware, context=64)}
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
