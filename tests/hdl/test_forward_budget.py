"""hdl.forward.budget: every memory of the forward design placed on the UP5K and the ECP5-85F, the largest
context found and named, and a checkpoint that does not fit refused in one line."""

import json
import subprocess
import sys

import pytest

from golden.compile import compile_checkpoint
from golden.paths import HARDWARE_MODEL_DIR, REPO_DIR
from hdl.build_forward import FORWARD_CORES
from hdl.forward.budget import BOARDS, fit, flash_figures, flash_stream, forward_memories, place, refusal

UP5K, ECP5 = BOARDS["icebreaker"], BOARDS["ulx3s"]
#: The iCEBreaker's forward core: 2 x 3 array, codes loaded into SPRAM, 2 attention lanes, constants from the flash.
ICE40_CORE = FORWARD_CORES["icebreaker"]
#: The same core with its constants in block RAM.
ICE40_ROM_CORE = {**ICE40_CORE, "constants": "rom"}


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
    # SPRAM blocks of a single-port memory: 16 bits x 16,384 each, side by side and stacked
    from hdl.single_port_memory import spram_blocks
    assert spram_blocks(16, 16384) == 1 and spram_blocks(32, 8192) == 2 and spram_blocks(16, 16385) == 2
    assert spram_blocks(48, 16384) == 3 and spram_blocks(4, 100) == 1


def test_memories_are_the_cores(hardware):
    c = hardware.config
    needs = {n.name: n for n in forward_memories(hardware, context=64)}
    linear_codes = sum(hardware.tensors[op["name"] + ".codes"].size for op in hardware.program
                       if op["op"] == "linear")
    codes = needs["linear_codes"]
    assert codes.kind == "codes" and codes.width == 4 * 3 * 4 and codes.token_bits == linear_codes * 4
    assert codes.bits == linear_codes * 4 and codes.banks == 3       # no padding: 3 banks of 16,384 words
    assert codes.sprams == 3
    assert needs["kv_cache"].kind == "kv" and needs["kv_cache"].bits == 2 * c.n_layer * 64 * c.n_embd * 8
    assert needs["wpe"].depth == 64 * c.n_embd and needs["wpe"].token_bits == c.n_embd * needs["wpe"].width  # a row
    assert needs["linear_bias"].kind == "constant" and needs["linear_bias"].token_bits == needs["linear_bias"].bits
    units = {n.name: n.kind for n in forward_memories(hardware, context=64, attention_units=4, attention_lanes=16)}
    assert units["kv_cache3"] == "kv" and units["attention_exp23"] == "table" and units["head_banks"] == "buffer"
    assert {n for n, need in needs.items() if need.kind == "table"} == {"gelu", "attention_exp2", "sampler_exp2"}
    with pytest.raises(ValueError, match="context"):
        forward_memories(hardware, context=c.n_positions + 1)


def test_up5k_default_model(hardware):
    """The iCEBreaker's core with its constants in block RAM: codes in exactly 3 SPRAMs, the 16-bit KV cache of
    context 64 in the 4th; 65 positions need a 5th. EBR is what does not fit (the constants): refused in one line
    naming it."""
    ICE40_CORE = ICE40_ROM_CORE
    budget = place(forward_memories(hardware, context=64, **ICE40_CORE), UP5K)
    by_name = _by_name(budget)
    assert budget["code_sprams"] == 3 and budget["kv_sprams"] == 1 and budget["sprams"] == 4
    assert by_name["kv_cache"]["sprams"] == 1 and by_name["kv_cache"]["width"] == 16
    assert by_name["linear_codes"]["where"] == by_name["kv_cache"]["where"] == "SPRAM"
    assert all(row["where"] == "EBR" for row in budget["placement"] if row["kind"] not in ("codes", "kv"))
    assert budget["blocks"] == sum(budget["blocks_by_kind"].values()) > 30 and not budget["fits"]
    assert place(forward_memories(hardware, context=65, **ICE40_CORE), UP5K)["sprams"] == 5
    reached = fit(hardware, UP5K, **ICE40_CORE)
    assert reached["spram_context"] == 64 and reached["context"] == 0
    line = refusal(hardware, UP5K, 64, **ICE40_CORE)
    assert "\n" not in line and line.startswith("the forward design won't fit the iCE40UP5K at context 64: needs ")
    assert f"{budget['blocks']} EBR of 30 (constant" in line and "no context fits" in line
    # Four attention lanes make the KV word 32 bits: two SPRAMs side by side, one too many.
    wide = place(forward_memories(hardware, context=64, **{**ICE40_CORE, "attention_lanes": 4}), UP5K)
    assert wide["kv_sprams"] == 2 and "5 SPRAM of 4 (3 for the codes, 2 for the KV cache)" in wide["over"]


def test_up5k_constants_from_the_flash(hardware):
    """The iCEBreaker's core as built (constants="flash"): the layer norms', linear layers' and wpe's memories are
    gone, the image is one stream memory in the flash, and context 64 fits the 30 EBR and the 4 SPRAMs; a token
    reads the core's bytes per token at the reader's rate, capping tokens/s."""
    budget = place(forward_memories(hardware, context=64, **ICE40_CORE), UP5K)
    by_name = _by_name(budget)
    assert not {"ln_gamma", "ln_beta", "linear_bias", "linear_mult", "linear_shift", "wpe", "wpe_mult"} & set(by_name)
    assert by_name["constant_image"]["where"] == "flash" and by_name["constant_image"]["blocks"] == 0
    assert budget["fits"] and budget["blocks"] <= 30 and budget["sprams"] == 4
    assert fit(hardware, UP5K, **ICE40_CORE)["context"] == 64
    from hdl.forward.forward_core import ForwardCore
    core = ForwardCore(compiled=hardware, context=64, **ICE40_CORE)
    figures = flash_figures(hardware, context=64, clock_hz=36e6, **ICE40_CORE)
    assert figures["constant_bytes"] == len(core.constant_image()) == by_name["constant_image"]["depth"]
    # The codes follow the constants in the one image (hdl.code_boot.flash_image), read once at reset.
    from hdl.code_boot import flash_image
    image, base, _ = flash_image(core.constant_image(), core.linear.code_banks, core.linear.code_bits)
    assert figures["codes_bytes"] == len(image) - base == 8 + 3 * 16384 * 2 and figures["image_bytes"] == len(image)
    assert figures["boot_cycles"] == figures["codes_bytes"] / figures["bytes_per_cycle"] + figures["seek_cycles"]
    assert figures["bytes_per_token"] == core.constant_bytes_per_token == budget["flash_bytes_per_token"]
    assert figures["cycles_per_token"] == 2 * core.constant_bytes_per_token + 2 * figures["seek_cycles"]
    assert figures["tokens_per_s_bound"] == 36e6 / figures["cycles_per_token"]


def test_up5k_flash_streaming(hardware):
    ICE40_CORE = ICE40_ROM_CORE
    flash = flash_stream(hardware, UP5K, context=64, clock_hz=36e6, **ICE40_CORE)
    assert flash["fits"] and flash["largest_context"] == 64 and flash["blocks"] <= 30
    budget = place(forward_memories(hardware, context=64, **ICE40_CORE), UP5K, flash=True)
    streamed = [row for row in budget["placement"] if row["where"] == "flash"]
    needs = {n.name: n for n in forward_memories(hardware, context=64, **ICE40_CORE)}
    assert streamed and flash["bytes_per_token"] == sum(needs[row["name"]].token_bits for row in streamed) // 8
    assert flash["cycles_per_token"] == -(-flash["bytes_per_token"] * 8 // 4)


def test_ecp5_holds_the_whole_context(hardware, tiny):
    for compiled in (hardware, tiny):
        reached = fit(compiled, ECP5)
        assert reached["context"] == compiled.config.n_positions
        assert reached["limit"].startswith("the model's context")
        assert reached["budget"]["blocks"] <= 208 and reached["budget"]["sprams"] == 0
    # The test checkpoint's codes and KV cache take 4 SPRAMs at its whole context (3 code banks, the cache), and
    # each of its block RAM memories takes a whole EBR: with 4 head lanes 29 (the embedding's wpe terms are
    # precomputed, so it has no wpe requantiser memory); with the iCEBreaker's 2 head lanes, 27. The 2 x 3 array's
    # activation banks are 16 bits wide, one EBR (the 4 x 3 array's 32 bits took two).
    tiny_fit = fit(tiny, UP5K, **ICE40_ROM_CORE)
    assert tiny_fit["spram_context"] == tiny.config.n_positions and tiny_fit["budget"]["sprams"] <= 4
    assert tiny_fit["context"] == tiny.config.n_positions and tiny_fit["budget"]["blocks"] == 27
    assert fit(tiny, UP5K, **{**ICE40_ROM_CORE, "head_lanes": 4})["budget"]["blocks"] == 29
    assert fit(tiny, UP5K, **{**ICE40_ROM_CORE, "rows": 4})["budget"]["blocks"] == 28


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
