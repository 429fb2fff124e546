"""The forward protocol's host side: identity, digest, the checks before anything is sent, the client on a port,
and boards.generate refusing bad input for the forward design before any build."""

import struct

import pytest

from boards import forward_sim
from boards.forward_protocol import (ForwardClient, ForwardIdentity, Command, check_generate, compiled_digest,
                                     encode_generate, inv_temperature, open_board)
from boards.generate import main
from boards.forward_protocol import CODES_LOADED, CODES_MISSING, LOADS_CODES
from boards.protocol import Identity, ProtocolError, encode_request
from golden.cli import UserError, run

IDENTITY = ForwardIdentity(vocab_size=23, context=8, n_layer=2, n_head=2, n_embd=16, clock_hz=36_000_000, divisor=12,
                           digest=bytes(range(8)))


@pytest.fixture(scope="module")
def compiled(tiny_checkpoint):
    from golden.compile import compile_checkpoint
    return compile_checkpoint(tiny_checkpoint)


class ScriptedPort:
    """A byte port whose reads come from `answer` and whose writes are kept."""

    def __init__(self, answer):
        self.answer, self.written = bytearray(answer), bytearray()

    def write(self, data):
        self.written += data

    def read(self, count):
        data, self.answer = bytes(self.answer[:count]), self.answer[count:]
        return data


def test_identity_round_trip():
    packed = IDENTITY.pack()
    assert len(packed) == ForwardIdentity.SIZE == 40 and packed[:5] == b"PoTg\x04"
    assert ForwardIdentity.unpack(packed) == IDENTITY and IDENTITY.design == "forward"
    assert IDENTITY.baud == 3_000_000
    loading = ForwardIdentity(**{**IDENTITY.__dict__, "rows": 4, "columns": 3, "code_words": 16384,
                                 "loads_codes": True})
    packed = loading.pack()
    assert packed[ForwardIdentity.FLAGS_OFFSET] == LOADS_CODES and ForwardIdentity.unpack(packed) == loading
    flagged = packed[:ForwardIdentity.FLAGS_OFFSET] + bytes([LOADS_CODES | CODES_LOADED]) + \
        packed[ForwardIdentity.FLAGS_OFFSET + 1:]
    assert ForwardIdentity.unpack(flagged).codes_loaded and not loading.mismatches(ForwardIdentity.unpack(flagged))
    missing = packed[:ForwardIdentity.FLAGS_OFFSET] + bytes([LOADS_CODES | CODES_MISSING]) + \
        packed[ForwardIdentity.FLAGS_OFFSET + 1:]
    assert ForwardIdentity.unpack(missing).codes_missing and not ForwardIdentity.unpack(missing).codes_loaded


@pytest.mark.parametrize("data, message", [
    (b"XoTg" + bytes(32), "Not a potgen device"),
    (Identity(rows=2, columns=16, bits=4, act_bits=8, acc_bits=23, columns_per_word=4, banks=4, bank_words=100,
              layers=17, max_tokens=2, clock_hz=36_000_000, divisor=12, digest=bytes(8)).pack(),
     "protocol version 1 .* build it with python -m hdl.build --design forward"),
    (IDENTITY.pack()[:-1], "A forward identity is 40 bytes, not 39"),
    (b"PoTg\x02" + bytes(31), "protocol version 2 .*before LOAD"),
    (b"PoTg\x03" + bytes(31), "protocol version 3 .*with LOAD 3"),
])
def test_identity_refused(data, message):
    with pytest.raises(ProtocolError, match=message):
        ForwardIdentity.unpack(data)


def test_digest_names_the_artefact(compiled, tiny_checkpoint, tmp_path):
    """The digest is the same for the model in memory and read back from its export; another model differs."""
    from golden.artefact import read_compiled, write_compiled
    from golden.compile import compile_checkpoint
    from tiny_checkpoints import write_tiny_checkpoint

    write_compiled(compiled, tmp_path / "c", checkpoint=tiny_checkpoint)
    assert compiled_digest(read_compiled(tmp_path / "c")[1]) == compiled_digest(compiled)
    other = compile_checkpoint(write_tiny_checkpoint(tmp_path / "other", seed=1))
    assert compiled_digest(other) != compiled_digest(compiled)
    identity = ForwardIdentity.of(compiled, context=16, clock_hz=36e6, divisor=4)
    assert (identity.vocab_size, identity.context, identity.n_layer, identity.n_embd) == (23, 16, 2, 16)


GOOD = dict(inv_temperature=256, top_k=None, seed=0, vocab_size=23, context=8)


@pytest.mark.parametrize("prompt, count, changes, message", [
    ([], 3, {}, "The prompt is empty"),
    (list(range(9)), 3, {}, "The prompt has 9 tokens; the board's context is 8"),
    ([1, 23], 3, {}, r"Token id 23 \(prompt position 1\) is outside the vocabulary: 0 to 22"),
    ([-1], 3, {}, "Token id -1"),
    ([1], -1, {}, "The token count must be a non-negative integer, not -1"),
    ([1], 3, {"top_k": 0}, "--top-k 0 is outside 1 to 23"),
    ([1], 3, {"top_k": 24}, "--top-k 24 is outside 1 to 23"),
    ([1], 3, {"inv_temperature": 65536}, "The inverse temperature 65536 is outside 0 to 65535"),
    ([1], 3, {"seed": 2 ** 32 - 1}, "--seed 4294967295 is outside 0 to 4294967294"),
])
def test_check_generate(prompt, count, changes, message):
    with pytest.raises(UserError, match=message):
        check_generate(prompt, count, **{**GOOD, **changes})


def test_check_generate_passes_a_full_context():
    assert check_generate(list(range(8)), 0, **GOOD) == list(range(8))


@pytest.mark.parametrize("temperature, value", [(0, 0), (1.0, 256), (0.8, 320), (512, 1), (256 / 65535, 65535)])
def test_inv_temperature(temperature, value):
    assert inv_temperature(temperature) == value


@pytest.mark.parametrize("temperature", [0.001, 1000, -1])
def test_inv_temperature_refused(temperature):
    with pytest.raises(UserError, match=f"--temperature {temperature} does not fit the integer sampler"):
        inv_temperature(temperature)


def test_client_generate():
    """The request on the wire, the count cut to the context, the tokens as they come."""
    port = ScriptedPort(b"\x00" + struct.pack("<H", 40) + IDENTITY.pack() + b"\x00\x06\x00" + struct.pack("<3H", 5, 22, 0))
    client = ForwardClient(port)
    assert list(client.generate([1, 2, 3, 4, 5], 100, inv_temperature=320, top_k=10, seed=7)) == [5, 22, 0]
    assert bytes(port.written) == encode_request(Command.IDENTIFY) + \
        encode_request(Command.GENERATE, struct.pack("<HHHI5H", 100, 320, 10, 7, 1, 2, 3, 4, 5))


def test_client_sends_all_tokens_as_top_k_none():
    port = ScriptedPort(b"\x00\x02\x00" + struct.pack("<H", 9))
    client = ForwardClient(port)
    client.identity = IDENTITY
    assert list(client.generate([3], 1, seed=1)) == [9]
    assert bytes(port.written) == encode_generate([3], 1, inv_temperature=0, top_k=23, seed=1)


@pytest.mark.parametrize("answer, message", [
    (b"\x03\x00\x00", "GENERATE answered BAD_ARGUMENT"),
    (b"\x06\x00\x00", "GENERATE answered NOT_LOADED: the board's flash holds no image of this build"),
    (b"\x00\x04\x00", "GENERATE answered 4 bytes, not the 6 of 3 tokens"),
    (b"\x00\x06\x00\x01\x00", "The board stopped after 1 of 3 tokens"),
    (b"", "No response from the device"),
])
def test_client_answer_wrong(answer, message):
    client = ForwardClient(ScriptedPort(answer))
    client.identity = IDENTITY
    with pytest.raises(ProtocolError, match=message):
        list(client.generate([1, 2], 3))


def test_client_refuses_before_sending():
    port = ScriptedPort(b"")
    client = ForwardClient(port)
    client.identity = IDENTITY
    with pytest.raises(UserError, match="Token id 99"):
        client.generate([1, 99], 3)
    assert port.written == b""


def test_open_board_refuses_another_model(compiled):
    identity = ForwardIdentity.of(compiled, context=8, clock_hz=36e6, divisor=12)
    wrong = ForwardIdentity(**{**identity.__dict__, "digest": bytes(8)})
    port = ScriptedPort(b"\x00" + struct.pack("<H", 40) + wrong.pack())
    with pytest.raises(ProtocolError, match="The board holds another model: digest"):
        open_board(port, compiled, baud=3_000_000)
    port = ScriptedPort(b"\x00" + struct.pack("<H", 40) + identity.pack())
    assert open_board(port, compiled, baud=3_000_000).identity == identity


def _answer(status, payload=b""):
    return bytes([status]) + struct.pack("<H", len(payload)) + payload


def test_open_board_waits_for_the_codes(compiled):
    """A board that reads its codes from the flash at reset: the host identifies until they are in (sending no
    LOAD); a board whose flash holds no image of this build, or that never gets its codes, is an error."""
    identity = ForwardIdentity.of(compiled, context=8, clock_hz=36e6, divisor=12, rows=2, columns=3, code_words=512,
                                  loads_codes=True)
    loaded = ForwardIdentity(**{**identity.__dict__, "codes_loaded": True})
    missing = ForwardIdentity(**{**identity.__dict__, "codes_missing": True})
    port = ScriptedPort(_answer(0, identity.pack()) * 2 + _answer(0, loaded.pack()))
    assert open_board(port, compiled, baud=3_000_000).identity == loaded
    assert bytes(port.written) == encode_request(Command.IDENTIFY) * 3
    assert open_board(ScriptedPort(_answer(0, loaded.pack())), compiled, baud=3_000_000).identity == loaded
    with pytest.raises(ProtocolError, match="flash holds no image of this build .* boards.run --flash"):
        open_board(ScriptedPort(_answer(0, identity.pack()) + _answer(0, missing.pack())), compiled, baud=1)
    ticks = iter(range(100))
    client = ForwardClient(ScriptedPort(_answer(0, identity.pack()) * 10))
    with pytest.raises(ProtocolError, match="has not read its codes from the flash 3 s after"):
        client.wait_for_codes(timeout_s=3, clock=lambda: next(ticks))


@pytest.mark.parametrize("args, message", [
    (["--prompt", "abcdefgh", "--context", "4"], "The prompt has 8 tokens; the board's context is 4"),
    (["--prompt", "abcd", "--context", "4"], "The prompt has 4 tokens; the board's context is 4"),
    (["--top-k", "24"], "--top-k 24 is outside 1 to 23"),
    (["--top-k", "0"], "--top-k must be a positive integer, not 0"),
    (["--temperature", "0.001"], "--temperature 0.001 does not fit the integer sampler"),
    (["--seed", "4294967295"], "--seed 4294967295 is outside 0 to 4294967294"),
    (["--context", "33"], "--context must be 1 to the model's 32 positions, not 33"),
    (["--board", "ulx3s", "--prompt", "a" * 32], "The prompt has 32 tokens; the board's context is 32"),
])
def test_forward_sim_bad_input_refused_before_the_build(tiny_checkpoint, args, message, capsys, monkeypatch):
    def no_build(*args, **kwargs):
        raise AssertionError("the Verilator build started")
    monkeypatch.setattr(forward_sim.ForwardSim, "__init__", no_build)
    with pytest.raises(SystemExit) as exit_info:
        run(main, "generate", ["--checkpoint", str(tiny_checkpoint), "--backend", "sim", "--prompt", "ab", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and err.count("\n") == 1, err
