# amaranth: UnusedElaboratable=no
"""The whole forward in hardware against golden: ForwardCore's tokens (and logits) equal IntegerForward.generate's."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.int_forward import IntegerForward
from hdl.forward.forward_core import ATTENTION, HEAD, LINEAR, NORM, ForwardCore, core_steps, fold_program
from hdl.forward.program_linear import program_layers

from forward_cases import tiny_compiled
from sim.constant_source import FlashCore


def run_core(core, requests, *, seed=0, gap=0.0, max_cycles=2_000_000):
    """`requests`: [(prompt, count, inv_temperature, top_k, seed)]; per request (tokens, logits rows, token cycles).

    ``token cycles``: the cycle each token was taken, counted from the start
    being taken. `gap`: the share of cycles the token consumer and the prompt
    producer idle (seeded), so back-pressure is exercised.
    """
    sim = Simulator(core)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    results = []
    V = core.vocab_size

    async def bench(ctx):
        cycle = 0
        for prompt, count, inv_temperature, top_k, generator_seed in requests:
            p = core.start.payload
            for name, value in (("prompt_length", len(prompt)), ("count", count),
                                ("inv_temperature", inv_temperature), ("top_k", top_k), ("seed", generator_seed)):
                ctx.set(getattr(p, name), value)
            ctx.set(core.start.valid, 1)
            await ctx.tick().until(core.start.ready)
            ctx.set(core.start.valid, 0)
            begin = cycle = 0
            tokens, logits, times, row = [], [], [], []
            pending = list(prompt)
            while len(tokens) < count or (count == 0 and pending):
                if pending and rng.random() >= gap:
                    ctx.set(core.prompt.payload, pending[0])
                    ctx.set(core.prompt.valid, 1)
                else:
                    ctx.set(core.prompt.valid, 0)
                ready = rng.random() >= gap
                ctx.set(core.token.ready, ready)
                await ctx.delay(1e-8)
                assert ctx.get(core.busy)
                if pending and ctx.get(core.prompt.valid) and ctx.get(core.prompt.ready):
                    pending.pop(0)
                if ctx.get(core.logits.valid):
                    row.append(ctx.get(core.logits.payload))
                    if len(row) == V:
                        logits.append(row)
                        row = []
                if ready and ctx.get(core.token.valid):
                    tokens.append(ctx.get(core.token.payload))
                    times.append(cycle - begin)
                await ctx.tick()
                cycle += 1
                assert cycle < max_cycles, f"{len(tokens)} of {count} tokens after {cycle} cycles"
            ctx.set(core.prompt.valid, 0)
            ctx.set(core.token.ready, 0)
            await ctx.tick()
            assert not ctx.get(core.busy)
            results.append((tokens, logits, times))

    sim.add_testbench(bench)
    sim.run()
    return results


def golden_run(forward, prompt, count, inv_temperature, top_k, seed):
    """Golden's tokens (`IntegerForward.generate`) and the logits row of each sampled position."""
    V = forward.config.vocab_size
    tokens = list(forward.generate(prompt, count, inv_temperature=inv_temperature,
                                   top_k=None if top_k == V else top_k, seed=seed))
    cache = forward.new_cache()
    rows = [forward.forward(np.array(prompt), cache)[-1]]
    for token in tokens[:-1]:
        rows.append(forward.forward(np.array([token]), cache)[-1])
    return tokens, np.array(rows[:len(tokens)])


def check_requests(compiled, requests, *, source=None, **core_args):
    """Run `requests` on a `ForwardCore` of `compiled` (back-pressure both sides); assert golden's tokens and
    logits. `source`: the options of a `sim.constant_source.ConstantImageSource` feeding a core with
    ``constants="flash"`` its image. Returns the results and the core."""
    forward = IntegerForward(compiled)
    V = compiled.config.vocab_size
    core = ForwardCore(compiled=compiled, **core_args)
    dut = core if source is None else FlashCore(core, **source)
    results = run_core(dut, requests, gap=0.2, seed=len(requests))
    for request, (tokens, logits, _) in zip(requests, results):
        want_tokens, want_logits = golden_run(forward, *request)
        assert tokens == want_tokens, request
        np.testing.assert_array_equal(np.array(logits).reshape(-1, V), want_logits.reshape(-1, V))
    return results, core


@pytest.fixture(scope="module")
def one_layer(tmp_path_factory):
    return tiny_compiled(tmp_path_factory.mktemp("core") / "model", n_layer=1, n_embd=16, n_head=2, vocab_size=23,
                         n_positions=16)


@pytest.fixture(scope="module")
def two_layers(tmp_path_factory):
    return tiny_compiled(tmp_path_factory.mktemp("core") / "model", n_layer=2, n_embd=16, n_head=4, vocab_size=29,
                         n_positions=16, seed=3)


def test_steps(two_layers):
    steps = core_steps(two_layers)
    assert [s["kind"] for s in steps] == [NORM, LINEAR, ATTENTION, LINEAR, NORM, LINEAR, LINEAR] * 2 + [NORM, HEAD]
    assert [s["gelu"] for s in steps if s["gelu"] is not None] == [0, 1]
    assert [s["index"] for s in steps if s["kind"] == LINEAR] == list(range(8))


def test_fold_program(two_layers):
    """The folded table gives every step its kind, sizes and unit indices back (a layer's steps at ``sub``, the
    tail's in the top half); a program whose layers differ is refused."""
    steps, layers = core_steps(two_layers), program_layers(two_layers)
    d = two_layers.config.n_embd
    period, sub_bits, tables, strides = fold_program(steps, layers, d, 2)
    assert (period, sub_bits, strides) == (7, 3, {"norm": 2, "select": 4, "gelu": 1, "attention": 1})
    for i, s in enumerate(steps):
        layer, sub = divmod(i, period) if i < 14 else (2, i - 14)
        slot = sub | (layer == 2) << sub_bits
        assert tables["kind"][slot] == s["kind"]
        assert tables["n"][slot] == (layers[s["index"]].n if s["kind"] == LINEAR else d)
        assert tables["has_gelu"][slot] == (s["gelu"] is not None)
        index = {NORM: "norm", LINEAR: "select", ATTENTION: "attention"}.get(s["kind"])
        if index:
            assert layer * strides[index] + tables[index][slot] == s["index"]
        if s["gelu"] is not None:
            assert layer * strides["gelu"] + tables["gelu"][slot] == s["gelu"]
    assert [tables["feeds"][slot] for slot in (0, 2, 4, 8)] == [True] * 4          # ln_1, attention, ln_2, ln_f
    odd = [dict(s) for s in steps]
    odd[12]["gelu"] = None
    with pytest.raises(ValueError, match="layers have the same steps .'h.1.mlp.c_fc' differs"):
        fold_program(odd, layers, d, 2)


def test_generate(one_layer):
    """Greedy, temperature, temperature + top-k (two seeds), count 0 and a prompt filling the context but one."""
    V = one_layer.config.vocab_size
    requests = [([3, 1, 4], 5, 0, V, 0), ([5], 4, 300, V, 7), ([2, 7, 1, 8], 3, 180, 4, 1),
                ([2, 7, 1, 8], 3, 180, 4, 2), ([9, 9], 0, 0, V, 0), ([0, 5] * 5 + [1], 1, 256, 2, 3)]
    results, _ = check_requests(one_layer, requests, context=12, rows=2, columns=3, head_lanes=3)
    assert len(set(results[1][0])) > 1 and results[2][0] != results[3][0]


def test_two_layers(two_layers):
    """Two layers of four heads, on a 3 x 2 array, two attention units of two heads side by side: greedy and
    sampled, the context filled."""
    V = two_layers.config.vocab_size
    _, core = check_requests(two_layers, [([6, 2], 3, 0, V, 0), ([11], 5, 128, 5, 9)], context=6, rows=3,
                             columns=2, attention_units=2, attention_lanes=2)
    memories = {name: (width, depth) for name, width, depth in core.memories}
    # two units of 2 heads x 4 channels, 2 lanes: (key, value) x 2 layers x 6 positions x 8 channels / 2 per word
    assert memories["kv_cache"] == memories["kv_cache1"] == (16, 2 * 2 * 6 * 8 // 2)


def test_generate_flash(one_layer):
    """The constants streamed (`ForwardCore.constant_image` from a `ConstantImageSource`): half a byte a cycle,
    a seek latency of 9 cycles and a third of the cycles stalled; greedy with a prompt, then sampled with
    top-k and a prompt of one (its ln_f records left unread)."""
    V = one_layer.config.vocab_size
    results, core = check_requests(one_layer, [([3, 1, 4], 4, 0, V, 0), ([5], 3, 180, 4, 2)], context=12, rows=2,
                                   columns=3, head_lanes=3, constants="flash",
                                   source={"rate": 0.5, "latency": 9, "stall": 1 / 3, "seed": 5})
    # Every token reads its records at half a byte a cycle at best.
    assert min(b - a for _, _, times in results for a, b in zip(times, times[1:])) > \
        2 * core.constant_bytes_per_token


def test_constant_image(one_layer):
    """The image: each position's wpe block at its stride, then every record in program order; a flash core
    keeps none of those constants in its memories."""
    t, d = one_layer.tensors, one_layer.config.n_embd
    core = ForwardCore(compiled=one_layer, context=12, rows=2, columns=3, head_lanes=3, constants="flash")
    image, stride, base = core.constant_image(), core.constant_stride, core.constant_stream_base
    wpe = core._embedding.wpe_bytes(11)
    assert stride == 32 and base == 12 * stride and len(image) == base + core.constant_bytes_per_token - len(wpe)
    assert image[11 * stride:11 * stride + len(wpe)] == wpe and set(image[11 * stride + len(wpe):base]) <= {0xFF}
    assert list(np.frombuffer(wpe, "<i2")) == core._embedding.wpe_terms[11] and len(wpe) == 2 * d
    (norm_bytes, norm_fields), (linear_bytes, linear_fields) = (core.constant_record_fields[kind]
                                                                for kind in ("norm", "linear"))
    assert [name for name, _, _, _ in norm_fields] == ["gamma", "beta"]
    assert [name for name, _, _, _ in linear_fields] == ["bias", "mult", "shift"]

    def records(at, count, length, fields):
        """`count` records of `length` bytes from `at`, as tuples of their fields' values."""
        rows = []
        for i in range(count):
            word = int.from_bytes(image[at + i * length:at + (i + 1) * length], "little")
            rows.append(tuple((word >> offset & (1 << bits) - 1) - ((word >> (offset + bits - 1) & negative) << bits)
                              for _, offset, bits, negative in fields))
        return rows

    # ln_1's d records, then c_attn's n; ln_f's d are the last.
    assert records(base, d, norm_bytes, norm_fields) == list(zip(t["h.0.ln_1.gamma"], t["h.0.ln_1.beta"]))
    n = core.linear.layers[0].n
    assert records(base + d * norm_bytes, n, linear_bytes, linear_fields) == core.linear.channel_records()[:n]
    assert records(len(image) - d * norm_bytes, d, norm_bytes, norm_fields) == list(zip(t["ln_f.gamma"],
                                                                                       t["ln_f.beta"]))
    names = [name for name, _, _ in core.memories]
    assert not {"ln_gamma", "ln_beta", "linear_bias", "linear_mult", "linear_shift", "wpe", "wpe_mult"} & set(names)
    rom = ForwardCore(compiled=one_layer, context=12, rows=2, columns=3, head_lanes=3)
    assert {"ln_gamma", "ln_beta", "linear_bias", "wpe"} <= {name for name, _, _ in rom.memories}
    with pytest.raises(ValueError, match="no constant image"):
        rom.constant_image()
    with pytest.raises(ValueError, match="constants must be one of rom, flash, not 'spi'"):
        ForwardCore(compiled=one_layer, context=12, constants="spi")


@pytest.mark.slow
def test_two_layers_long(two_layers):
    """The two-layer model at its whole context, 16 positions, in every sampling mode."""
    V = two_layers.config.vocab_size
    check_requests(two_layers, [([1, 2, 3], 13, 0, V, 0), ([4], 15, 200, V, 11), ([7, 7], 14, 400, 3, 12)],
                   context=16, rows=4, columns=3, head_lanes=2, attention_units=4)


@pytest.mark.slow
def test_default_model_verilator(compiled_default):
    """The default model at context 64 in Verilator: 3 prompt tokens and 61 generated (the whole context),
    greedy and sampled, equal to golden's; prints the cycles per token."""
    from sim.forward_core import Request, simulate_core, token_cycles

    forward = IntegerForward(compiled_default)
    prompt = [18, 47, 56]                       # "Fir" in the character vocabulary
    settings = [{"top_k": 65}, {"inv_temperature": 205, "top_k": 10, "seed": 5}]
    core = ForwardCore(compiled=compiled_default, context=64)
    results = simulate_core(core, [Request(prompt, 61, **s) for s in settings])
    for s, result in zip(settings, results):
        want = list(forward.generate(prompt, 61, inv_temperature=s.get("inv_temperature", 0),
                                     top_k=None if s["top_k"] == 65 else s["top_k"], seed=s.get("seed", 0)))
        assert result["tokens"] == want, s
        cycles = token_cycles(result, len(prompt))
        print(f"{s}: cycles per token at position 3: {cycles[3]}, at position 62: {cycles[62]}")


@pytest.mark.slow
def test_default_model_flash_verilator(compiled_default):
    """The iCEBreaker's core (codes as ROM here, 2 attention lanes) with its constants streamed from a
    `ConstantImageSource` at a quarter byte a cycle, a seek latency of 40 cycles and a fifth of the cycles
    stalled, in Verilator: 3 prompt tokens and 61 sampled, equal to golden's."""
    from sim.forward_core import Request, simulate_core

    forward = IntegerForward(compiled_default)
    prompt, settings = [18, 47, 56], {"inv_temperature": 205, "top_k": 10, "seed": 5}
    core = ForwardCore(compiled=compiled_default, context=64, attention_lanes=2, constants="flash")
    result, = simulate_core(FlashCore(core, rate=0.25, latency=40, stall=0.2, seed=9),
                            [Request(prompt, 61, **settings)])
    assert result["tokens"] == list(forward.generate(prompt, 61, **settings))


def test_cycles_cli_bad_input(capsys):
    """`python -m sim.forward_core` refuses a malformed prompt in one line (exit 2) and answers --help."""
    from sim.forward_core import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--prompt", "1,x"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("python -m sim.forward_core: error: argument --prompt: '1,x' is not "
                                               "comma-separated token ids")
    with pytest.raises(SystemExit) as exit_info:
        main(["--constants", "flash", "--stream-rate", "1.5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("python -m sim.forward_core: error: argument --stream-rate: a stream "
                                               "rate is from 1/64 to 1 byte per cycle, not 1.5")
    with pytest.raises(SystemExit) as exit_info:
        main(["--stream-rate", "0.5"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == ("python -m sim.forward_core: error: --stream-rate and --seek-latency "
                                               "go with --constants flash")
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    assert "examples:\n  python -m sim.forward_core" in capsys.readouterr().out


def test_flash_model_defaults_are_the_readers():
    """`python -m sim.forward_core --constants flash` streams as the iCEBreaker's reader does by default."""
    from hdl.spi_flash_reader import SPIFlashReader
    from sim.forward_core import READER_LATENCY, READER_RATE

    reader = SPIFlashReader(offset=0x100000, clock_hz=36_000_000)
    assert (reader.bytes_per_cycle, reader.first_byte_cycles) == (READER_RATE, READER_LATENCY)
