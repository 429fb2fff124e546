"""The power-of-two weight code: the number format that binds golden/ and hdl/.

A `b`-bit code (3 <= b <= 8) holds a sign in its top bit (1 = negative) and an
exponent index `e` in its low `b - 1` bits. The code whose exponent bits are all
ones is zero (either sign; `encode` writes the positive one). With
``Emax = 2**(b-1) - 2`` a code stands for ``(-1)**sign * 2**(-e)`` times the
scale of its output channel, so one channel spans ``Emax + 1`` octaves.

Codes are packed ``b`` bits each, little-endian within a word: code ``i`` of a
word occupies bits ``[i*b, (i+1)*b)``, and a word holds ``word_bits // b`` codes
(the leftover high bits are zero). The hardware's ROMs and the ROM export use
`pack_codes` / `unpack_codes`; nobody else packs codes.

Every function here is integer-exact and vectorised over numpy arrays.
"""

from dataclasses import dataclass

import numpy as np

__all__ = [
    "MIN_BITS", "MAX_BITS", "DEFAULT_BITS",
    "PotFormat", "check_bits",
    "pack_codes", "unpack_codes",
]

MIN_BITS = 3
MAX_BITS = 8
DEFAULT_BITS = 4


def check_bits(bits):
    """Return `bits` as an int if it is a valid weight code width, else raise ValueError."""
    if isinstance(bits, bool) or not isinstance(bits, (int, np.integer)):
        raise TypeError(f"Weight bits must be an integer from {MIN_BITS} to {MAX_BITS}, not {bits!r}")
    if not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"Weight bits must be from {MIN_BITS} to {MAX_BITS}, not {bits}")
    return int(bits)


@dataclass(frozen=True)
class PotFormat:
    """The `b`-bit power-of-two code.

    Parameters
    ----------
    bits : int
        Code width, sign included, from 3 to 8.

    Attributes
    ----------
    emax : int
        The largest exponent index, ``2**(bits-1) - 2``; the term of a code with
        exponent ``e`` is the activation shifted left by ``emax - e``.
    zero_code : int
        The code of the value zero (sign 0, every exponent bit set).
    sign_bit : int
        The mask of the sign bit, ``1 << (bits - 1)``.
    """

    bits: int = DEFAULT_BITS

    def __post_init__(self):
        object.__setattr__(self, "bits", check_bits(self.bits))

    @property
    def exponent_bits(self):
        return self.bits - 1

    @property
    def emax(self):
        return (1 << self.exponent_bits) - 2

    @property
    def zero_code(self):
        return (1 << self.exponent_bits) - 1

    @property
    def sign_bit(self):
        return 1 << self.exponent_bits

    @property
    def levels(self):
        """The magnitudes a code can stand for, relative to the scale, largest first."""
        return 2.0 ** -np.arange(self.emax + 1)

    def encode(self, sign, exponent, zero=None):
        """Codes from signs (0/1 or bool), exponent indices (0..emax) and a zero mask.

        Raises ValueError if an exponent of a non-zero entry is outside 0..emax.
        """
        sign = np.asarray(sign).astype(np.uint8) & 1
        exponent = np.asarray(exponent, dtype=np.int64)
        zero = np.zeros(np.broadcast(sign, exponent).shape, bool) if zero is None else np.asarray(zero, bool)
        bad = ~zero & ((exponent < 0) | (exponent > self.emax))
        if bad.any():
            raise ValueError(f"Exponent index must be from 0 to {self.emax} at {self.bits} bits, "
                             f"not {int(exponent[bad].flat[0])}")
        codes = (sign.astype(np.int64) << self.exponent_bits) | np.where(zero, 0, exponent)
        return np.where(zero, self.zero_code, codes).astype(np.uint8)

    def decode(self, codes):
        """Split codes into (sign, exponent, is_zero) arrays; sign and exponent of zeros are 0."""
        codes = self.check_codes(codes)
        exponent = (codes & self.zero_code).astype(np.int64)
        is_zero = exponent == self.zero_code
        sign = np.where(is_zero, 0, codes >> self.exponent_bits).astype(np.int64)
        return sign, np.where(is_zero, 0, exponent), is_zero

    def to_float(self, codes):
        """The value of each code relative to its scale, ``(-1)**sign * 2**-e`` (0 for zero), float64."""
        sign, exponent, is_zero = self.decode(codes)
        magnitude = np.ldexp(1.0, -exponent)
        return np.where(is_zero, 0.0, np.where(sign == 1, -magnitude, magnitude))

    def to_int(self, codes):
        """The value of each code in units of ``2**-emax``: ``(-1)**sign * 2**(emax - e)``, int64.

        This is the integer a code multiplies an activation by in the datapath:
        int64 up to 6 bits, Python ints (object array) at 7 and 8 bits.
        """
        sign, exponent, is_zero = self.decode(codes)
        if self.emax < 62:
            magnitude = np.left_shift(np.int64(1), self.emax - exponent)
            return np.where(is_zero, 0, np.where(sign == 1, -magnitude, magnitude)).astype(np.int64)
        # 7- and 8-bit codes shift by up to 62 and 126 places: Python ints keep them exact.
        values = [0 if z else (-1 if s else 1) << (self.emax - int(e))
                  for s, e, z in zip(sign.flat, exponent.flat, is_zero.flat)]
        return np.array(values, dtype=object).reshape(np.shape(codes))

    def check_codes(self, codes):
        """Return `codes` as a uint8 array, or raise ValueError if any does not fit in `bits`."""
        codes = np.asarray(codes)
        if codes.size == 0:
            return codes.astype(np.uint8)
        if codes.dtype.kind not in "ui":
            raise TypeError(f"Codes must be an integer array, not {codes.dtype}")
        if codes.size and (codes.min() < 0 or codes.max() >= 1 << self.bits):
            bad = codes[(codes < 0) | (codes >= 1 << self.bits)].flat[0]
            raise ValueError(f"Code {int(bad)} does not fit in {self.bits} bits")
        return codes.astype(np.uint8)


def _codes_per_word(bits, word_bits):
    bits = check_bits(bits)
    if isinstance(word_bits, bool) or not isinstance(word_bits, (int, np.integer)) or not bits <= word_bits <= 64:
        raise ValueError(f"Word width must be an integer from {bits} to 64 bits, not {word_bits!r}")
    return word_bits // bits


def pack_codes(codes, bits, word_bits):
    """Pack a 1-D sequence of `bits`-bit codes into words of `word_bits` bits, little-endian.

    The last word is padded with zero codes' worth of zero bits if the count is
    not a multiple of the codes per word. Returns a uint64 array of words.
    """
    per_word = _codes_per_word(bits, word_bits)
    codes = PotFormat(bits).check_codes(np.asarray(codes).reshape(-1)).astype(np.uint64)
    padded = np.zeros(-(-codes.size // per_word) * per_word, np.uint64)
    padded[:codes.size] = codes
    lanes = padded.reshape(-1, per_word)
    shifts = (np.arange(per_word, dtype=np.uint64) * np.uint64(bits))
    return np.bitwise_or.reduce(lanes << shifts, axis=1) if per_word > 1 else lanes[:, 0].copy()


def unpack_codes(words, bits, word_bits, count):
    """Unpack `count` codes from words packed by `pack_codes`. Returns uint8 codes."""
    per_word = _codes_per_word(bits, word_bits)
    words = np.asarray(words, dtype=np.uint64).reshape(-1)
    if count > words.size * per_word:
        raise ValueError(f"{words.size} words of {per_word} codes hold fewer than {count} codes")
    shifts = np.arange(per_word, dtype=np.uint64) * np.uint64(bits)
    lanes = (words[:, None] >> shifts) & np.uint64((1 << bits) - 1)
    return lanes.reshape(-1)[:count].astype(np.uint8)
