import json

import numpy as np
import pytest

from golden.data import (
    DataError,
    Vocab,
    default_split,
    load_vocab,
    prepare_char_dataset,
    read_tokens,
    save_vocab,
    write_tokens,
)
from golden.paths import DEFAULT_MODEL_DIR, SHAKESPEARE_TEXT

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n"


def test_vocab_from_text_is_sorted_set():
    vocab = Vocab.from_text(TEXT)
    assert vocab.itos == tuple(sorted(set(TEXT)))
    assert vocab.size == len(set(TEXT))
    assert vocab.itos[0] == "\n"


def test_encode_decode_round_trip():
    vocab = Vocab.from_text(TEXT)
    ids = vocab.encode(TEXT)
    assert ids.dtype == np.uint16
    assert ids.shape == (len(TEXT),)
    assert [vocab.itos[i] for i in ids] == list(TEXT)
    assert vocab.decode(ids) == TEXT
    assert vocab.decode(ids.tolist()) == TEXT
    assert vocab.encode("").shape == (0,)


def test_encode_unknown_char():
    vocab = Vocab.from_text("abc")
    with pytest.raises(DataError, match=r"'z' at position 4"):
        vocab.encode("abcaz")
    with pytest.raises(DataError, match=r"'\\t' at position 1"):
        vocab.encode("a\tb")


def test_decode_out_of_range():
    vocab = Vocab.from_text("abc")
    with pytest.raises(DataError, match=r"Token id 3 at index 1 .* 0\.\.2"):
        vocab.decode([0, 3])


@pytest.mark.parametrize("itos, match", [
    (("a", "a"), r"repeats 'a'"),
    (("a", "bc"), r"single character, not 'bc'"),
    ((), r"at least one"),
])
def test_vocab_wrong(itos, match):
    with pytest.raises(DataError, match=match):
        Vocab(itos)


def test_vocab_save_load(tmp_path):
    vocab = Vocab.from_text(TEXT)
    path = save_vocab(vocab, tmp_path)
    assert path == tmp_path / "vocab.json"
    assert json.loads(path.read_text()) == {"itos": list(vocab.itos)}
    assert load_vocab(tmp_path) == vocab
    assert load_vocab(path) == vocab
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]  # no temporary left behind


@pytest.mark.parametrize("content, match", [
    ('{"stoi": {}}', r"itos"),
    ("not json", r"not valid JSON"),
])
def test_load_vocab_wrong(tmp_path, content, match):
    (tmp_path / "vocab.json").write_text(content)
    with pytest.raises(DataError, match=match):
        load_vocab(tmp_path)


def test_load_vocab_missing(tmp_path):
    with pytest.raises(DataError, match=r"does not exist"):
        load_vocab(tmp_path)


def test_tokens_round_trip(tmp_path):
    tokens = np.array([0, 1, 64, 65535, 7], dtype=np.int64)
    path = write_tokens(tmp_path / "t.bin", tokens)
    assert path.stat().st_size == 2 * len(tokens)
    assert path.read_bytes()[:2] == b"\x00\x00" and path.read_bytes()[4:6] == b"\x40\x00"  # little-endian
    back = read_tokens(path)
    assert back.dtype == np.uint16
    np.testing.assert_array_equal(back, tokens)
    assert [p.name for p in tmp_path.iterdir()] == ["t.bin"]


def test_write_tokens_too_big(tmp_path):
    with pytest.raises(DataError, match=r"Token id 65536 at index 2"):
        write_tokens(tmp_path / "t.bin", [1, 2, 65536])
    with pytest.raises(DataError, match=r"Token id -1 at index 0"):
        write_tokens(tmp_path / "t.bin", [-1])
    assert not (tmp_path / "t.bin").exists()


def test_read_tokens_odd_length(tmp_path):
    path = tmp_path / "odd.bin"
    path.write_bytes(b"\x01\x00\x02")
    with pytest.raises(DataError, match=r"has 3 bytes, an odd length"):
        read_tokens(path)


def test_read_tokens_empty(tmp_path):
    path = tmp_path / "empty.bin"
    path.write_bytes(b"")
    with pytest.raises(DataError, match=r"empty"):
        read_tokens(path)


def test_read_tokens_missing(tmp_path):
    with pytest.raises(DataError, match=r"does not exist"):
        read_tokens(tmp_path / "nope.bin")


def test_read_tokens_id_too_big(tmp_path):
    path = write_tokens(tmp_path / "t.bin", [3, 64, 65, 2])
    np.testing.assert_array_equal(read_tokens(path, vocab_size=66), [3, 64, 65, 2])
    with pytest.raises(DataError, match=r"id 65 at index 2, but the vocabulary size is 65"):
        read_tokens(path, vocab_size=65)


def test_prepare_char_dataset_split(tmp_path):
    text = "".join(chr(ord("a") + i % 7) for i in range(1237)) + "\nZ!"
    src = tmp_path / "corpus.txt"
    src.write_text(text, encoding="utf-8")
    vocab = prepare_char_dataset(src, tmp_path / "out")
    n = len(text)
    cut = int(n * 0.9)
    assert (n, cut) == (1240, 1116)
    assert vocab == Vocab.from_text(text)
    assert load_vocab(tmp_path / "out") == vocab
    train = read_tokens(tmp_path / "out" / "train.bin", vocab.size)
    val = read_tokens(tmp_path / "out" / "val.bin", vocab.size)
    assert vocab.decode(train) == text[:cut]
    assert vocab.decode(val) == text[cut:]
    assert default_split(tmp_path / "out", "train") == tmp_path / "out" / "train.bin"
    assert default_split(tmp_path / "out", "val") == tmp_path / "out" / "val.bin"


def test_prepare_char_dataset_wrong(tmp_path):
    with pytest.raises(DataError, match=r"does not exist"):
        prepare_char_dataset(tmp_path / "missing.txt", tmp_path / "out")
    (tmp_path / "short.txt").write_text("a")
    with pytest.raises(DataError, match=r"has 1 characters, too few"):
        prepare_char_dataset(tmp_path / "short.txt", tmp_path / "out")


def test_default_split(tmp_path):
    assert default_split(tmp_path, "train") is None
    assert default_split(tmp_path, "val") is None
    with pytest.raises(DataError, match=r"not 'test'"):
        default_split(tmp_path, "test")


def test_shakespeare_prepare(tmp_path):
    vocab = prepare_char_dataset(SHAKESPEARE_TEXT, tmp_path)
    assert vocab.size == 65
    assert vocab.itos[:2] == ("\n", " ")
    assert len(read_tokens(tmp_path / "train.bin", 65)) == 1003854
    assert len(read_tokens(tmp_path / "val.bin", 65)) == 111540


@pytest.mark.skipif(not (DEFAULT_MODEL_DIR / "vocab.json").is_file(),
                    reason="no shipped default model; make it with `python -m golden.train`")
def test_shipped_default_splits(tmp_path):
    prepare_char_dataset(SHAKESPEARE_TEXT, tmp_path)
    assert load_vocab(DEFAULT_MODEL_DIR) == load_vocab(tmp_path)
    assert load_vocab(DEFAULT_MODEL_DIR).size == 65
    for split, length in (("train", 1003854), ("val", 111540)):
        shipped = default_split(DEFAULT_MODEL_DIR, split)
        assert shipped is not None
        assert shipped.read_bytes() == (tmp_path / f"{split}.bin").read_bytes()
        assert len(read_tokens(shipped, 65)) == length
