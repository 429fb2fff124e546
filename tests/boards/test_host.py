"""boards.host.BoardSession against a Python model of the device's side of the protocol."""

import struct

import numpy as np
import pytest

from boards.host import BoardSession
from boards.protocol import (HEADER, Command, Identity, ProtocolError, Status, code_banks, layout_digest,
                             value_bytes)
from golden.integer_model import quantize_model


class DeviceModel:
    """The protocol as the board serves it, in Python: a byte port with write/read."""

    def __init__(self, integer_model, columns, rows=2, digest=None):
        self.layout = integer_model.layout(columns)
        self.im = integer_model
        self.acc_bits = integer_model.acc_bits()
        self.identity = Identity(rows=rows, columns=columns, bits=integer_model.bits, act_bits=integer_model.act_bits,
                                 acc_bits=self.acc_bits, columns_per_word=4, banks=len(code_banks(self.layout, 4)),
                                 bank_words=self.layout.code_depth, layers=len(self.layout.layers),
                                 max_tokens=rows, clock_hz=30_000_000, divisor=10,
                                 digest=digest or layout_digest(self.layout))
        self.banks = [np.zeros(self.layout.code_depth, np.uint16) for _ in range(self.identity.banks)]
        self.layer = 0
        self.out = b""
        self.runs = []
        self.closed = False

    def write(self, data):
        command, length = HEADER.unpack(data[:3])
        payload = data[3:]
        assert len(payload) == length
        if command == Command.IDENTIFY:
            self._answer(Status.OK, self.identity.pack())
        elif command == Command.LOAD:
            bank, address = struct.unpack("<BH", payload[:3])
            words = np.frombuffer(payload[3:], "<u2")
            self.banks[bank][address:address + len(words)] = words
            self._answer(Status.OK, struct.pack("<H", int(words.astype(np.uint64).sum()) & 0xFFFF))
        elif command == Command.LAYER:
            self.layer = payload[0]
            self._answer(Status.OK)
        elif command == Command.RUN:
            placement = self.layout.layers[self.layer]
            x = np.frombuffer(payload, np.int8).astype(np.int64).reshape(-1, placement.k)
            assert len(x) <= self.identity.max_tokens
            self.runs.append((placement.name, len(x)))
            loaded = [b.copy() for b in self.banks]
            assert all((a == b).all() for a, b in zip(loaded, code_banks(self.layout, 4))), "codes not loaded"
            acc = self.im.layers[placement.name].accumulate(x, self.acc_bits)
            width = value_bytes(self.acc_bits)
            self._answer(Status.OK, b"".join(int(v).to_bytes(width, "little", signed=True) for v in acc.flat))
        else:
            self._answer(Status.BAD_COMMAND)

    def _answer(self, status, payload=b""):
        self.out += HEADER.pack(status, len(payload)) + payload

    def read(self, n):
        data, self.out = self.out[:n], self.out[n:]
        return data

    def close(self):
        self.closed = True


@pytest.fixture(scope="module")
def integer_model(tiny_checkpoint):
    from golden.checkpoint import load_checkpoint
    from golden.data import read_tokens
    model = load_checkpoint(tiny_checkpoint)
    calib = read_tokens(tiny_checkpoint / "train.bin")[:64].astype(np.int64).reshape(2, 32)
    return quantize_model(model, calib_tokens=calib)


def test_session_runs_layers(integer_model):
    device = DeviceModel(integer_model, columns=4)
    session = BoardSession.open(device, integer_model)
    name = integer_model.model.linear_names[2]
    x = np.random.default_rng(0).integers(-127, 128, size=(5, integer_model.layers[name].k))
    np.testing.assert_array_equal(session.accumulate(name, x), integer_model.layers[name].accumulate(x))
    assert device.runs == [(name, 2), (name, 2), (name, 1)]
    session.close()
    assert device.closed


def test_session_offloaded_model_matches_golden(integer_model, tiny_checkpoint):
    """The whole model with every linear layer through the session equals the golden integer model."""
    from golden.data import read_tokens
    session = BoardSession.open(DeviceModel(integer_model, columns=4), integer_model)
    tokens = read_tokens(tiny_checkpoint / "val.bin")[:6].astype(np.int64)
    offloaded = integer_model.model.forward(tokens, linear=integer_model.offloaded_linear(session.accumulate))
    np.testing.assert_array_equal(offloaded, integer_model.forward(tokens))


def test_session_refuses_another_model(integer_model):
    device = DeviceModel(integer_model, columns=4, digest=b"\x00" * 8)
    with pytest.raises(ProtocolError, match="The board holds another model"):
        BoardSession.open(device, integer_model)
    assert device.closed


def test_session_unknown_layer(integer_model):
    session = BoardSession.open(DeviceModel(integer_model, columns=4), integer_model)
    with pytest.raises(KeyError, match="no layer 'h.9.mlp.c_fc'"):
        session.accumulate("h.9.mlp.c_fc", np.zeros((1, 16), np.int64))


def test_session_bad_port():
    with pytest.raises(ValueError, match="Cannot open /dev/no-such-port"):
        BoardSession.open("/dev/no-such-port", None)
