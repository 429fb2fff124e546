# amaranth: UnusedElaboratable=no

import numpy as np
import pytest
from amaranth import unsigned
from amaranth.hdl import Fragment
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import Out

from golden.datapath import int8_acc_bits, int8_sum_bits, pot_acc_bits, pot_sum_bits
from golden.paths import DEFAULT_MODEL_DIR
from golden.pot_format import PotFormat
from golden.rom_layout import RomLayout
from hdl.engine import Engine

from hdl_cases import activations, cases, expected_results, simulate_engine


def make_engine(rng, bits, act_bits, shapes, columns, rows, **kwargs):
    layers = cases(rng, bits, act_bits, shapes)
    engine = Engine(layout=RomLayout(layers, columns=columns, bits=bits), rows=rows, act_bits=act_bits,
                    pe="int8" if bits is None else "pot", **kwargs)
    engine.test_layers = layers
    return engine


def check(engine, batches, **kwargs):
    got, cycles, busy = simulate_engine(engine, batches, **kwargs)
    want = expected_results(engine, batches)
    assert len(got) == len(want)
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g != w]
    assert not bad, f"{len(bad)} wrong results, first at {bad[0]}: got {got[bad[0]]}, want {want[bad[0]]}"
    # busy rises while the batches are in flight and falls once every result is out: the 4 cycles the
    # monitor watches after the last result must all be idle.
    assert any(busy), "busy never rose while the engine worked"
    assert not any(busy[-4:]), f"busy still set after the last result: {busy[-4:]}"
    return cycles


def tokens(rng, engine, index, count):
    return (index, activations(rng, engine.act_bits, (count, engine.layout.layers[index].k)))


# -- construction ----------------------------------------------------------------------------

@pytest.fixture
def layers():
    return cases(np.random.default_rng(0), 4, 8, [(5, 7), (3, 2)])


@pytest.fixture
def layout(layers):
    return RomLayout(layers, columns=3, bits=4)


def test_init(layout, layers):
    engine = Engine(layout=layout, rows=2)
    assert (engine.layout, engine.rows, engine.columns, engine.bits, engine.act_bits) == (layout, 2, 3, 4, 8)
    assert (engine.pe, engine.pes, engine.n_layers, engine.columns_per_word) == ("pot", 6, 2, 1)
    assert engine.broadcast_rows == 4 and engine.broadcast_columns == 1 and engine.drain_lag == 0
    assert engine.acc_bits == pot_acc_bits(5, 8, 4, 1000)
    # The array sums terms only (the bias is added after), as wide as the largest sum these codes make.
    assert engine.sum_bits == max(pot_sum_bits(codes, 4, 8) for _, codes, _ in layers) <= pot_acc_bits(5, 8, 4)
    assert engine.result_depth == 32                      # 2 * 3 slots * 3 columns, rounded up
    assert len(engine.code_stores) == 3 and engine.bias_store.depth == layout.bias_depth * 3
    members = engine.signature.members
    assert set(members) == {"layer", "activations", "results", "busy"}
    assert engine.layer.shape() == unsigned(1)
    assert engine.period(5) == 6 and engine.period(1) == 3
    Fragment.get(engine, None)
    wide = Engine(layout=layout, rows=1, act_bits=4, acc_bits=12, columns_per_word=2, result_depth=16)
    assert (wide.acc_bits, wide.code_word_width, len(wide.code_stores), wide.result_depth) == (12, 8, 2, 16)
    assert (wide.broadcast_columns, wide.drain_lag, wide.period(5)) == (2, 1, 7)     # columns 0 1 | 2: lag 2 - 1
    assert wide.sum_bits == 12                                             # a wrapping width is kept as it is
    Fragment.get(wide, None)


def test_init_int8():
    rng = np.random.default_rng(1)
    layers = cases(rng, None, 8, [(4, 5)])
    engine = Engine(layout=RomLayout(layers, columns=2, bits=None), rows=1, pe="int8")
    assert engine.bits is None and engine.acc_bits == int8_acc_bits(4, 8, 1000)
    assert engine.sum_bits == int8_sum_bits(layers[0][1], 8) <= int8_acc_bits(4, 8)
    Fragment.get(engine, None)


def test_layout_wrong():
    with pytest.raises(TypeError, match="Layout must be a golden.rom_layout.RomLayout, not 'x'"):
        Engine(layout="x", rows=1)


@pytest.mark.parametrize("rows", [0, "1", 1.0])
def test_rows_wrong(layout, rows):
    with pytest.raises((TypeError, ValueError), match=f"Row count must be a positive integer, not {rows!r}"):
        Engine(layout=layout, rows=rows)


@pytest.mark.parametrize("act_bits", [1, 17])
def test_act_bits_wrong(layout, act_bits):
    with pytest.raises(ValueError, match=f"not {act_bits}"):
        Engine(layout=layout, rows=1, act_bits=act_bits)


@pytest.mark.parametrize("acc_bits", [1, "24"])
def test_acc_bits_wrong(layout, acc_bits):
    with pytest.raises(ValueError, match="Accumulator bits"):
        Engine(layout=layout, rows=1, acc_bits=acc_bits)


def test_pe_wrong(layout):
    with pytest.raises(ValueError, match="PE kind must be one of 'pot', 'int8', not 'fp4'"):
        Engine(layout=layout, rows=1, pe="fp4")
    with pytest.raises(ValueError, match="needs a layout of INT8 weights"):
        Engine(layout=layout, rows=1, pe="int8")


@pytest.mark.parametrize("columns_per_word", [0, 17, "2"])
def test_columns_per_word_wrong(layout, columns_per_word):
    with pytest.raises(ValueError, match="Columns per word"):
        Engine(layout=layout, rows=1, columns_per_word=columns_per_word)


def test_code_store_wrong(layout):
    with pytest.raises(TypeError, match="Code store must be None or a callable, not 3"):
        Engine(layout=layout, rows=1, code_store=3)
    with pytest.raises(TypeError, match="Code store must return a Component"):
        Engine(layout=layout, rows=1, code_store=lambda *args: object())


@pytest.mark.parametrize("broadcast_rows", [0, "4"])
def test_broadcast_rows_wrong(layout, broadcast_rows):
    with pytest.raises((TypeError, ValueError), match=f"Broadcast rows must be a positive integer, not {broadcast_rows!r}"):
        Engine(layout=layout, rows=1, broadcast_rows=broadcast_rows)


@pytest.mark.parametrize("broadcast_columns", [0, 3, True, "2"])
def test_broadcast_columns_wrong(layout, broadcast_columns):
    with pytest.raises(ValueError, match=rf"Broadcast columns must be None, 1 or columns_per_word \(2\), "
                                         rf"not {broadcast_columns!r}"):
        Engine(layout=layout, rows=1, columns_per_word=2, broadcast_columns=broadcast_columns)


@pytest.mark.parametrize("result_depth", [8, 12, 9.0])
def test_result_depth_wrong(layout, result_depth):
    with pytest.raises(ValueError, match=f"power of two of at least 9, not {result_depth!r}"):
        Engine(layout=layout, rows=1, result_depth=result_depth)


# -- simulation --------------------------------------------------------------------------------

@pytest.mark.parametrize("bits, act_bits", [(3, 4), (4, 8), (5, 5), (6, 6), (7, 7), (8, 8)])
def test_sim_bits(bits, act_bits):
    """Every code width and activation width, exact accumulators, R > 1 with a partial tile."""
    rng = np.random.default_rng(bits)
    engine = make_engine(rng, bits, act_bits, [(6, 5)], columns=2, rows=2)
    check(engine, [tokens(rng, engine, 0, 3)])


@pytest.mark.parametrize("rows", [1, 3])
def test_sim_narrow(rows):
    """A narrow accumulator wraps exactly as golden's."""
    rng = np.random.default_rng(10 + rows)
    engine = make_engine(rng, 4, 8, [(9, 4), (2, 3)], columns=3, rows=rows, acc_bits=10)
    check(engine, [tokens(rng, engine, 0, 4), tokens(rng, engine, 1, 2)])


@pytest.mark.parametrize("bits", [4, None])
def test_sim_sum_bits_of_the_codes(bits):
    """Accumulators as narrow as the layout's codes allow (`pot_sum_bits`, far below `pot_acc_bits` for
    small weights) hold the extreme sums exactly: all-lowest and all-highest activations against columns
    of one sign each reach both ends of the range."""
    rng = np.random.default_rng(15)
    k, n = 7, 4
    if bits is None:
        weights = rng.integers(1, 20, size=(k, n)) * np.array([1, -1, 1, -1])
        weights = weights.astype(np.int8)
        layers = [("small", weights, np.array([5, -5, 0, 1000]))]
        narrow, exact = int8_sum_bits(weights, 8), int8_acc_bits(k, 8, 1000)
    else:
        fmt = PotFormat(bits)
        signs = np.broadcast_to(np.array([0, 1, 0, 1]), (k, n))
        weights = fmt.encode(signs, rng.integers(3, fmt.emax + 1, size=(k, n)))
        weights[2, 2] = fmt.zero_code
        layers = [("small", weights, np.array([5, -5, 0, 1000]))]
        narrow, exact = pot_sum_bits(weights, bits, 8), pot_acc_bits(k, 8, bits, 1000)
    engine = Engine(layout=RomLayout(layers, columns=3, bits=bits), rows=2, pe="int8" if bits is None else "pot")
    engine.test_layers = layers
    assert engine.acc_bits == exact and engine.sum_bits == narrow <= exact - 3
    x = np.array([[-128] * k, [127] * k, [-128, 127] * 3 + [0]], dtype=np.int64)
    check(engine, [(0, x)])


def test_sim_shapes():
    """K of 1, N below and not a multiple of C, one column, one row."""
    rng = np.random.default_rng(20)
    engine = make_engine(rng, 4, 6, [(1, 5), (4, 1), (3, 4)], columns=4, rows=1)
    check(engine, [tokens(rng, engine, 0, 2), tokens(rng, engine, 1, 1), tokens(rng, engine, 2, 3)])
    engine = make_engine(rng, 5, 6, [(3, 3), (1, 1)], columns=1, rows=2)
    check(engine, [tokens(rng, engine, 0, 3), tokens(rng, engine, 1, 2)])


@pytest.mark.parametrize("rows, columns", [(1, 3), (2, 2), (3, 4)])
def test_sim_backpressure(rows, columns):
    """Several layers selected by `layer`, batches back to back, random stalls on both streams."""
    rng = np.random.default_rng(30 + rows)
    engine = make_engine(rng, 4, 8, [(4, 5), (7, 2), (2, 7)], columns=columns, rows=rows)
    batches = [tokens(rng, engine, i, t) for i, t in [(2, 1), (0, 4), (1, 3), (2, 2), (0, 1)]]
    check(engine, batches, seed=rows, in_stall=0.4, out_stall=0.5)


def test_sim_int8():
    rng = np.random.default_rng(40)
    engine = make_engine(rng, None, 8, [(5, 3), (2, 5)], columns=2, rows=2)
    check(engine, [tokens(rng, engine, 0, 3), tokens(rng, engine, 1, 2)], in_stall=0.2, out_stall=0.2)
    narrow = make_engine(rng, None, 8, [(6, 3)], columns=3, rows=1, acc_bits=11)
    check(narrow, [tokens(rng, narrow, 0, 2)])


@pytest.mark.parametrize("columns_per_word, broadcast_columns", [(2, None), (4, None), (2, 1), (4, 1)])
def test_sim_columns_per_word(columns_per_word, broadcast_columns):
    """Grouped code words, including a partial last group (5 columns); activations broadcast across a
    word's columns (the default) or registered in every PE."""
    rng = np.random.default_rng(50 + columns_per_word)
    engine = make_engine(rng, 4, 8, [(3, 9), (5, 4)], columns=5, rows=2, columns_per_word=columns_per_word,
                         broadcast_columns=broadcast_columns)
    assert engine.broadcast_columns == (broadcast_columns or columns_per_word)
    assert engine.period(3) == max(4 + engine.drain_lag, 5) and engine.drain_lag == (4 - 4 // engine.broadcast_columns)
    check(engine, [tokens(rng, engine, 0, 3), tokens(rng, engine, 1, 1)], out_stall=0.3)


def test_sim_code_store_callable():
    """A board's code store: here a CodeStore with a write port, built from the words it is given."""
    rng = np.random.default_rng(60)
    made = []

    class Board(wiring.Component):
        def __init__(self, words, width):
            self.words = [int(w) for w in words]
            super().__init__({"read": Out(memory.ReadPort.Signature(addr_width=8, shape=unsigned(width)))})

        def elaborate(self, platform):
            from amaranth import Module
            m = Module()
            m.submodules.mem = mem = memory.Memory(shape=unsigned(self.read.data.shape().width), depth=256,
                                                   init=self.words)
            port = mem.read_port()
            m.d.comb += [port.addr.eq(self.read.addr), port.en.eq(self.read.en), self.read.data.eq(port.data)]
            return m

    def store(first, per_word, words, width):
        made.append((first, per_word, width))
        return Board(words, width)

    engine = make_engine(rng, 4, 8, [(4, 6)], columns=3, rows=1, columns_per_word=2, code_store=store)
    assert made == [(0, 2, 8), (2, 2, 8)]
    check(engine, [tokens(rng, engine, 0, 2)])


def test_sim_result_depth_minimal():
    """The smallest result buffer (one tile's slots) still streams, just with less overlap."""
    rng = np.random.default_rng(70)
    engine = make_engine(rng, 4, 8, [(3, 8)], columns=2, rows=2, result_depth=8)
    check(engine, [tokens(rng, engine, 0, 5)], out_stall=0.3)


def test_sim_throughput():
    """Compute-bound: a long batch takes slots * max(K + 1, C) cycles per tile, plus a fill."""
    rng = np.random.default_rng(80)
    engine = make_engine(rng, 4, 8, [(8, 6)], columns=3, rows=2)
    batches = [tokens(rng, engine, 0, 12)]
    cycles = check(engine, batches, layer_noise=False)
    tiles, slots, period = 6, 2, engine.period(8)
    fill = 2 * 8 + 2 + 3 + 12              # first tile load, skew, pipeline, last tile's output
    assert cycles <= tiles * slots * period + fill, cycles
    # Output-bound: K small, N large: one result per cycle.
    engine = make_engine(rng, 4, 8, [(2, 12)], columns=3, rows=2)
    cycles = check(engine, [tokens(rng, engine, 0, 6)], layer_noise=False)
    assert cycles <= 6 * 12 + 20, cycles


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "config.json").exists(),
                    reason="the default model is not in golden/models/shakespeare_char (run `python -m golden.train`)")
def test_sim_real_layer():
    """A real layer of the default model (h.0.mlp.c_proj, the largest K), activations from its forward pass."""
    from golden.checkpoint import load_checkpoint
    from hdl.emit import build_layout, calibration_tokens, real_activations

    model = load_checkpoint(DEFAULT_MODEL_DIR)
    name = "h.0.mlp.c_proj"
    text = calibration_tokens(model, DEFAULT_MODEL_DIR)
    layout, scales = build_layout(model, 4, "pot-channel", 8, [name], 8, tokens=text)
    engine = Engine(layout=layout, rows=2)
    engine.test_layers = [(name, layer_codes(layout, 0), layer_bias(layout, 0))]
    x = real_activations(model, name, scales[name].act_scale, 8, text[:3])
    assert np.abs(x).max() > 10                                 # real-looking: uses the range
    check(engine, [(0, x)], out_stall=0.2, max_cycles=400_000)


def layer_codes(layout, index):
    """The (K, N) codes of layer `index`, read back from the layout's column images."""
    p = layout.layers[index]
    image = layout.code_images[:, p.code_base:p.code_base + p.code_depth]      # (C, slots * K)
    codes = image.reshape(layout.columns, p.slots, p.k).transpose(2, 1, 0).reshape(p.k, -1)[:, :p.n]
    return codes.view(np.int8) if layout.bits is None else codes


def layer_bias(layout, index):
    p = layout.layers[index]
    biases = layout.bias_images[:, p.bias_base:p.bias_base + p.slots].T.reshape(-1)[:p.n]
    return np.array([int(b) for b in biases], dtype=np.int64)


@pytest.mark.parametrize("seed", range(40))
def test_sim_random(seed):
    """Random configurations: widths, array shape, grouping, layer shapes, wrap, stalls."""
    rng = np.random.default_rng(1000 + seed)
    bits = [None, 3, 4, 5, 6, 7, 8][seed % 7]
    act_bits = int(rng.integers(2, 9))
    columns = int(rng.integers(1, 6))
    shapes = [(int(rng.integers(1, 10)), int(rng.integers(1, 12))) for _ in range(int(rng.integers(1, 4)))]
    kwargs = {"columns_per_word": int(rng.integers(1, 4)), "broadcast_rows": int(rng.integers(1, 5)),
              "broadcast_columns": 1 if seed % 3 == 0 else None}
    if rng.random() < 0.4:
        kwargs["acc_bits"] = int(rng.integers(4, 14))
    engine = make_engine(rng, bits, act_bits, shapes, columns=columns, rows=int(rng.integers(1, 7)), **kwargs)
    batches = [tokens(rng, engine, int(rng.integers(0, len(shapes))), int(rng.integers(1, 7)))
               for _ in range(int(rng.integers(1, 5)))]
    check(engine, batches, seed=seed, in_stall=float(rng.random() * 0.6), out_stall=float(rng.random() * 0.6))
