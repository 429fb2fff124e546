"""Text and token files for any checkpoint: its tokenizer, ``--data``/``--calib`` files, calibration.

Every command that reads text for a checkpoint goes through this module, so
they agree on three things:

- **The tokenizer** beside a checkpoint (`load_tokenizer`): the project's
  character ``vocab.json`` (``{"itos": [...]}``, `golden.data.Vocab`), or
  Hugging Face tokenizer files -- ``tokenizer.json``, or GPT-2's ``vocab.json``
  + ``merges.txt`` -- read by Hugging Face's own ``tokenizers`` package (an
  optional dependency: ``pip install 'potgen[tokenizers]'``, imported only
  when such files are read). Its size must be the checkpoint's vocabulary
  size (or that size padded up to a multiple of 64, as nanoGPT pads GPT-2's
  50,257 to 50,304).
- **A token file** (`read_token_file`): a uint16 ``.bin`` (nanoGPT's format),
  or UTF-8 text (``.txt``, or any name but ``.bin``) encoded with the checkpoint's own tokenizer.
- **Where calibration text comes from** (`calibration_tokens`): ``--calib``,
  else the checkpoint's ``train.bin``, else its ``val.bin``, else the text the
  command was given (``--data``); with none of these, one line naming ``--calib``.

numpy only (plus ``tokenizers`` for Hugging Face files): the gateware flow imports it without torch.
"""

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import MAX_TOKEN_ID, VOCAB_FILE, DataError, default_split, load_vocab, read_text, read_tokens
from .paths import DEFAULT_MODEL_DIR

__all__ = ["HF_TOKENIZER_FILE", "MERGES_FILE", "TOKEN_SUFFIXES", "HFTokenizer", "TokenSource",
           "load_tokenizer", "read_token_file", "encode_text_file", "calibration_tokens", "add_calib_arguments", "checkpoint_dir"]

HF_TOKENIZER_FILE = "tokenizer.json"
MERGES_FILE = "merges.txt"
TOKEN_SUFFIXES = (".bin",)
_INSTALL_HINT = "pip install 'potgen[tokenizers]' (Hugging Face's tokenizers package)"


def checkpoint_dir(checkpoint):
    """The folder a checkpoint's tokenizer and token splits sit in (the checkpoint, or a ckpt.pt's folder).

    None is the default model."""
    path = Path(checkpoint or DEFAULT_MODEL_DIR)
    return path if path.is_dir() else path.parent


# -- tokenizers ------------------------------------------------------------------------

class HFTokenizer:
    """A Hugging Face tokenizer (``tokenizers.Tokenizer``) with `golden.data.Vocab`'s interface.

    Parameters
    ----------
    tokenizer : tokenizers.Tokenizer
    source : str
        The file(s) it was read from, for messages.
    """

    def __init__(self, tokenizer, source):
        self._tokenizer = tokenizer
        self._source = source

    def __repr__(self):
        return f"HFTokenizer({self._source!r}, size={self.size})"

    @property
    def source(self):
        """The file(s) the tokenizer was read from."""
        return self._source

    @property
    def size(self):
        """Number of token ids, added (special) tokens included."""
        return self._tokenizer.get_vocab_size(with_added_tokens=True)

    def encode(self, text):
        """Token ids of ``text`` as a uint16 array (no special tokens added)."""
        return np.array(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.uint16)

    def decode(self, ids):
        """Text of the token ids ``ids``.

        Raises
        ------
        DataError
            If an id is negative or not below :attr:`size`.
        """
        ids = np.asarray(ids).reshape(-1)
        bad = np.flatnonzero((ids < 0) | (ids >= self.size))
        if bad.size:
            i = int(bad[0])
            raise DataError(f"Token id {int(ids[i])} at index {i} is outside the tokenizer {self._source}, "
                            f"ids must be in 0..{self.size - 1}")
        return self._tokenizer.decode([int(i) for i in ids], skip_special_tokens=False)


def _tokenizers(path):
    try:
        import tokenizers
    except ImportError:
        raise DataError(f"Reading {path} needs {_INSTALL_HINT}") from None
    return tokenizers


def _read_hf_tokenizer(folder):
    """The Hugging Face tokenizer in `folder`, or None if it holds no tokenizer.json or vocab.json + merges.txt."""
    if (folder / HF_TOKENIZER_FILE).is_file():
        path = folder / HF_TOKENIZER_FILE
        try:
            return HFTokenizer(_tokenizers(path).Tokenizer.from_file(str(path)), str(path))
        except DataError:
            raise
        except Exception as error:  # tokenizers raises its own Exception for malformed files
            raise DataError(f"{path} is not a tokenizer.json tokenizers can read ({str(error).splitlines()[0]})") \
                from None
    vocab, merges = folder / VOCAB_FILE, folder / MERGES_FILE
    if vocab.is_file() and merges.is_file():
        tokenizers = _tokenizers(vocab)
        try:    # GPT-2's own: byte-level BPE, no prefix space (what transformers' GPT2Tokenizer does)
            bpe = tokenizers.implementations.ByteLevelBPETokenizer(str(vocab), str(merges))
        except Exception as error:
            raise DataError(f"{vocab} + {merges} are not a GPT-2 BPE tokenizers can read "
                            f"({str(error).splitlines()[0]})") from None
        return HFTokenizer(bpe, f"{vocab} + {MERGES_FILE}")
    return None


def load_tokenizer(checkpoint, vocab_size=None):
    """The tokenizer beside `checkpoint`: a `golden.data.Vocab` or an `HFTokenizer`; None if there is none.

    ``tokenizer.json`` comes first, then GPT-2's ``vocab.json`` + ``merges.txt``,
    then the project's character ``vocab.json``.

    Raises
    ------
    DataError
        A tokenizer file is malformed, needs the absent ``tokenizers`` package,
        or has a size other than `vocab_size` (the checkpoint's).
    """
    folder = checkpoint_dir(checkpoint)
    tokenizer = _read_hf_tokenizer(folder)
    if tokenizer is None and (folder / VOCAB_FILE).is_file():
        obj = _json_or_none(folder / VOCAB_FILE)
        if isinstance(obj, dict) and "itos" not in obj:
            raise DataError(f"{folder / VOCAB_FILE} is a BPE vocabulary but {folder / MERGES_FILE} is missing; "
                            f"a character vocabulary holds {{\"itos\": [...]}}")
        tokenizer = load_vocab(folder / VOCAB_FILE)
    if tokenizer is not None and vocab_size is not None and not _sizes_match(tokenizer.size, vocab_size):
        where = tokenizer.source if isinstance(tokenizer, HFTokenizer) else str(folder / VOCAB_FILE)
        raise DataError(f"The tokenizer {where} has {tokenizer.size} tokens but the checkpoint's vocabulary "
                        f"has {vocab_size}; they must match")
    if tokenizer is not None and tokenizer.size > MAX_TOKEN_ID + 1:
        raise DataError(f"The tokenizer has {tokenizer.size} tokens; uint16 token files hold at most {MAX_TOKEN_ID + 1}")
    return tokenizer


def _json_or_none(path):
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None


def _sizes_match(tokenizer_size, vocab_size):
    """Equal, or the model's vocabulary is the tokenizer's padded to the next multiple of 64 (nanoGPT's GPT-2)."""
    return tokenizer_size == vocab_size or (tokenizer_size < vocab_size == -(-tokenizer_size // 64) * 64)


# -- token files -----------------------------------------------------------------------

def read_token_file(path, checkpoint, vocab_size, tokenizer=None):
    """Token ids of `path`: a uint16 ``.bin``, or UTF-8 text (``.txt``, or any other name: WikiText's
    ``wiki.test.raw``) encoded with the checkpoint's tokenizer.

    `tokenizer`, if given, is used instead of loading the one beside `checkpoint`.

    Raises
    ------
    DataError
        The file is missing, of another kind, not UTF-8, empty, holds an id
        ``>= vocab_size`` or a character the tokenizer does not have; or it is
        text and the checkpoint has no tokenizer.
    """
    path = Path(path)
    if path.suffix in TOKEN_SUFFIXES:
        return read_tokens(path, vocab_size=vocab_size)
    return encode_text_file(path, checkpoint, vocab_size, tokenizer)


def encode_text_file(path, checkpoint, vocab_size, tokenizer=None):
    """Token ids of the UTF-8 text file `path` (any name), encoded with the checkpoint's tokenizer.

    Raises
    ------
    DataError
        As `read_token_file` for text.
    """
    path = Path(path)
    text = read_text(path)
    tokenizer = tokenizer or load_tokenizer(checkpoint, vocab_size)
    if tokenizer is None:
        raise DataError(f"{path} is text, but the checkpoint {checkpoint} has no tokenizer beside it "
                        f"(vocab.json, tokenizer.json, or vocab.json + merges.txt); give a uint16 .bin token file")
    try:
        ids = tokenizer.encode(text)
    except DataError as error:
        raise DataError(f"{path}: {error}") from None
    if ids.size == 0:
        raise DataError(f"Text file {str(path)!r} holds no tokens")
    return ids


@dataclass(frozen=True)
class TokenSource:
    """Token ids and where they came from (``"--calib"``, ``"train.bin"``, ...), for reports and JSON."""

    tokens: np.ndarray
    origin: str
    path: str

    def describe(self):
        """JSON-ready ``{"origin": ..., "path": ..., "tokens": n}``."""
        return {"origin": self.origin, "path": self.path, "tokens": int(self.tokens.size)}


def calibration_tokens(checkpoint, vocab_size, calib=None, data=None, data_option="--data"):
    """The calibration text of a command as a `TokenSource`.

    In order: `calib` (``--calib``); the checkpoint's ``train.bin``; its
    ``val.bin``; `data`, the text the command was given under `data_option`.

    Raises
    ------
    DataError
        None of them exists (one line naming ``--calib``), or the file chosen is bad.
    """
    if calib is not None:
        return TokenSource(read_token_file(calib, checkpoint, vocab_size), "--calib", str(calib))
    folder = checkpoint_dir(checkpoint)
    for split in ("train", "val"):
        path = default_split(folder, split)
        if path is not None:
            return TokenSource(read_tokens(path, vocab_size=vocab_size), f"the checkpoint's {path.name}", str(path))
    if data is not None:
        return TokenSource(read_token_file(data, checkpoint, vocab_size), data_option, str(data))
    raise DataError(f"No calibration text: give --calib FILE (a uint16 .bin token file or a UTF-8 .txt); "
                    f"the checkpoint {checkpoint} has no train.bin or val.bin beside it")


def add_calib_arguments(parser, tokens_default=None):
    """Add ``--calib FILE`` (and ``--calib-tokens N`` when `tokens_default` is given) to an argparse parser."""
    parser.add_argument("--calib", metavar="FILE",
                        help="calibration text of the activation scales (and of gptq): a uint16 .bin token file or "
                             "UTF-8 text (.txt or any name but .bin) encoded with the checkpoint's tokenizer (default: the checkpoint's "
                             "train.bin, else its val.bin)")
    if tokens_default is not None:
        parser.add_argument("--calib-tokens", metavar="N", type=int, default=tokens_default,
                            help="calibration tokens")

