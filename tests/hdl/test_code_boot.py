# amaranth: UnusedElaboratable=no
"""The boot sequencer that reads the linear codes from the flash image at reset (`hdl.code_boot`): the image's
layout, and in simulation every word written once to its bank and address, or nothing on a wrong image."""

import hashlib

import numpy as np
import pytest
from amaranth.sim import Simulator

from hdl.code_boot import CHECK_BYTES, CodeBoot, code_image, codes_base, flash_image


def test_image_layout():
    """Constants from 0, erased flash up to the next power of two (256 at least), the check (SHA-256 of constants
    and codes), then the banks, bank 0 first, each word little-endian in whole bytes."""
    banks = np.array([[0x1234, 0xABCD], [7, 0xFFFF]])
    image, base, check = flash_image(b"\x01\x02\x03", banks, 16)
    assert base == 256 and image[:3] == b"\x01\x02\x03" and image[3:256] == b"\xff" * 253
    assert image[256:264] == check == hashlib.sha256(b"\x01\x02\x03" + image[264:]).digest()[:CHECK_BYTES]
    assert image[264:] == bytes.fromhex("3412cdab0700ffff")
    assert code_image([[5, 0x40000]], 20) == bytes.fromhex("050000000004")
    assert codes_base(0) == 0 and codes_base(1) == codes_base(256) == 256 and codes_base(257) == 512
    assert codes_base(23_168) == 32_768


def boot(image, *, base, check, columns, depth, word_bits, seed=0):
    """Run a `CodeBoot` against a reader model serving `image` from each seek's address (stalling at random);
    returns (writes as (bank, addr, data), loaded, failed, cycles)."""
    dut = CodeBoot(base=base, check=check, columns=columns, depth=depth, word_bits=word_bits)
    rng = np.random.default_rng(seed)
    writes, state = [], {}

    async def bench(ctx):
        address = None
        for cycle in range(20 * len(image) + 100):
            ctx.set(dut.seek.ready, 1)
            offer = address is not None and address < len(image) and rng.random() < 0.6
            ctx.set(dut.data.valid, offer)
            if offer:
                ctx.set(dut.data.payload, image[address])
            await ctx.delay(1e-9)
            seek, sought = ctx.get(dut.seek.valid), ctx.get(dut.seek.payload)
            taken = offer and ctx.get(dut.data.ready)
            en, bank, addr, data = (ctx.get(dut.code_write.en), ctx.get(dut.code_write.bank),
                                    ctx.get(dut.code_write.addr), ctx.get(dut.code_write.data))
            loaded, failed = ctx.get(dut.loaded), ctx.get(dut.failed)
            await ctx.tick()
            if en:
                writes.append((bank, addr, data))
            if seek:
                address = sought
                assert address == base
            elif taken:
                address += 1
            if loaded or failed:
                state.update(loaded=loaded, failed=failed, cycles=cycle)
                for _ in range(20):             # it stays so, and writes nothing more
                    await ctx.tick()
                    assert (ctx.get(dut.loaded), ctx.get(dut.failed)) == (loaded, failed)
                    assert not ctx.get(dut.code_write.en) and not ctx.get(dut.seek.valid)
                return
        raise AssertionError("the boot never ended")

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return writes, state["loaded"], state["failed"], state["cycles"]


@pytest.mark.parametrize("columns, depth, word_bits", [(3, 5, 16), (2, 4, 8), (1, 3, 20)])
def test_boot_writes_every_word(columns, depth, word_bits):
    banks = np.random.default_rng(columns).integers(0, 1 << word_bits, (columns, depth))
    image, base, check = flash_image(bytes(range(40)), banks, word_bits)
    writes, loaded, failed, _ = boot(image, base=base, check=check, columns=columns, depth=depth,
                                     word_bits=word_bits)
    assert (loaded, failed) == (1, 0)
    assert writes == [(b, a, int(banks[b, a])) for b in range(columns) for a in range(depth)]


@pytest.mark.parametrize("wrong", ["erased", "other build", "last check byte"])
def test_boot_refuses_an_image_of_another_build(wrong):
    """An erased flash, another build's image or a check one byte off: `failed`, and no word written."""
    banks = np.arange(12).reshape(3, 4)
    image, base, check = flash_image(bytes(40), banks, 16)
    if wrong == "erased":
        image = b"\xff" * len(image)
    elif wrong == "other build":
        image = flash_image(bytes(40), banks + 1, 16)[0]
    else:
        image = image[:base + CHECK_BYTES - 1] + bytes([image[base + CHECK_BYTES - 1] ^ 1]) + image[base + CHECK_BYTES:]
    writes, loaded, failed, _ = boot(image, base=base, check=check, columns=3, depth=4, word_bits=16)
    assert (loaded, failed, writes) == (0, 1, [])


@pytest.mark.parametrize("kwargs, message", [
    (dict(base=1 << 24), "base must be an integer from 0"),
    (dict(check=b"short"), "check must be 8 bytes"),
    (dict(columns=0), "columns must be an integer from 1"),
    (dict(word_bits=True), "word_bits must be an integer"),
])
def test_params_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CodeBoot(**{"base": 0, "check": bytes(8), "columns": 3, "depth": 4, "word_bits": 16, **kwargs})
