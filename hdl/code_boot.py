"""Codes from the SPI flash at reset: a boot sequencer that reads the linear codes into their banks, then steps aside."""

import hashlib

import numpy as np
from amaranth import Array, Cat, Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["CodeBoot", "CHECK_BYTES", "CODES_ALIGN", "codes_base", "code_image", "flash_image"]

#: Bytes of the check that opens the codes' part of the image (the first bytes of a SHA-256 of the whole image).
CHECK_BYTES = 8
#: The codes' part starts at a power of two of at least this many bytes (a flash page).
CODES_ALIGN = 256


def codes_base(constant_bytes):
    """Image address of the codes' part: the smallest power of two (at least `CODES_ALIGN`) at or past
    `constant_bytes`, or 0 without constants. A power of two, so the board top merges the boot's one seek
    address into the core's with a single OR (`boards.forward_top.ForwardTop`)."""
    return 0 if constant_bytes == 0 else max(CODES_ALIGN, 1 << (constant_bytes - 1).bit_length())


def code_image(banks, word_bits):
    """The code banks (``(columns, depth)`` ints) as bytes: bank 0's words first, each word little-endian in
    ``ceil(word_bits / 8)`` bytes."""
    banks = np.asarray(banks, dtype=np.uint64)
    word_bytes = -(-word_bits // 8)
    return b"".join(int(word).to_bytes(word_bytes, "little") for word in banks.reshape(-1))


def flash_image(constants, banks, word_bits):
    """The one image the iCEBreaker's flash holds past the bitstream: the core's constant image (`constants`,
    from address 0, as the core seeks it), padding (0xFF, as erased flash reads) to `codes_base`, then the
    codes' part:
    `CHECK_BYTES` bytes of check (SHA-256 of the constants and the codes, its first bytes) and `code_image`.

    Returns ``(image, base, check)``: `base` is the codes' part's address, `check` the bytes that open it."""
    constants = bytes(constants)
    codes = code_image(banks, word_bits)
    check = hashlib.sha256(constants + codes).digest()[:CHECK_BYTES]
    base = codes_base(len(constants))
    return constants + b"\xff" * (base - len(constants)) + check + codes, base, check


class CodeBoot(wiring.Component):
    """Reads the linear engine's codes from the SPI flash after reset and writes them into the code banks.

    After reset it seeks its flash reader (`hdl.spi_flash_reader.SPIFlashReader`'s
    ``seek``/``data``) to `base`, where the image holds `check` and then the
    codes (`flash_image`), compares the first `CHECK_BYTES` bytes with `check`
    and, if they match, writes each word of the banks, bank 0 first, through
    `code_write` (a word as its last byte comes: one write per
    ``ceil(word_bits / 8)`` bytes), then raises `loaded` and takes no more
    bytes: the board top hands the reader to the core. A mismatch (a flash
    without this build's image: erased, or written for another build) raises
    `failed` instead and writes nothing; the codes then never count as loaded.

    Parameters
    ----------
    base : int
        Image address of the codes' part (24 bits).
    check : bytes
        The `CHECK_BYTES` bytes the codes' part must start with.
    columns, depth : int
        Banks and words per bank (`hdl.forward.program_linear.ProgramLinear`'s ``columns``, ``code_depth``).
    word_bits : int
        Bits of a bank word (``code_bits``).

    Members
    -------
    seek : Out(stream.Signature(24))
        To the reader: `base`, once, after reset.
    data : In(stream.Signature(8))
        From the reader: the image's bytes from `base` on.
    code_write : Out(Signature({"en", "bank", "addr", "data"}))
        To the core's ``code_write`` (`ProgramLinear.code_write_signature`): ``en`` a cycle per word.
    loaded : Out(1)
        Every word is written (and the check matched).
    failed : Out(1)
        The check did not match: the flash does not hold this build's image.

    Raises
    ------
    ValueError
        On a parameter out of range.
    """

    def __init__(self, *, base, check, columns, depth, word_bits):
        for name, value, low, high in (("base", base, 0, (1 << 24) - 1), ("columns", columns, 1, 1 << 16),
                                       ("depth", depth, 1, 1 << 24), ("word_bits", word_bits, 1, 64)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise ValueError(f"{name} must be an integer from {low} to {high}, not {value!r}")
        if not isinstance(check, (bytes, bytearray)) or len(check) != CHECK_BYTES:
            raise ValueError(f"check must be {CHECK_BYTES} bytes, not {check!r}")
        self._base, self._check = base, bytes(check)
        self._columns, self._depth, self._word_bits = columns, depth, word_bits
        super().__init__({
            "seek": Out(stream.Signature(24)),
            "data": In(stream.Signature(8)),
            "code_write": Out(wiring.Signature({"en": Out(1), "bank": Out(range(columns)),
                                                "addr": Out(range(max(2, depth))), "data": Out(word_bits)})),
            "loaded": Out(1),
            "failed": Out(1),
        })

    @property
    def base(self):
        return self._base

    @property
    def check(self):
        return self._check

    @property
    def word_bytes(self):
        return -(-self._word_bits // 8)

    def elaborate(self, platform):
        m = Module()
        word_bytes, depth = self.word_bytes, self._depth
        data, write = self.data, self.code_write
        # The header's bytes are counted in `addr` too (it is 0 again when the codes start).
        addr = Signal(range(max(2, depth, CHECK_BYTES)))
        bank = Signal(range(self._columns))
        phase = Signal(range(max(2, word_bytes)))   # bytes of the word so far
        earlier = Signal(8 * max(1, word_bytes - 1))  # the word's bytes before its last, the latest on top
        taken = data.valid & data.ready
        m.d.comb += [write.addr.eq(addr), write.bank.eq(bank),
                     write.data.eq(Cat(earlier, data.payload) if word_bytes > 1 else data.payload)]

        with m.FSM(name="boot_fsm"):
            with m.State("Seek"):
                m.d.comb += [self.seek.valid.eq(1), self.seek.payload.eq(self._base)]
                with m.If(self.seek.ready):
                    m.next = "Check"
            with m.State("Check"):
                m.d.comb += data.ready.eq(1)
                expected = Array(self._check)[addr[:3]]
                with m.If(data.valid):
                    m.d.sync += addr.eq(addr + 1)
                    with m.If(data.payload != expected):
                        m.next = "Failed"
                    with m.Elif(addr == CHECK_BYTES - 1):
                        m.d.sync += addr.eq(0)
                        m.next = "Codes"
            with m.State("Codes"):
                m.d.comb += data.ready.eq(1)
                if word_bytes > 1:
                    with m.If(taken):
                        m.d.sync += [earlier.eq(Cat(earlier[8:], data.payload)), phase.eq(phase + 1)]
                    last = phase == word_bytes - 1
                else:
                    last = 1
                with m.If(taken & last):
                    m.d.comb += write.en.eq(1)
                    m.d.sync += [phase.eq(0), addr.eq(addr + 1)]
                    with m.If(addr == depth - 1):
                        m.d.sync += [addr.eq(0), bank.eq(bank + 1)]
                        with m.If(bank == self._columns - 1):
                            m.next = "Loaded"
            with m.State("Loaded"):
                m.d.comb += self.loaded.eq(1)
            with m.State("Failed"):
                m.d.comb += self.failed.eq(1)
        return m
