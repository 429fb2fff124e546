"""The host link: a small binary request/response protocol over the board's UART.

The host sends one request and reads its response before sending the next.
All integers are little-endian.

Frames
------
Request:  ``command u8 | length u16 | payload (length bytes)``

Response: ``status u8 | length u16 | payload (length bytes)``

Every request gets exactly one response, errors included. A request whose
length is wrong for its command, or whose arguments are out of range, has its
payload read and dropped before the error is answered, so the two ends stay in
step. A request cut short (no byte for `timeout` cycles inside a frame) is
answered with ``TIMEOUT``; a UART framing error or a dropped byte inside a
frame makes the answer ``LINE_ERROR``. The device never waits for a host that
has stopped: to resynchronise, stop sending for longer than the timeout (tens
of milliseconds on the board) and drain whatever responses arrive.

Commands
--------
``IDENTIFY`` (0x49, ``I``), no payload.
    Response: the `Identity` of the build (32 bytes), so the host can check it
    talks to the bitstream it means to: array shape, number formats, code
    memory geometry, clock, and a digest of the layer table, biases and codes
    the bitstream was built for.
``LOAD`` (0x4C, ``L``), ``bank u8 | address u16 | word u16 * n`` with ``n >= 1``.
    Writes `n` code words into code bank `bank` from `address` on. Bank ``g``
    feeds columns ``g*P .. g*P+P-1`` (``P`` columns per word); its word ``a``
    is `golden.rom_layout.RomLayout.group_words` word ``a``. Response: the sum
    of the words written, mod 2**16 (u16), to catch corruption on the line.
    ``BAD_LENGTH`` if the length is under 5 or even; ``BAD_ARGUMENT`` if the
    bank does not exist or the words run past the bank's `bank_words`.
``LAYER`` (0x53, ``S``), ``layer u8``.
    Selects the layer (its index in the layer table) the next ``RUN`` uses.
    ``BAD_LENGTH`` unless the length is 1; ``BAD_ARGUMENT`` if there is no
    such layer. The selection survives until the next ``LAYER``; at reset it
    is layer 0.
``RUN`` (0x52, ``R``), the int activations of ``T`` tokens, token-major, each
    a ``ceil(act_bits / 8)``-byte two's-complement integer.
    ``1 <= T <= max_tokens``, so the length must be ``T * K * act_bytes`` for
    the selected layer's ``K``, else ``BAD_LENGTH``. Response: the ``T * N``
    accumulators, token-major in channel order, each a
    ``ceil(acc_bits / 8)``-byte two's-complement integer (sign-extended).

Statuses: ``OK`` 0, ``BAD_COMMAND`` 1, ``BAD_LENGTH`` 2, ``BAD_ARGUMENT`` 3,
``TIMEOUT`` 4, ``LINE_ERROR`` 5, ``NOT_LOADED`` 6 (the forward design only). An
error response has no payload.

This module is the host's side: encoding and decoding shared by the driver
(`boards.run`), the board top (which takes its `Identity`) and the tests.
"""

import enum
import hashlib
import struct
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Command", "Status", "ProtocolError", "Identity", "MAGIC", "VERSION", "MAX_PAYLOAD",
    "layout_digest", "encode_request", "read_header", "read_response", "code_banks", "load_chunks",
    "encode_load", "load_checksum", "load_banks", "encode_activations", "decode_results", "value_bytes",
    "Client",
]

MAGIC = b"PoTg"
VERSION = 1
#: The length field is 16 bits.
MAX_PAYLOAD = 0xFFFF
HEADER = struct.Struct("<BH")


class Command(enum.IntEnum):
    IDENTIFY = 0x49
    LOAD = 0x4C
    LAYER = 0x53
    RUN = 0x52


class Status(enum.IntEnum):
    OK = 0
    BAD_COMMAND = 1
    BAD_LENGTH = 2
    BAD_ARGUMENT = 3
    TIMEOUT = 4
    LINE_ERROR = 5
    #: The forward design: a GENERATE on a board whose codes the host has not loaded (`boards.forward_protocol`).
    NOT_LOADED = 6


class ProtocolError(RuntimeError):
    """The device answered with an error status, or not as the protocol says."""

    def __init__(self, message, status=None):
        super().__init__(message)
        self.status = status


def value_bytes(bits):
    """Bytes on the wire of one `bits`-bit integer."""
    return (bits + 7) // 8


def layout_digest(layout):
    """First 8 bytes of a SHA-256 over a `RomLayout`: code width, columns, layer table, biases, codes."""
    digest = hashlib.sha256()
    digest.update(struct.pack("<hH", -1 if layout.bits is None else layout.bits, layout.columns))
    for layer in layout.layers:
        name = layer.name.encode()
        digest.update(struct.pack("<H", len(name)) + name)
        digest.update(struct.pack("<5I", layer.k, layer.n, layer.slots, layer.code_base, layer.bias_base))
    for column in range(layout.columns):
        digest.update(b"".join(int(b).to_bytes(16, "little", signed=True) for b in layout.bias_images[column]))
    digest.update(np.ascontiguousarray(layout.code_images, dtype=np.uint8).tobytes())
    return digest.digest()[:8]


@dataclass(frozen=True)
class Identity:
    """What a build answers to ``IDENTIFY``: 32 bytes, see `pack`."""

    rows: int
    columns: int
    bits: int            # 0 for the INT8 reference array
    act_bits: int
    acc_bits: int
    columns_per_word: int
    banks: int
    bank_words: int
    layers: int
    max_tokens: int
    clock_hz: int
    divisor: int
    digest: bytes
    version: int = VERSION

    # magic, version, rows .. max_tokens (9 x u8), bank_words, clock_hz, divisor, reserved, digest
    _FORMAT = struct.Struct("<4sB9BHIH2x8s")
    SIZE = _FORMAT.size

    def pack(self):
        return self._FORMAT.pack(MAGIC, self.version, self.rows, self.columns, self.bits, self.act_bits,
                                 self.acc_bits, self.columns_per_word, self.banks, self.layers, self.max_tokens,
                                 self.bank_words, self.clock_hz, self.divisor, self.digest)

    @classmethod
    def unpack(cls, data):
        if len(data) != cls.SIZE:
            raise ProtocolError(f"An identity is {cls.SIZE} bytes, not {len(data)}")
        (magic, version, rows, columns, bits, act_bits, acc_bits, cpw, banks, layers, max_tokens,
         bank_words, clock_hz, divisor, digest) = cls._FORMAT.unpack(data)
        if magic != MAGIC:
            raise ProtocolError(f"Not a potgen device: identity starts {magic!r}, not {MAGIC!r}")
        return cls(rows, columns, bits, act_bits, acc_bits, cpw, banks, bank_words, layers, max_tokens,
                   clock_hz, divisor, digest, version)

    @property
    def baud(self):
        return self.clock_hz / self.divisor

    def mismatches(self, other):
        """Names of the fields where `other` differs (clock and divisor excepted)."""
        skip = {"clock_hz", "divisor"}
        return [name for name in self.__dataclass_fields__
                if not name.startswith("_") and name not in skip and getattr(self, name) != getattr(other, name)]


def encode_request(command, payload=b""):
    payload = bytes(payload)
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"A payload is at most {MAX_PAYLOAD} bytes, not {len(payload)}")
    return HEADER.pack(int(command), len(payload)) + payload


def read_header(read):
    """Read one response's header with ``read(n) -> bytes``; returns (status, payload length)."""
    header = read(HEADER.size)
    if len(header) != HEADER.size:
        raise ProtocolError(f"No response from the device (got {len(header)} of {HEADER.size} header bytes)")
    status, length = HEADER.unpack(header)
    try:
        return Status(status), length
    except ValueError:
        raise ProtocolError(f"Unknown status {status:#04x} from the device") from None


def read_response(read):
    """Read one response with ``read(n) -> bytes``; returns (status, payload)."""
    status, length = read_header(read)
    payload = read(length) if length else b""
    if len(payload) != length:
        raise ProtocolError(f"Response cut short: {len(payload)} of {length} bytes")
    return status, payload


def code_banks(layout, columns_per_word):
    """The word images of every code bank: a list of uint16 arrays, bank ``g`` feeding columns ``g*P..``."""
    return [layout.group_words(first, columns_per_word).astype(np.uint16)
            for first in range(0, layout.columns, columns_per_word)]


def load_chunks(words, chunk_words=4096):
    """(address, words) pieces of one bank's image, each fitting one LOAD."""
    chunk_words = min(chunk_words, (MAX_PAYLOAD - 3) // 2)
    return [(start, words[start:start + chunk_words]) for start in range(0, len(words), chunk_words)]


def encode_load(bank, address, words):
    words = np.asarray(words, dtype="<u2")
    return encode_request(Command.LOAD, struct.pack("<BH", bank, address) + words.tobytes())


def load_checksum(words):
    return int(np.asarray(words, dtype=np.uint64).sum() & 0xFFFF)


def load_banks(request, banks, *, chunk_words=4096, progress=None):
    """LOAD every bank's words, bank 0 first, each from address 0 on, with ``request(Command.LOAD, payload)``
    (which raises `ProtocolError` on an error status and returns the answer's payload); checks each LOAD's
    checksum. ``progress(words)`` after each LOAD. Both designs' clients load their codes with it."""
    for bank, words in enumerate(banks):
        for address, chunk in load_chunks(words, chunk_words):
            answer = request(Command.LOAD, encode_load(bank, address, chunk)[HEADER.size:])
            if answer != struct.pack("<H", load_checksum(chunk)):
                raise ProtocolError(f"LOAD of bank {bank} at {address}: checksum {answer.hex()} "
                                    f"does not match {load_checksum(chunk):04x}")
            if progress is not None:
                progress(len(chunk))


def encode_activations(x, act_bits):
    """Int activations (T, K) as RUN's payload."""
    x = np.asarray(x, dtype=np.int64)
    return (x & ((1 << 8 * value_bytes(act_bits)) - 1)).astype(f"<u{value_bytes(act_bits)}").tobytes()


def decode_results(payload, tokens, n, acc_bits):
    """RUN's response payload -> int64 accumulators (tokens, n)."""
    width = value_bytes(acc_bits)
    if len(payload) != tokens * n * width:
        raise ProtocolError(f"Expected {tokens * n * width} result bytes ({tokens} x {n} x {width}), "
                            f"got {len(payload)}")
    raw = np.frombuffer(payload, dtype=np.uint8).reshape(tokens * n, width).astype(np.uint64)
    values = np.zeros(tokens * n, dtype=np.uint64)
    for i in range(width):
        values |= raw[:, i] << np.uint64(8 * i)
    signed = values.astype(np.int64)
    if width < 8:
        signed = np.where(signed >= 1 << (8 * width - 1), signed - (1 << (8 * width)), signed)
    return signed.reshape(tokens, n)


class Client:
    """The host's end of the link over a byte port with ``write(bytes)`` and ``read(n) -> bytes``.

    The port may be a `serial.Serial` (with a timeout) or the simulation's port
    (`boards.run`). Every method raises `ProtocolError` on an error status.
    """

    def __init__(self, port):
        self.port = port
        self.identity = None

    def request(self, command, payload=b"", expect=Status.OK):
        self.port.write(encode_request(command, payload))
        status, payload = read_response(self.port.read)
        if status != expect:
            raise ProtocolError(f"{Command(command).name} answered {status.name}", status)
        return payload

    def identify(self):
        self.identity = Identity.unpack(self.request(Command.IDENTIFY))
        return self.identity

    def load_codes(self, banks, chunk_words=4096, progress=None):
        """Write every bank's words (from `code_banks`); checks each LOAD's checksum."""
        load_banks(self.request, banks, chunk_words=chunk_words, progress=progress)

    def select(self, layer):
        self.request(Command.LAYER, bytes([layer]))

    def run(self, x, n, act_bits, acc_bits):
        """Accumulators (T, n) of int activations `x` (T, K) on the selected layer."""
        x = np.asarray(x)
        payload = self.request(Command.RUN, encode_activations(x, act_bits))
        return decode_results(payload, x.shape[0], n, acc_bits)
