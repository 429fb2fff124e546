# amaranth: UnusedElaboratable=no
"""The program's linear engine against golden: every linear layer of tiny compiled models, one after another on
one array, with back-pressure."""

import numpy as np
import pytest
from amaranth.sim import Simulator

from golden.int_forward import IntegerForward
from golden.int_ops import saturate
from golden.pot_format import PotFormat
from hdl.forward.program_linear import LinearLayer, ProgramLinear, pack_codes, program_layers, short_tile_banks

from forward_cases import tiny_compiled


def run_layers(dut, jobs, seed=0, gap=0.2):
    """`jobs`: [(layer index, activations (K,), residual (N,) or None)]; returns the outputs of each job.

    A ``codes="loaded"`` engine first has its banks written through ``code_write``, word by word; a
    ``constants="stream"`` one gets each job's `ProgramLinear.channel_records` from a source that stalls."""
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    rng = np.random.default_rng(seed)
    results = []

    async def feed(ctx, port, values):
        for value in values:
            while rng.random() < gap:
                await ctx.tick()
            ctx.set(port.payload, value if isinstance(value, dict) else int(value))
            ctx.set(port.valid, 1)
            await ctx.tick().until(port.ready)
            ctx.set(port.valid, 0)

    if dut.constants == "stream":
        records, bases = dut.channel_records(), np.cumsum([0] + [x.n for x in dut.layers])

        async def constants(ctx):
            for layer, _, _ in jobs:
                await feed(ctx, dut.channel_constants, [dict(zip(("bias", "mult", "shift"), r))
                                                        for r in records[bases[layer]:bases[layer + 1]]])

        sim.add_testbench(constants, background=True)

    async def bench(ctx):
        if dut.codes == "loaded":
            for bank, words in enumerate(dut.code_banks):
                for address, word in enumerate(words):
                    ctx.set(dut.code_write.en, 1)
                    ctx.set(dut.code_write.bank, bank)
                    ctx.set(dut.code_write.addr, address)
                    ctx.set(dut.code_write.data, int(word))
                    await ctx.tick()
            ctx.set(dut.code_write.en, 0)
        for layer, a, x in jobs:
            ctx.set(dut.select, layer)
            n = dut.layers[layer].n
            await feed(ctx, dut.a, a)
            got, pending = [], list(x) if x is not None else None
            while len(got) < n:
                if pending is not None:
                    ctx.set(dut.x.payload, int(pending[0]))
                    ctx.set(dut.x.valid, 1)
                ready = rng.random() >= gap
                ctx.set(dut.o.ready, ready)
                await ctx.delay(1e-8)
                if ready and ctx.get(dut.o.valid):
                    got.append(ctx.get(dut.o.payload))
                    if pending is not None:
                        pending.pop(0)
                await ctx.tick()
            ctx.set(dut.o.ready, 0)
            if pending is not None:
                ctx.set(dut.x.valid, 0)
            results.append(got)

    sim.add_testbench(bench)
    sim.run()
    return results


@pytest.mark.parametrize("n_layer, rows, columns, constants, requantizer, chosen", [
    (1, 4, 3, "rom", "auto", "parallel"), (2, 3, 5, "rom", "auto", "parallel"),
    (1, 4, 3, "stream", "auto", "parallel"), (1, 2, 3, "stream", "auto", "two-pass"),
    (1, 4, 3, "rom", "two-pass", "two-pass"), (1, 2, 3, "stream", "two-pass-serial", "two-pass-serial")])
def test_every_layer(tmp_path, n_layer, rows, columns, constants, requantizer, chosen):
    """Every linear op of the program on golden's own inputs of two tokens, in program order, then again;
    with ``constants="stream"`` each channel's record comes from a source that stalls at random. The
    two-pass requantiser is chosen where every tile has at least two cycles per column (K / rows = 8, and
    above it forced where the tiles must wait for it); its serial shifter forced where they wait for it."""
    compiled = tiny_compiled(tmp_path / "model", n_layer=n_layer, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    f = compiled.formats
    forward = IntegerForward(compiled)
    layers = program_layers(compiled)
    dut = ProgramLinear(layers=layers, bits=compiled.bits, act_bits=f.act_bits, res_bits=f.res_bits, rows=rows,
                        columns=columns, mult_bits=f.mult_bits, constants=constants,
                        requantizer=requantizer)
    assert dut.requantizer == chosen and dut.pe_bits < dut.acc_bits
    assert dut.adds and dut.out_bits == f.res_bits and dut.channels == sum(x.n for x in layers)
    assert ("channel_constants" in dut.signature.members) == (constants == "stream")
    assert [name for name, _, _ in dut.memories] == (["codes", "bias", "mult", "shift", "banks"]
                                                      if constants == "rom" else ["codes", "banks"])
    rng = np.random.default_rng(n_layer)
    jobs, want = [], []
    for token in range(2):
        for index, layer in enumerate(layers):
            a = rng.integers(-128, 128, layer.k)
            a[:3] = [-128, 127, 0]
            y = forward._linear_op(layer.name, a[None], "residual" if layer.add else "act")[0]
            x = None
            if layer.add:
                x = rng.integers(-(1 << 15), 1 << 15, layer.n)
                x[:2] = [-(1 << 15), (1 << 15) - 1]
                y = saturate(x + y, f.res_bits)
            jobs.append((index, a, x))
            want.append(y)
    got = run_layers(dut, jobs, seed=n_layer)
    for job, g, w in zip(jobs, got, want):
        np.testing.assert_array_equal(g, w, err_msg=layers[job[0]].name)
    assert any(np.abs(w).max() >= 127 for w, job in zip(want, jobs) if not layers[job[0]].add)  # saturated


def test_memories(tmp_path):
    compiled = tiny_compiled(tmp_path / "model", n_layer=1, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    dut = ProgramLinear(layers=program_layers(compiled), rows=4, columns=3)
    memories = dict((name, (width, depth)) for name, width, depth in dut.memories)
    # c_attn 16x48, c_proj 16x16, c_fc 16x64, c_proj 64x16: chunks 4, 4, 4, 16; no padding of N: one column
    # word of 4 codes per (chunk row, channel) in 3 banks; the short last tiles (one channel of 4, 4 and 16
    # words) go to banks 16 | 4 + 4 | -, so the fullest bank has 248 + 16 words
    assert memories["codes"] == (4 * 12, (4 * 48 + 4 * 16 + 4 * 64 + 16 * 16 - 24) // 3 + 16)
    assert memories["bias"][1] == 48 + 16 + 64 + 16 and memories["banks"] == (4 * 8, 16)


@pytest.mark.parametrize("codes, constants, rows, pack", [
    ("rom", "rom", 4, 1), ("loaded", "rom", 4, 1), ("loaded", "stream", 4, 1), ("loaded", "stream", 2, 2),
    ("rom", "rom", 1, 4)])
def test_no_padding(codes, constants, rows, pack):
    """Layers whose N is not a multiple of the columns and whose K is not one of the rows: the code banks hold
    exactly ``sum ceil(K / R) N`` column words (a layer may start in any bank), written or initialised; with
    ``code_pack`` words a bank word holds that many of them (loaded codes fill 16 bits: 2 rows of 4-bit codes
    pack 2), read once and used over as many beats."""
    fmt = PotFormat(4)
    rng = np.random.default_rng(3)
    shapes = [(8, 7), (6, 5), (16, 48), (5, 1), (16, 16)]
    layers = [LinearLayer(codes=rng.integers(0, 16, s), bias=rng.integers(-50, 50, s[1]),
                          mult=np.full(s[1], 1 << 14), shift=np.full(s[1], 14), out_bits=16, name=f"l{i}")
              for i, s in enumerate(shapes)]
    dut = ProgramLinear(layers=layers, rows=rows, columns=3, codes=codes, constants=constants,
                        code_pack=None if codes == "loaded" else pack)
    words = sum(-(-k // rows) * n for k, n in shapes)
    assert dut.code_pack == pack and dut.code_bits == pack * rows * 4
    fullest = pack_codes(layers, rows=rows, columns=3, bits=4, zero_code=fmt.zero_code)[0].shape[1]
    if rows == 4:
        assert fullest * 3 == words                                                          # evenly: 94 each
    assert dut.code_depth == -(-fullest // pack) and dut.code_banks.shape == (3, dut.code_depth)
    assert ("code_write" in dut.signature.members) == (codes == "loaded")
    jobs = [(i, rng.integers(-128, 128, k), None) for i, (k, n) in enumerate(shapes)] * 2
    got = run_layers(dut, jobs, seed=4)
    for (i, a, _), g in zip(jobs, got):
        want = np.clip(a @ fmt.to_int(layers[i].codes) + layers[i].bias, -(1 << 15), (1 << 15) - 1)
        np.testing.assert_array_equal(g, want, err_msg=layers[i].name)


def test_banks_fill_evenly():
    """The default model's shapes on the iCEBreaker's 4 x 3 array: the short last tiles (one channel of 16,
    16 and 64 words in each block) are spread so the three banks hold exactly a third of the words each,
    as its three SPRAMs of 16,384 words must."""
    rng = np.random.default_rng(5)
    shapes = [(64, 192), (64, 64), (64, 256), (256, 64)] * 4
    layers = [LinearLayer(codes=rng.integers(0, 16, s), bias=np.zeros(s[1]), mult=np.ones(s[1]),
                          shift=np.zeros(s[1]), out_bits=8) for s in shapes]
    banks, firsts = pack_codes(layers, rows=4, columns=3, bits=4, zero_code=7)
    assert banks.shape == (3, 16384) and sum(-(-k // 4) * n for k, n in shapes) == 3 * 16384
    assert sorted(set(firsts)) == [0, 1, 2]
    assert short_tile_banks(layers[:1], rows=4, columns=3) == [0]            # no short tile


def test_wrong():
    with pytest.raises(ValueError, match="at least one linear layer"):
        ProgramLinear(layers=[])
    with pytest.raises(ValueError, match="codes must be one of rom, loaded"):
        ProgramLinear(layers=[LinearLayer(codes=np.zeros((4, 4), int), bias=np.zeros(4), mult=np.ones(4),
                                          shift=np.zeros(4), out_bits=8)], codes="flash")
    with pytest.raises(ValueError, match="constants must be one of rom, stream"):
        ProgramLinear(layers=[LinearLayer(codes=np.zeros((4, 4), int), bias=np.zeros(4), mult=np.ones(4),
                                          shift=np.zeros(4), out_bits=8)], constants="flash")
    with pytest.raises(ValueError, match="requantizer must be one of auto, parallel, two-pass"):
        ProgramLinear(layers=[LinearLayer(codes=np.zeros((4, 4), int), bias=np.zeros(4), mult=np.ones(4),
                                          shift=np.zeros(4), out_bits=8)], requantizer="serial")
    with pytest.raises(ValueError, match="two-pass-serial requantiser needs shifts from 1 up, not from 0"):
        ProgramLinear(layers=[LinearLayer(codes=np.zeros((4, 4), int), bias=np.zeros(4), mult=np.ones(4),
                                          shift=np.zeros(4), out_bits=8)], requantizer="two-pass-serial")
    with pytest.raises(ValueError, match="code_pack must be a power of two, not 3"):
        ProgramLinear(layers=[LinearLayer(codes=np.zeros((4, 4), int), bias=np.zeros(4), mult=np.ones(4),
                                          shift=np.zeros(4), out_bits=8)], code_pack=3)


def test_channel_records(tmp_path):
    """One record per output channel of every layer, in program order: the layers' mult and shift, and their
    bias plus the channel's count of negative non-zero codes (the ones'-complement terms leave those out)."""
    compiled = tiny_compiled(tmp_path / "model", n_layer=1, n_embd=16, n_head=2, vocab_size=23, n_positions=16)
    layers = program_layers(compiled)
    dut = ProgramLinear(layers=layers, rows=4, columns=3, constants="stream")
    records = dut.channel_records()
    assert len(records) == sum(x.n for x in layers)
    negatives = [(PotFormat(compiled.bits).to_int(x.codes) < 0).sum(axis=0) for x in layers]
    assert all(n.max() > 0 for n in negatives)
    np.testing.assert_array_equal(np.array(records), np.concatenate(
        [np.stack([x.bias + n, x.mult, x.shift], axis=1) for x, n in zip(layers, negatives)]))
    biases = np.array(records)[:, 0]
    assert -(1 << (dut.bias_bits - 1)) <= biases.min() and biases.max() < 1 << (dut.bias_bits - 1)


def test_icebreaker_array(compiled_default):
    """The default model on the iCEBreaker's 2 x 3 array with loaded codes: each bank word holds two beats'
    column words (16 bits, one SPRAM word), so the three banks are 16,384 words deep, one SPRAM each; its
    tiles of at least 33 beats leave the serial-shift requantiser the 3 x 11 cycles it needs at the layers'
    shifts 16..26 (the 4 x 3 array's 17 beats do not: the barrel shifter's two-pass there)."""
    compiled = compiled_default
    f = compiled.formats
    options = dict(layers=program_layers(compiled), bits=4, act_bits=f.act_bits, res_bits=f.res_bits,
                   mult_bits=f.mult_bits, codes="loaded", constants="stream")
    dut = ProgramLinear(rows=2, columns=3, **options)
    assert (dut.code_pack, dut.code_bits, dut.code_depth, dut.requantizer) == (2, 16, 16384, "two-pass-serial")
    assert ProgramLinear(rows=4, columns=3, **options).requantizer == "two-pass"
