# amaranth: UnusedElaboratable=no

import numpy as np
import pytest
from amaranth.hdl import Fragment

from golden.datapath import wrap
from golden.pot_format import PotFormat
from golden.rom_layout import RomLayout
from hdl.bias_store import BiasStore

from hdl_cases import cases, run


@pytest.fixture
def layers():
    return cases(np.random.default_rng(0), 4, 8, [(3, 5), (2, 2)], bias_magnitude=1000)


@pytest.fixture
def layout(layers):
    return RomLayout(layers, columns=3, bits=4)


def test_init(layout):
    store = BiasStore(layout=layout, acc_bits=24)
    assert store.width == 11                                   # -1000 .. 1000 (+ 3 negative codes) needs 11 bits
    assert store.depth == layout.bias_depth * 3 and store.latency == 1 and not store.writable
    assert store.address("layer1", 1) == layout.layer("layer1").bias_base * 3 + 1
    narrow = BiasStore(layout=layout, acc_bits=6)
    assert narrow.width == 6
    writable = BiasStore(layout=layout, acc_bits=24, writable=True)
    assert writable.width == 24 and "write" in writable.signature.members
    Fragment.get(store, None)
    Fragment.get(writable, None)


def test_layout_wrong():
    with pytest.raises(TypeError, match="Layout must be"):
        BiasStore(layout=[], acc_bits=8)


@pytest.mark.parametrize("acc_bits", [1, "8"])
def test_acc_bits_wrong(layout, acc_bits):
    with pytest.raises(ValueError, match="Accumulator bits"):
        BiasStore(layout=layout, acc_bits=acc_bits)


def test_writable_wrong(layout):
    with pytest.raises(TypeError, match="Writable must be a bool, not 'yes'"):
        BiasStore(layout=layout, acc_bits=8, writable="yes")


def test_address_wrong(layout):
    with pytest.raises(ValueError, match="Channel must be from 0 to 1, not 2"):
        BiasStore(layout=layout, acc_bits=24).address("layer1", 2)


@pytest.mark.parametrize("acc_bits", [24, 7])
def test_sim_read(layers, layout, acc_bits):
    store = BiasStore(layout=layout, acc_bits=acc_bits)
    got = []

    async def bench(ctx):
        ctx.set(store.read.en, 1)
        for placement in layout.layers:
            for n in range(placement.n):
                ctx.set(store.read.addr, store.address(placement.name, n))
                await ctx.tick()
                got.append(ctx.get(store.read.data.as_signed()))

    run(store, bench)
    # Each channel's bias plus its negative non-zero codes, which the array's ones'-complement terms leave out.
    want = []
    for _, codes, bias in layers:
        want += [int(b) + int((PotFormat(4).to_int(codes[:, n]) < 0).sum()) for n, b in enumerate(bias)]
    assert got == [int(v) for v in wrap(np.array(want, dtype=np.int64), min(acc_bits, store.width))]
