"""golden.tokens: tokenizers beside a checkpoint, .bin/.txt token files, and where calibration comes from.

The Hugging Face tokenizers here are real byte-level BPEs trained with Hugging Face's `tokenizers` on tiny
Shakespeare; the checkpoints are random GPT-2s of their vocabulary, with no token splits beside them (as a
downloaded checkpoint)."""

import json

import numpy as np
import pytest

from golden.data import DataError, Vocab
from golden.paths import SHAKESPEARE_TEXT
from golden.tokens import HFTokenizer, calibration_tokens, load_tokenizer, read_token_file
from tiny_checkpoints import train_bpe_tokenizer, write_bpe_checkpoint, write_tiny_checkpoint

pytest.importorskip("tokenizers", reason="needs tokenizers: pip install 'potgen[tokenizers]'")

TEXT = SHAKESPEARE_TEXT.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bpe():
    return train_bpe_tokenizer(500)


@pytest.fixture(scope="module", params=["tokenizer.json", "vocab+merges"])
def bpe_checkpoint(request, bpe, tmp_path_factory):
    return write_bpe_checkpoint(tmp_path_factory.mktemp("bpe") / "model", bpe, form=request.param, n_positions=64)


@pytest.fixture
def texts(tmp_path):
    """Val and calibration text as UTF-8 .txt files, as a user has them."""
    (tmp_path / "val.txt").write_text(TEXT[-6000:], encoding="utf-8")
    (tmp_path / "calib.txt").write_text(TEXT[:20000], encoding="utf-8")
    return tmp_path


# -- tokenizers ------------------------------------------------------------------------

def test_bpe_encodes_as_transformers_gpt2_tokenizer(bpe_checkpoint):
    """GPT-2's own tokenizer class, reading the same files, gives the same ids and the same text back."""
    transformers = pytest.importorskip("transformers")
    tokenizer = load_tokenizer(bpe_checkpoint, 500)
    assert isinstance(tokenizer, HFTokenizer) and tokenizer.size == 500
    text = TEXT[:3000] + " héllo wörld 🙂\n\n  x"
    ids = tokenizer.encode(text)
    assert ids.dtype == np.uint16 and len(ids) < 0.7 * len(text)           # a BPE, not characters
    assert tokenizer.decode(ids) == text
    if (bpe_checkpoint / "merges.txt").is_file():
        reference = transformers.GPT2TokenizerFast.from_pretrained(bpe_checkpoint)
    else:
        reference = transformers.PreTrainedTokenizerFast(tokenizer_file=str(bpe_checkpoint / "tokenizer.json"))
    assert ids.tolist() == reference.encode(text)


def test_character_vocab_is_the_projects(tiny_checkpoint):
    tokenizer = load_tokenizer(tiny_checkpoint, 23)
    assert isinstance(tokenizer, Vocab) and tokenizer.decode(tokenizer.encode("abcw")) == "abcw"


def test_no_tokenizer_is_none(tmp_path):
    write_tiny_checkpoint(tmp_path)
    (tmp_path / "vocab.json").unlink()
    assert load_tokenizer(tmp_path, 23) is None


@pytest.mark.parametrize("size", [499, 501, 1000])
def test_tokenizer_of_another_vocabulary_is_refused(bpe, tmp_path, size):
    write_bpe_checkpoint(tmp_path, bpe)
    with pytest.raises(DataError, match=rf"tokenizer\.json has 500 tokens but the checkpoint's vocabulary has {size}"):
        load_tokenizer(tmp_path, size)


def test_gpt2_vocabulary_padded_like_nanogpt_is_accepted(bpe, tmp_path):
    write_bpe_checkpoint(tmp_path, bpe)
    assert load_tokenizer(tmp_path, 512).size == 500                  # 500 padded to a multiple of 64


def test_bpe_vocab_without_merges_is_refused(bpe, tmp_path):
    write_bpe_checkpoint(tmp_path, bpe, form="vocab+merges")
    (tmp_path / "merges.txt").unlink()
    with pytest.raises(DataError, match=r"BPE vocabulary but .*merges\.txt is missing"):
        load_tokenizer(tmp_path, 500)


# -- token files -----------------------------------------------------------------------

def test_text_file_is_encoded_with_the_checkpoints_tokenizer(bpe_checkpoint, texts):
    ids = read_token_file(texts / "val.txt", bpe_checkpoint, 500)
    assert ids.tolist() == load_tokenizer(bpe_checkpoint).encode(TEXT[-6000:]).tolist()


def test_text_outside_a_character_vocabulary_is_refused(tiny_checkpoint, tmp_path):
    (tmp_path / "bad.txt").write_text("abcdXYZ", encoding="utf-8")
    with pytest.raises(DataError, match=r"bad\.txt: Character 'X' at position 4 is not in the vocabulary"):
        read_token_file(tmp_path / "bad.txt", tiny_checkpoint, 23)


@pytest.mark.parametrize("name, content, message", [
    ("wiki.test.raw", b"abcd1", r"Character '1' at position 4 is not in the vocabulary"),
    ("val.txt", b"\xff\xfe", r"is not UTF-8"),
    ("val.bin", b"\x01", r"odd length"),
    ("val.txt", b"", r"holds no tokens"),
    ("missing.txt", None, r"does not exist"),
])
def test_bad_token_files(tiny_checkpoint, tmp_path, name, content, message):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(DataError, match=message):
        read_token_file(tmp_path / name, tiny_checkpoint, 23)


def test_text_without_a_tokenizer_is_refused(tmp_path):
    write_tiny_checkpoint(tmp_path / "model")
    (tmp_path / "model" / "vocab.json").unlink()
    (tmp_path / "a.txt").write_text("abc")
    with pytest.raises(DataError, match=r"is text, but the checkpoint .* has no tokenizer"):
        read_token_file(tmp_path / "a.txt", tmp_path / "model", 23)


# -- calibration -------------------------------------------------------------------------

def test_calibration_order(tmp_path):
    model = write_tiny_checkpoint(tmp_path / "model")
    train, val = (np.fromfile(model / name, np.uint16) for name in ("train.bin", "val.bin"))
    (tmp_path / "given.bin").write_bytes(val[:50].tobytes())
    assert calibration_tokens(model, 23, calib=tmp_path / "given.bin").origin == "--calib"
    source = calibration_tokens(model, 23, data=tmp_path / "given.bin")
    assert source.origin == "the checkpoint's train.bin" and np.array_equal(source.tokens, train)
    (model / "train.bin").unlink()
    assert calibration_tokens(model, 23, data=tmp_path / "given.bin").origin == "the checkpoint's val.bin"
    (model / "val.bin").unlink()
    source = calibration_tokens(model, 23, data=tmp_path / "given.bin")
    assert source.describe() == {"origin": "--data", "path": str(tmp_path / "given.bin"), "tokens": 50}
    with pytest.raises(DataError, match=r"No calibration text: give --calib FILE"):
        calibration_tokens(model, 23)


# -- the commands on a downloaded-like checkpoint ------------------------------------------

def test_eval_on_a_bpe_checkpoint_with_text_files(bpe_checkpoint, texts, cli):
    """The issue's first complaint: --data given, nothing beside the checkpoint; calibration comes from --data,
    then from --calib, and the JSON says which."""
    from golden.eval import main
    common = ["--checkpoint", str(bpe_checkpoint), "--data", str(texts / "val.txt"), "--bits", "4", "--methods",
              "pot-channel", "--act-bits", "8", "--calib-tokens", "256", "--max-tokens", "512", "--quiet"]
    status, out, err = cli(main, [*common, "--json", str(texts / "a.json")])
    assert status == 0, err
    result = json.loads((texts / "a.json").read_text())
    assert result["calibration"] == {"origin": "--data", "path": str(texts / "val.txt"), "tokens": 256}
    assert result["tokens"] == 512 and 4 < result["float"]["ce"] < 8          # random weights, 500 tokens
    status, _, err = cli(main, [*common, "--calib", str(texts / "calib.txt"), "--json",
                                         str(texts / "b.json")])
    assert status == 0, err
    calibration = json.loads((texts / "b.json").read_text())["calibration"]
    assert calibration["origin"] == "--calib" and calibration["path"].endswith("calib.txt")


def test_export_without_calibration_names_calib(bpe_checkpoint, texts, cli):
    from golden.export import main
    out = texts / "roms"
    status, _, err = cli(main, ["--checkpoint", str(bpe_checkpoint), "--out", str(out), "--quiet"])
    assert status == 2 and err.count("\n") == 1 and "give --calib FILE" in err and not out.exists()
    status, stdout, err = cli(main, ["--checkpoint", str(bpe_checkpoint), "--calib", str(texts / "calib.txt"),
                                                "--out", str(out), "--quiet"])
    assert status == 0, err
    assert (out / "manifest.json").is_file() and "in fp32" in stdout and "in int8" in stdout


def test_commands_refuse_a_mismatched_tokenizer(bpe, texts, cli):
    """A tokenizer of another vocabulary size: one line, status 2, nothing written."""
    from golden.eval import main
    write_tiny_checkpoint(texts / "other", vocab_size=280)
    for name in ("vocab.json", "train.bin", "val.bin"):
        (texts / "other" / name).unlink()
    bpe.save(str(texts / "other" / "tokenizer.json"))
    status, _, err = cli(main, ["--checkpoint", str(texts / "other"), "--data", str(texts / "val.txt"),
                                         "--json", str(texts / "x.json"), "--quiet"])
    assert status == 2 and err.count("\n") == 1
    assert "has 500 tokens but the checkpoint's vocabulary has 280" in err and not (texts / "x.json").exists()


def test_eval_of_text_outside_the_character_vocabulary(tiny_checkpoint, tmp_path, cli):
    from golden.eval import main
    (tmp_path / "val.txt").write_text("abc\nQ", encoding="utf-8")
    status, _, err = cli(main, ["--checkpoint", str(tiny_checkpoint), "--data", str(tmp_path / "val.txt"),
                                         "--json", str(tmp_path / "x.json"), "--quiet"])
    assert status == 2 and err.count("\n") == 1
    assert "Character '\\n' at position 3" in err and not (tmp_path / "x.json").exists()


def test_generate_prints_decoded_bpe_text(bpe_checkpoint, texts, cli):
    """boards.generate on a BPE checkpoint prints the prompt and the text of the greedy continuation, which is
    what repeated whole-sequence argmax steps of the integer model decode to."""
    from boards.generate import main
    from golden.model_loading import load_integer_model
    argv = ["--checkpoint", str(bpe_checkpoint), "--calib", str(texts / "calib.txt"), "--prompt", "ROMEO: my lord",
            "--tokens", "12", "--temperature", "0"]
    status, out, err = cli(main, argv)
    assert status == 0, err
    tokenizer = load_tokenizer(bpe_checkpoint, 500)
    integer = load_integer_model(bpe_checkpoint, calib=texts / "calib.txt")
    ids = [int(i) for i in tokenizer.encode("ROMEO: my lord")]
    for _ in range(12):
        ids.append(int(np.argmax(integer.forward(np.array(ids))[-1])))
    assert out == "ROMEO: my lord" + tokenizer.decode(ids[-12:]) + "\n"
