"""How the codes and biases of linear layers are laid out in the array's column ROMs.

An array of ``C`` columns computes ``C`` output channels at once. Output channel
``n`` of a layer belongs to column ``n % C``, in slot ``n // C``; a layer of
``N`` channels takes ``slots = ceil(N / C)`` passes over its ``K`` inputs. The
code ROM of column ``c`` holds, for each layer in turn, ``slots * K`` codes:
entry ``base + slot * K + k`` is the code of weight ``(k, c + C * slot)``.
Channels past ``N`` (when ``N`` is not a multiple of ``C``) hold the zero code
and bias 0. The bias ROM of column ``c`` holds one bias per slot likewise.

This is the layout of the hardware's ROM Memories and of the ROM export; both
take it from here and pack words with `golden.pot_format.pack_codes`.
"""

from dataclasses import dataclass

import numpy as np

from .pot_format import PotFormat, pack_codes

__all__ = ["LayerPlacement", "RomLayout", "check_columns"]


def check_columns(columns):
    if isinstance(columns, bool) or not isinstance(columns, (int, np.integer)) or columns < 1:
        raise ValueError(f"Column count must be a positive integer, not {columns!r}")
    return int(columns)


@dataclass(frozen=True)
class LayerPlacement:
    """Where one layer lives in every column's ROMs.

    Attributes
    ----------
    name : str
    k, n : int
        Inputs and output channels of the layer.
    slots : int
        ``ceil(n / columns)``: passes of the array over the K inputs.
    code_base : int
        First code entry of the layer in each column's code ROM.
    bias_base : int
        First entry of the layer in each column's bias ROM.
    """

    name: str
    k: int
    n: int
    slots: int
    code_base: int
    bias_base: int

    @property
    def code_depth(self):
        return self.slots * self.k


class RomLayout:
    """Code and bias ROM images of one or more layers for an array of `columns` columns.

    Parameters
    ----------
    layers : sequence of (name, codes (K, N), bias (N,))
        Codes are `bits`-bit PoT codes (or int8 weights with ``bits=None``,
        stored as their two's-complement byte); biases are integers.
    columns : int
    bits : int or None
        Code width; None for the INT8 reference array.
    """

    def __init__(self, layers, *, columns, bits):
        self.columns = check_columns(columns)
        self.bits = bits
        fill = self.pad_code = PotFormat(bits).zero_code if bits is not None else 0
        placements, code_parts, bias_parts = [], [], []
        code_base = bias_base = 0
        for name, codes, bias in layers:
            codes = np.asarray(codes)
            k, n = codes.shape
            if np.shape(bias) != (n,):
                raise ValueError(f"Layer {name}: bias of shape {np.shape(bias)} does not match {n} channels")
            slots = -(-n // self.columns)
            padded = np.full((k, slots * self.columns), fill, dtype=np.int64)
            padded[:, :n] = codes.astype(np.int64) & 0xFF if bits is None else codes
            # (k, slot, column) -> (column, slot, k): entry slot * K + k of column c.
            code_parts.append(padded.reshape(k, slots, self.columns).transpose(2, 1, 0).reshape(self.columns, -1))
            padded_bias = np.zeros(slots * self.columns, dtype=object)
            padded_bias[:n] = [int(b) for b in bias]
            bias_parts.append(padded_bias.reshape(slots, self.columns).T)
            placements.append(LayerPlacement(name, k, n, slots, code_base, bias_base))
            code_base += slots * k
            bias_base += slots
        if not placements:
            raise ValueError("A ROM layout needs at least one layer")
        self.layers = tuple(placements)
        #: (columns, code_depth) code images, uint8.
        self.code_images = np.concatenate(code_parts, axis=1).astype(np.uint8)
        #: (columns, bias_depth) bias images, Python ints.
        self.bias_images = np.concatenate(bias_parts, axis=1)

    @property
    def code_depth(self):
        return self.code_images.shape[1]

    @property
    def bias_depth(self):
        return self.bias_images.shape[1]

    @property
    def max_k(self):
        return max(layer.k for layer in self.layers)

    def layer(self, name):
        for placement in self.layers:
            if placement.name == name:
                return placement
        raise KeyError(f"No layer {name!r} in this layout; it holds {', '.join(l.name for l in self.layers)}")

    @property
    def code_bits(self):
        """Width of one stored code: `bits`, or 8 for INT8 weights."""
        return 8 if self.bits is None else self.bits

    def group_words(self, first_column, columns_per_word):
        """The code image of columns ``first_column .. first_column + columns_per_word - 1``
        packed side by side: word ``a`` holds entry ``a`` of each of those columns,
        little-endian (column ``first_column`` in the low bits). A memory of such
        words feeds ``columns_per_word`` columns with one read per cycle; with one
        column per word it is simply that column's codes. Returns uint64 words.
        """
        if not 1 <= columns_per_word or first_column % columns_per_word or first_column >= self.columns:
            raise ValueError(f"Column group at {first_column} of {columns_per_word} columns does not "
                             f"tile {self.columns} columns")
        images = np.full((columns_per_word, self.code_depth), self.pad_code, dtype=np.uint8)
        group = self.code_images[first_column:first_column + columns_per_word]
        images[:len(group)] = group
        if self.bits is None:
            shifts = np.arange(columns_per_word, dtype=np.uint64) * np.uint64(8)
            return np.bitwise_or.reduce(images.T.astype(np.uint64) << shifts, axis=1)
        return pack_codes(images.T.reshape(-1), self.bits, self.bits * columns_per_word)

    def bias_words(self, column, width):
        """Column `column`'s biases as `width`-bit two's-complement words (Python ints)."""
        mask = (1 << width) - 1
        return [int(b) & mask for b in self.bias_images[column]]
