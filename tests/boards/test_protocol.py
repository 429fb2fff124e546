"""The host side of the link protocol: frames, identity, code banks, activations and results."""

import struct

import numpy as np
import pytest

from boards.protocol import (MAX_PAYLOAD, Client, Command, Identity, ProtocolError, Status, code_banks,
                             decode_results, encode_activations, encode_load, encode_request, layout_digest,
                             load_checksum, load_chunks, read_response)
from golden.rom_layout import RomLayout

IDENTITY = Identity(rows=2, columns=16, bits=4, act_bits=8, acc_bits=23, columns_per_word=4, banks=4,
                    bank_words=12288, layers=16, max_tokens=2, clock_hz=30_000_000, divisor=10,
                    digest=bytes(range(8)))


def layout(bits=4, seed=0, bias_shift=0):
    rng = np.random.default_rng(seed)
    return RomLayout([("a", rng.integers(0, 1 << bits, (5, 7)), rng.integers(-9, 9, 7) + bias_shift),
                      ("b", rng.integers(0, 1 << bits, (3, 4)), rng.integers(-9, 9, 4))], columns=4, bits=bits)


def test_identity_round_trip():
    data = IDENTITY.pack()
    assert len(data) == Identity.SIZE == 32 and data[:4] == b"PoTg"
    assert Identity.unpack(data) == IDENTITY
    assert IDENTITY.baud == 3e6


def test_identity_wrong():
    with pytest.raises(ProtocolError, match="An identity is 32 bytes, not 31"):
        Identity.unpack(IDENTITY.pack()[:31])
    with pytest.raises(ProtocolError, match="Not a potgen device"):
        Identity.unpack(b"XXXX" + IDENTITY.pack()[4:])


def test_identity_mismatches_ignore_clock():
    from dataclasses import replace
    other = replace(IDENTITY, clock_hz=12, divisor=4, rows=4, digest=b"\x00" * 8)
    assert IDENTITY.mismatches(other) == ["rows", "digest"]


def test_request_frames():
    assert encode_request(Command.IDENTIFY) == b"I\x00\x00"
    assert encode_request(Command.LAYER, b"\x05") == b"S\x01\x00\x05"
    with pytest.raises(ValueError, match="at most 65535 bytes, not 65536"):
        encode_request(Command.RUN, bytes(MAX_PAYLOAD + 1))


def test_read_response():
    data = iter([b"\x00\x02\x00", b"\xab\xcd"])
    assert read_response(lambda n: next(data)) == (Status.OK, b"\xab\xcd")
    with pytest.raises(ProtocolError, match="No response"):
        read_response(lambda n: b"")
    data = iter([b"\x00\x05\x00", b"\x01"])
    with pytest.raises(ProtocolError, match="cut short: 1 of 5"):
        read_response(lambda n: next(data))
    with pytest.raises(ProtocolError, match="Unknown status 0x7f"):
        read_response(lambda n: b"\x7f\x00\x00")


def test_digest_covers_biases_and_codes():
    assert layout_digest(layout()) == layout_digest(layout())
    assert layout_digest(layout()) != layout_digest(layout(bias_shift=1))
    assert layout_digest(layout()) != layout_digest(layout(seed=1))
    assert len(layout_digest(layout())) == 8


def test_code_banks_are_group_words():
    lay = layout()
    banks = code_banks(lay, 4)
    assert len(banks) == 1 and banks[0].dtype == np.uint16 and len(banks[0]) == lay.code_depth
    np.testing.assert_array_equal(banks[0], lay.group_words(0, 4))
    assert len(code_banks(lay, 2)) == 2


def test_load_frames():
    words = np.arange(10000, dtype=np.uint16)
    chunks = load_chunks(words, 4096)
    assert [(a, len(w)) for a, w in chunks] == [(0, 4096), (4096, 4096), (8192, 1808)]
    assert max(len(w) for _, w in load_chunks(words, 10 ** 6)) * 2 + 3 <= MAX_PAYLOAD
    frame = encode_load(3, 0x1234, [0xBEEF, 1])
    assert frame == b"L\x07\x00\x03\x34\x12\xef\xbe\x01\x00"
    assert load_checksum([0xFFFF, 2]) == 1


@pytest.mark.parametrize("act_bits", [8, 4, 12])
def test_activations_two_complement(act_bits):
    x = np.array([[-(1 << (act_bits - 1)), -1, 0, 1, (1 << (act_bits - 1)) - 1]])
    data = encode_activations(x, act_bits)
    width = (act_bits + 7) // 8
    assert len(data) == 5 * width
    back = [int.from_bytes(data[i:i + width], "little", signed=True) for i in range(0, len(data), width)]
    assert back == list(x[0])


@pytest.mark.parametrize("acc_bits", [20, 23, 24, 33, 40])
def test_results_decode(acc_bits):
    values = np.array([[-(1 << (acc_bits - 1)), -1, 0], [1, 12345, (1 << (acc_bits - 1)) - 1]])
    width = (acc_bits + 7) // 8
    payload = b"".join(int(v).to_bytes(width, "little", signed=True) for v in values.flat)
    np.testing.assert_array_equal(decode_results(payload, 2, 3, acc_bits), values)
    with pytest.raises(ProtocolError, match="Expected"):
        decode_results(payload[:-1], 2, 3, acc_bits)


class FakePort:
    """Answers requests from a script of responses; records what was written."""

    def __init__(self, *responses):
        self.responses = b"".join(responses)
        self.written = b""

    def write(self, data):
        self.written += data

    def read(self, n):
        data, self.responses = self.responses[:n], self.responses[n:]
        return data


def response(status, payload=b""):
    return struct.pack("<BH", status, len(payload)) + payload


def test_client_error_status_raises():
    client = Client(FakePort(response(Status.BAD_ARGUMENT)))
    with pytest.raises(ProtocolError, match="LAYER answered BAD_ARGUMENT") as error:
        client.select(9)
    assert error.value.status == Status.BAD_ARGUMENT


def test_client_load_checks_checksums():
    words = np.array([1, 2, 3], dtype=np.uint16)
    port = FakePort(response(Status.OK, struct.pack("<H", 6)))
    Client(port).load_codes([words])
    assert port.written == encode_load(0, 0, words)
    with pytest.raises(ProtocolError, match="checksum"):
        Client(FakePort(response(Status.OK, b"\x07\x00"))).load_codes([words])
