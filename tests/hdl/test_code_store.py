# amaranth: UnusedElaboratable=no

import numpy as np
import pytest
from amaranth.hdl import Fragment

from golden.pot_format import unpack_codes
from golden.rom_layout import RomLayout
from hdl.code_store import CodeStore

from hdl_cases import cases, run


@pytest.fixture
def layout():
    return RomLayout(cases(np.random.default_rng(0), 4, 8, [(3, 5), (2, 2)]), columns=3, bits=4)


def test_init(layout):
    store = CodeStore(layout=layout)
    assert (store.first_column, store.columns_per_word, store.word_width, store.code_bits) == (0, 1, 4, 4)
    assert store.depth == layout.code_depth == 2 * 3 + 1 * 2 and store.addr_width == 3
    assert store.words == [int(c) for c in layout.code_images[0]]
    assert not store.writable and "write" not in store.signature.members and store.latency == 1
    wide = CodeStore(layout=layout, first_column=2, columns_per_word=2, writable=True)
    assert wide.word_width == 8 and "write" in wide.signature.members
    Fragment.get(store, None)
    Fragment.get(wide, None)


def test_layout_wrong():
    with pytest.raises(TypeError, match="Layout must be a golden.rom_layout.RomLayout, not None"):
        CodeStore(layout=None)


@pytest.mark.parametrize("first_column", [-1, 3, 1, "0"])
def test_first_column_wrong(layout, first_column):
    with pytest.raises(ValueError, match=f"First column must be a multiple of 2 below 3, not {first_column!r}"):
        CodeStore(layout=layout, first_column=first_column, columns_per_word=2)


@pytest.mark.parametrize("columns_per_word", [0, 17, 2.0])
def test_columns_per_word_wrong(layout, columns_per_word):
    with pytest.raises(ValueError, match="Columns per word"):
        CodeStore(layout=layout, columns_per_word=columns_per_word)


def test_writable_wrong(layout):
    with pytest.raises(TypeError, match="Writable must be a bool, not 1"):
        CodeStore(layout=layout, writable=1)


@pytest.mark.parametrize("bits", [3, 4, 8, None])
@pytest.mark.parametrize("columns_per_word", [1, 2, 3])
def test_sim_read(bits, columns_per_word):
    rng = np.random.default_rng(bits or 1)
    layout = RomLayout(cases(rng, bits, 8, [(4, 7), (1, 3)]), columns=3, bits=bits)
    code_bits = layout.code_bits
    for first in range(0, 3, columns_per_word):
        store = CodeStore(layout=layout, first_column=first, columns_per_word=columns_per_word)
        got = []

        async def bench(ctx):
            ctx.set(store.read.en, 1)
            for address in range(store.depth):
                ctx.set(store.read.addr, address)
                await ctx.tick()
                got.append(ctx.get(store.read.data))

        run(store, bench)
        for lane in range(min(columns_per_word, 3 - first)):
            column = [(w >> (lane * code_bits)) & ((1 << code_bits) - 1) for w in got]
            assert column == [int(c) for c in layout.code_images[first + lane]]
        assert got == store.words
        if bits is not None:                             # golden's packing, read back by golden
            lanes = unpack_codes(got, bits, store.word_width, len(got) * columns_per_word).reshape(-1, columns_per_word)
            width = min(columns_per_word, 3 - first)
            assert (lanes[:, :width].T == layout.code_images[first:first + width]).all()


def test_sim_write(layout):
    store = CodeStore(layout=layout, writable=True)
    got = []

    async def bench(ctx):
        ctx.set(store.write.addr, 2)
        ctx.set(store.write.data, 0b1011)
        ctx.set(store.write.en, 1)
        ctx.set(store.read.addr, 2)
        ctx.set(store.read.en, 1)
        await ctx.tick()
        got.append(ctx.get(store.read.data))             # old word: the read is not transparent
        ctx.set(store.write.en, 0)
        await ctx.tick()
        got.append(ctx.get(store.read.data))
        ctx.set(store.read.en, 0)
        ctx.set(store.read.addr, 0)
        await ctx.tick()
        got.append(ctx.get(store.read.data))             # en low: holds

    run(store, bench)
    assert got == [store.words[2], 0b1011, 0b1011]
