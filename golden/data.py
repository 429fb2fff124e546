"""The character vocabulary and the token files of the default model.

Follows nanoGPT's ``data/shakespeare_char/prepare.py``: the vocabulary is the
sorted set of the corpus's characters, the first 90% of the corpus is the train
split and the last 10% the val split, and each split is a flat file of uint16
token ids (native byte order, little-endian on every machine we build on). The
vocabulary lives beside the checkpoint as ``vocab.json`` = ``{"itos": [...]}``.

numpy only: the gateware flow imports this without torch.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "DataError",
    "Vocab",
    "VOCAB_FILE",
    "TRAIN_FILE",
    "VAL_FILE",
    "TRAIN_FRACTION",
    "load_vocab",
    "save_vocab",
    "read_tokens",
    "write_tokens",
    "read_text",
    "prepare_char_dataset",
    "default_split",
]

#: File names inside a checkpoint / dataset directory.
VOCAB_FILE = "vocab.json"
TRAIN_FILE = "train.bin"
VAL_FILE = "val.bin"
SPLIT_FILES = {"train": TRAIN_FILE, "val": VAL_FILE}

#: Share of the corpus (from the start) that is the train split.
TRAIN_FRACTION = 0.9

#: Token files are uint16, so ids must fit in 16 bits.
TOKEN_DTYPE = np.dtype("<u2")
MAX_TOKEN_ID = int(np.iinfo(np.uint16).max)


class DataError(ValueError):
    """A vocabulary or token file is malformed, or text is outside the vocabulary.

    The message is one line naming the bad value and what is allowed.
    """


@dataclass(frozen=True)
class Vocab:
    """A character vocabulary: token id ``i`` is the character ``itos[i]``.

    Parameters
    ----------
    itos : tuple of str
        One single character per id, no duplicates.

    Raises
    ------
    DataError
        If an entry is not a single character, is repeated, or there are more
        than 65536 entries (ids must fit in uint16).
    """

    itos: tuple[str, ...]

    def __post_init__(self):
        itos = tuple(self.itos)
        object.__setattr__(self, "itos", itos)
        if not itos:
            raise DataError("Vocabulary must have at least one character, not 0")
        if len(itos) > MAX_TOKEN_ID + 1:
            raise DataError(f"Vocabulary size must be at most {MAX_TOKEN_ID + 1}, not {len(itos)}")
        for i, ch in enumerate(itos):
            if not isinstance(ch, str) or len(ch) != 1:
                raise DataError(f"Vocabulary entry {i} must be a single character, not {ch!r}")
        stoi = {}
        for i, ch in enumerate(itos):
            if ch in stoi:
                raise DataError(f"Vocabulary entry {i} repeats {ch!r} (entry {stoi[ch]}); entries must be unique")
            stoi[ch] = i
        object.__setattr__(self, "_stoi", stoi)

    @property
    def size(self) -> int:
        """Number of tokens (the model's ``vocab_size``)."""
        return len(self.itos)

    def encode(self, text: str) -> np.ndarray:
        """Token ids of ``text`` as a uint16 array.

        Raises
        ------
        DataError
            If a character of ``text`` is not in the vocabulary; the message
            names the character and its position.
        """
        stoi = self._stoi
        try:
            ids = [stoi[ch] for ch in text]
        except KeyError as e:
            ch = e.args[0]
            pos = text.index(ch)
            raise DataError(
                f"Character {ch!r} at position {pos} is not in the vocabulary of {self.size} characters"
            ) from None
        return np.array(ids, dtype=np.uint16)

    def decode(self, ids) -> str:
        """Text of the token ids ``ids``.

        Raises
        ------
        DataError
            If an id is negative or not below :attr:`size`.
        """
        ids = np.asarray(ids).reshape(-1)
        if ids.size and not np.issubdtype(ids.dtype, np.integer):
            raise DataError(f"Token ids must be integers, not {ids.dtype}")
        bad = np.flatnonzero((ids < 0) | (ids >= self.size))
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"Token id {int(ids[i])} at index {i} is outside the vocabulary, ids must be in 0..{self.size - 1}"
            )
        return "".join(self.itos[i] for i in ids.tolist())

    @classmethod
    def from_text(cls, text: str) -> "Vocab":
        """The vocabulary of ``text``: its sorted set of characters (as nanoGPT)."""
        if not text:
            raise DataError("Cannot build a vocabulary from empty text")
        return cls(tuple(sorted(set(text))))


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def load_vocab(path) -> Vocab:
    """Read a vocabulary from ``vocab.json``, or from a checkpoint directory holding it.

    Raises
    ------
    DataError
        If the file is missing, is not JSON, or has no ``"itos"`` list of characters.
    """
    path = Path(path)
    if path.is_dir():
        path = path / VOCAB_FILE
    if not path.is_file():
        raise DataError(f"Vocabulary file {str(path)!r} does not exist")
    try:
        obj = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise DataError(f"Vocabulary file {str(path)!r} is not valid JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("itos"), list):
        raise DataError(f'Vocabulary file {str(path)!r} must hold {{"itos": [...]}}, not {type(obj).__name__}'
                        + (f" with keys {sorted(obj)}" if isinstance(obj, dict) else ""))
    return Vocab(tuple(obj["itos"]))


def save_vocab(vocab: Vocab, path) -> Path:
    """Write ``vocab`` as ``{"itos": [...]}`` to ``path`` (a file, or a directory to hold ``vocab.json``).

    Atomic: readers see the old file or the new one, never a partial one.
    """
    path = Path(path)
    if path.is_dir():
        path = path / VOCAB_FILE
    text = json.dumps({"itos": list(vocab.itos)}, ensure_ascii=True)
    _atomic_write(path, (text + "\n").encode("ascii"))
    return path


def read_tokens(path, vocab_size: int | None = None) -> np.ndarray:
    """Read a uint16 token file (nanoGPT's ``.bin``) into a uint16 array.

    Parameters
    ----------
    path : path-like
        The ``.bin`` file.
    vocab_size : int, optional
        If given, every id must be below it.

    Raises
    ------
    DataError
        If the file is missing, empty, has an odd number of bytes, or holds an
        id ``>= vocab_size`` (the message names the id, its index and the size).
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Token file {str(path)!r} does not exist")
    nbytes = path.stat().st_size
    if nbytes == 0:
        raise DataError(f"Token file {str(path)!r} is empty, it must hold at least one uint16 token")
    if nbytes % TOKEN_DTYPE.itemsize:
        raise DataError(
            f"Token file {str(path)!r} has {nbytes} bytes, an odd length; uint16 token files have an even length"
        )
    tokens = np.fromfile(path, dtype=TOKEN_DTYPE).astype(np.uint16, copy=False)
    if vocab_size is not None:
        if isinstance(vocab_size, bool) or not isinstance(vocab_size, (int, np.integer)) or vocab_size < 1:
            raise DataError(f"Vocabulary size must be a positive integer, not {vocab_size!r}")
        bad = np.flatnonzero(tokens >= vocab_size)
        if bad.size:
            i = int(bad[0])
            raise DataError(
                f"Token file {str(path)!r} holds id {int(tokens[i])} at index {i}, "
                f"but the vocabulary size is {int(vocab_size)} (ids 0..{int(vocab_size) - 1})"
            )
    return tokens


def write_tokens(path, tokens) -> Path:
    """Write token ids as a uint16 ``.bin`` file, atomically.

    Raises
    ------
    DataError
        If an id is negative, above 65535, or not an integer.
    """
    tokens = np.asarray(tokens).reshape(-1)
    if tokens.size:
        if not np.issubdtype(tokens.dtype, np.integer):
            raise DataError(f"Token ids must be integers, not {tokens.dtype}")
        bad = np.flatnonzero((tokens < 0) | (tokens > MAX_TOKEN_ID))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"Token id {int(tokens[i])} at index {i} does not fit in uint16 (0..{MAX_TOKEN_ID})")
    path = Path(path)
    _atomic_write(path, tokens.astype(TOKEN_DTYPE).tobytes())
    return path


def read_text(path) -> str:
    """The contents of the UTF-8 text file `path`.

    Raises
    ------
    DataError
        If the file is missing or not UTF-8.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"Text file {str(path)!r} does not exist")
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise DataError(f"Text file {str(path)!r} is not UTF-8: {e}") from None


def prepare_char_dataset(text_path, out_dir) -> Vocab:
    """Write ``vocab.json``, ``train.bin`` (first 90%) and ``val.bin`` (last 10%) of a text file.

    Exactly nanoGPT's shakespeare_char split: ``n = len(data)``,
    train = ``data[:int(n*0.9)]``, val = ``data[int(n*0.9):]``.

    Raises
    ------
    DataError
        If the text file is missing, not UTF-8, or too short to give both
        splits at least one character.
    """
    text_path = Path(text_path)
    text = read_text(text_path)
    n = len(text)
    cut = int(n * TRAIN_FRACTION)
    if cut < 1 or cut >= n:
        raise DataError(
            f"Text file {str(text_path)!r} has {n} characters, too few to split 90/10 (need at least 2)"
        )
    vocab = Vocab.from_text(text)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids = vocab.encode(text)
    write_tokens(out_dir / TRAIN_FILE, ids[:cut])
    write_tokens(out_dir / VAL_FILE, ids[cut:])
    save_vocab(vocab, out_dir / VOCAB_FILE)
    return vocab


def default_split(checkpoint_dir, split: str) -> Path | None:
    """``checkpoint_dir/train.bin`` or ``checkpoint_dir/val.bin`` if it exists, else None.

    Raises
    ------
    DataError
        If ``split`` is not ``"train"`` or ``"val"``.
    """
    if split not in SPLIT_FILES:
        raise DataError(f"Split must be one of {sorted(SPLIT_FILES)}, not {split!r}")
    path = Path(checkpoint_dir) / SPLIT_FILES[split]
    return path if path.is_file() else None
