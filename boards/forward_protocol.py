"""The whole-forward design's host protocol: a prompt and settings in, tokens out as the board makes them.

The framing, the statuses and the error behaviour are `boards.protocol`'s
(request ``command u8 | length u16 | payload``, response ``status u8 |
length u16 | payload``, little-endian; every request answered, errors
included; a request cut short answered ``TIMEOUT``, a byte lost on the line
``LINE_ERROR``). Only the commands differ:

``IDENTIFY`` (0x49, ``I``), no payload.
    Response: the `ForwardIdentity` of the build (40 bytes): protocol
    version 4, design "forward", the model's shape, the context the board
    holds, its clock, its array (rows, columns), whether its codes are read
    from the SPI flash after configuration (and the words per code bank),
    whether they are in now or the flash holds no image of this build, and a
    digest of the compiled artefact (`compiled_digest`), so the host refuses
    a board built for another model.
``GENERATE`` (0x47, ``G``), ``count u16 | inv_temperature u16 | top_k u16 |
    seed u32 | ids u16 * n`` with ``n >= 1``.
    Runs the prompt `ids` from an empty KV cache and samples ``c = min(count,
    context - n)`` tokens, exactly `golden.int_forward.IntegerForward.generate`
    with ``inv_temperature`` (``round(256 / T)``, 0 greedy), ``top_k`` (``V``
    for all tokens) and ``seed``. Response: ``OK``, length ``2 * c``, then the
    ``c`` tokens (u16 each), each sent as soon as it is sampled. ``BAD_LENGTH``
    if the length is under 12, odd, or ``n > context``; ``BAD_ARGUMENT`` if an
    id is ``>= V``, ``top_k`` is 0 or above ``V``, or the seed is ``2**32 - 1``
    (whose xorshift state, ``seed + 1``, would be 0); ``NOT_LOADED`` on a
    build whose codes come from the flash when the flash holds no image of
    this build (`CODES_MISSING`). A GENERATE sent while the board is still
    reading its codes (a few ms after configuration) waits for them. The
    payload is read before an error is answered, so the two ends stay in step.

Any other command (the linear design's LOAD, 0x4C, included: protocol
version 3 loaded the codes through the UART) is answered ``BAD_COMMAND``.

This module is the host's side: the identity, the request encoding, the
checks a host makes before it sends anything (`check_generate`), and
`ForwardClient`, which drives a real board (pyserial) or its simulation
(`boards.board_tb.SimPort`) alike.
"""

import enum
import hashlib
import json
import struct
from dataclasses import dataclass

import numpy as np

from golden.cli import UserError
from golden.int_ops import XORSHIFT_SEED_MAX

from .protocol import MAGIC, MAX_PAYLOAD, ProtocolError, Status, encode_request, read_header, read_response

__all__ = ["Command", "VERSION", "DESIGN", "ARGUMENTS", "LOADS_CODES", "CODES_LOADED",
           "CODES_MISSING", "ForwardIdentity", "compiled_digest", "inv_temperature",
           "check_generate", "encode_generate", "ForwardClient", "open_board"]

#: The protocol version a forward build answers (the linear design's is `boards.protocol.VERSION`, 1; the
#: forward design's before LOAD, 2; with LOAD, 3; with the codes read from the flash at reset, 4).
VERSION = 4
DESIGN = "forward"
#: GENERATE's fixed arguments before the ids: count, inv_temperature, top_k (u16 each), seed (u32).
ARGUMENTS = struct.Struct("<HHHI")
#: Largest ``round(256 / T)`` the request holds.
MAX_INV_TEMPERATURE = 0xFFFF
#: Largest count a request holds (a board makes at most its context's worth anyway).
MAX_COUNT = 0xFFFF


class Command(enum.IntEnum):
    IDENTIFY = 0x49
    GENERATE = 0x47


#: The identity's flags: the build reads its codes from the SPI flash after configuration; they are in now; the
#: flash holds no image of this build (its check did not match: `hdl.code_boot.CodeBoot`).
LOADS_CODES, CODES_LOADED, CODES_MISSING = 1, 2, 4
#: Seconds a host waits for a board to read its codes from the flash (it takes a few ms after configuration).
CODES_WAIT_S = 1.0


def compiled_digest(compiled):
    """First 8 bytes of a SHA-256 over a `golden.compile.CompiledModel`: its description (config, formats,
    bits, program, scales) and every tensor's name, shape and values.

    Values are hashed as int64, so an artefact read back (`golden.artefact.read_compiled`, which widens
    most tensors) has the digest of the model compiled in memory."""
    digest = hashlib.sha256(json.dumps(compiled.describe(), sort_keys=True).encode())
    for name in sorted(compiled.tensors):
        array = np.asarray(compiled.tensors[name])
        digest.update(struct.pack("<H", len(name)) + name.encode() + struct.pack(f"<{array.ndim + 1}I", array.ndim,
                                                                                  *array.shape))
        digest.update(np.ascontiguousarray(array, dtype="<i8").tobytes())
    return digest.digest()[:8]


@dataclass(frozen=True)
class ForwardIdentity:
    """What a forward build answers to ``IDENTIFY``: 40 bytes, see `pack`.

    `context` is the positions the board holds (its KV cache and ``wpe`` rows), at most the
    model's ``n_positions``; `clock_hz` and `divisor` give its UART rate; `rows` and `columns` its
    PoT array. `loads_codes`: the board reads its codes (`code_words` per bank, one bank per column)
    from the SPI flash after configuration; `codes_loaded`: it has; `codes_missing`: the flash holds no
    image of this build (the board sets these two flags, byte `FLAGS_OFFSET`)."""

    vocab_size: int
    context: int
    n_layer: int
    n_head: int
    n_embd: int
    clock_hz: int
    divisor: int
    digest: bytes
    rows: int = 0
    columns: int = 0
    code_words: int = 0
    loads_codes: bool = False
    codes_loaded: bool = False
    codes_missing: bool = False
    design: str = DESIGN
    version: int = VERSION

    # magic, version, design, vocab, context, n_layer, n_head, n_embd, clock_hz, divisor, rows, columns,
    # flags, code_words, digest
    _FORMAT = struct.Struct("<4sB8sHHBBHIHBBBH8s")
    SIZE = _FORMAT.size
    #: The byte of the flags (`LOADS_CODES`, `CODES_LOADED`, `CODES_MISSING`).
    FLAGS_OFFSET = struct.calcsize("<4sB8sHHBBHIHBB")

    @property
    def flags(self):
        return ((LOADS_CODES if self.loads_codes else 0) | (CODES_LOADED if self.codes_loaded else 0)
                | (CODES_MISSING if self.codes_missing else 0))

    def pack(self):
        return self._FORMAT.pack(MAGIC, self.version, self.design.encode(), self.vocab_size, self.context,
                                 self.n_layer, self.n_head, self.n_embd, self.clock_hz, self.divisor, self.rows,
                                 self.columns, self.flags, self.code_words, self.digest)

    @classmethod
    def unpack(cls, data):
        """The identity in `data`; ProtocolError if it is not a forward build's."""
        if data[:4] != MAGIC:
            raise ProtocolError(f"Not a potgen device: identity starts {bytes(data[:4])!r}, not {MAGIC!r}")
        if len(data) >= 5 and data[4] != VERSION:
            raise ProtocolError(f"The board speaks protocol version {data[4]} (the linear design's is 1, the "
                                f"forward design's before LOAD 2, with LOAD 3), not the forward design's {VERSION}: build it "
                                f"with python -m hdl.build --design forward")
        if len(data) != cls.SIZE:
            raise ProtocolError(f"A forward identity is {cls.SIZE} bytes, not {len(data)}")
        (_, version, design, vocab_size, context, n_layer, n_head, n_embd, clock_hz, divisor, rows, columns,
         flags, code_words, digest) = cls._FORMAT.unpack(data)
        return cls(vocab_size, context, n_layer, n_head, n_embd, clock_hz, divisor, digest, rows, columns,
                   code_words, bool(flags & LOADS_CODES), bool(flags & CODES_LOADED), bool(flags & CODES_MISSING),
                   design.rstrip(b"\0").decode(errors="replace"), version)

    @classmethod
    def of(cls, compiled, *, context, clock_hz, divisor, rows=0, columns=0, code_words=0, loads_codes=False):
        """The identity of a build of `compiled` holding `context` positions (as it answers before its codes are in)."""
        config = compiled.config
        return cls(vocab_size=config.vocab_size, context=context, n_layer=config.n_layer, n_head=config.n_head,
                   n_embd=config.n_embd, clock_hz=round(clock_hz), divisor=divisor, digest=compiled_digest(compiled),
                   rows=rows, columns=columns, code_words=code_words, loads_codes=loads_codes)

    @property
    def baud(self):
        return self.clock_hz / self.divisor

    def mismatches(self, other):
        """Names of the fields where `other` differs (the board's own choices excepted: context, clock,
        divisor, array, where its codes are and whether they are loaded)."""
        skip = {"context", "clock_hz", "divisor", "rows", "columns", "code_words", "loads_codes", "codes_loaded",
                "codes_missing"}
        return [name for name in self.__dataclass_fields__
                if not name.startswith("_") and name not in skip and getattr(self, name) != getattr(other, name)]


def inv_temperature(temperature):
    """The integer sampler's temperature setting ``round(256 / T)`` (0 for greedy), 1..65535; UserError
    naming the range of T otherwise."""
    if temperature == 0:
        return 0
    value = int(np.floor(256 / temperature + 0.5)) if temperature > 0 else -1
    if not 1 <= value <= MAX_INV_TEMPERATURE:
        raise UserError(f"--temperature {temperature} does not fit the integer sampler, which holds "
                        f"round(256 / T) in 16 bits: T from {256 / (MAX_INV_TEMPERATURE + 0.5):.4f} to 512, "
                        f"or 0 (greedy)")
    return value


def check_generate(prompt, count, *, inv_temperature, top_k, seed, vocab_size, context):
    """Refuse, with one line (UserError), a GENERATE the board would refuse or could not hold.

    `top_k` None means every token (sent as `vocab_size`). Returns the ids as a list of ints."""
    ids = [int(i) for i in np.asarray(prompt, dtype=np.int64).reshape(-1)]
    if not ids:
        raise UserError("The prompt is empty; give at least one token")
    if len(ids) > context:
        raise UserError(f"The prompt has {len(ids)} tokens; the board's context is {context}")
    bad = next((i for i, token in enumerate(ids) if not 0 <= token < vocab_size), None)
    if bad is not None:
        raise UserError(f"Token id {ids[bad]} (prompt position {bad}) is outside the vocabulary: "
                        f"0 to {vocab_size - 1}")
    if isinstance(count, bool) or not isinstance(count, (int, np.integer)) or count < 0:
        raise UserError(f"The token count must be a non-negative integer, not {count!r}")
    if top_k is not None and not 1 <= top_k <= vocab_size:
        raise UserError(f"--top-k {top_k} is outside 1 to {vocab_size} (the vocabulary)")
    if not 0 <= inv_temperature <= MAX_INV_TEMPERATURE:
        raise UserError(f"The inverse temperature {inv_temperature} is outside 0 to {MAX_INV_TEMPERATURE}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= XORSHIFT_SEED_MAX:
        raise UserError(f"--seed {seed!r} is outside 0 to {XORSHIFT_SEED_MAX}")
    if 2 * len(ids) + ARGUMENTS.size > MAX_PAYLOAD:
        raise UserError(f"The prompt has {len(ids)} tokens; a request holds {(MAX_PAYLOAD - ARGUMENTS.size) // 2}")
    return ids


def encode_generate(ids, count, *, inv_temperature, top_k, seed):
    """GENERATE's whole request (header included). No checks: `check_generate` makes them; tests send bad ones."""
    ids = np.asarray(ids, dtype="<u2")
    return encode_request(Command.GENERATE, ARGUMENTS.pack(count, inv_temperature, top_k, seed) + ids.tobytes())


class ForwardClient:
    """The host's end of the forward protocol over a byte port with ``write(bytes)`` and ``read(n) -> bytes``.

    The port may be a `serial.Serial` (with a timeout longer than a token takes) or the simulation's
    `boards.board_tb.SimPort`. Every method raises `ProtocolError` on an error status.
    """

    def __init__(self, port):
        self.port = port
        self.identity = None

    def identify(self):
        self.port.write(encode_request(Command.IDENTIFY))
        status, payload = read_response(self.port.read)
        if status != Status.OK:
            raise ProtocolError(f"IDENTIFY answered {status.name}", status)
        self.identity = ForwardIdentity.unpack(payload)
        return self.identity

    def wait_for_codes(self, *, timeout_s=CODES_WAIT_S, clock=None):
        """Identify until the board's codes are in (a board that reads them from the flash does so in a few ms
        after configuration); the identity. ProtocolError if the flash holds no image of this build or the
        codes are not in after `timeout_s` seconds of `clock` (default `time.monotonic`)."""
        import time

        clock = clock or time.monotonic
        identity = self.identity or self.identify()
        deadline = clock() + timeout_s
        while identity.loads_codes and not identity.codes_loaded:
            if identity.codes_missing:
                raise ProtocolError("The board's flash holds no image of this build (its codes' check does not "
                                    "match): write the build's flash image with python -m boards.run --flash DIR")
            if clock() > deadline:
                raise ProtocolError(f"The board has not read its codes from the flash {timeout_s:g} s after being "
                                    f"asked")
            identity = self.identify()
        return identity

    def generate(self, prompt, count, *, inv_temperature=0, top_k=None, seed=0):
        """Yield the board's tokens (ints) for `prompt` (ids) as they arrive: ``min(count, context - n)`` of them.

        The request is checked first (`check_generate`, UserError) against the board's identity
        (`identify` is called if it has not been). Read the generator to its end before the next request."""
        identity = self.identity or self.identify()
        ids = check_generate(prompt, count, inv_temperature=inv_temperature, top_k=top_k, seed=seed,
                             vocab_size=identity.vocab_size, context=identity.context)
        request = encode_generate(ids, min(count, MAX_COUNT), inv_temperature=inv_temperature,
                                  top_k=identity.vocab_size if top_k is None else top_k, seed=seed)
        return self._tokens(request, min(count, identity.context - len(ids)))

    def _tokens(self, request, expected):
        self.port.write(request)
        status, length = read_header(self.port.read)
        if status == Status.NOT_LOADED:
            raise ProtocolError("GENERATE answered NOT_LOADED: the board's flash holds no image of this build "
                                "(write it with python -m boards.run --flash DIR)", status)
        if status != Status.OK:
            raise ProtocolError(f"GENERATE answered {status.name}", status)
        if length != 2 * expected:
            raise ProtocolError(f"GENERATE answered {length} bytes, not the {2 * expected} of {expected} tokens")
        for index in range(expected):
            data = self.port.read(2)
            if len(data) != 2:
                raise ProtocolError(f"The board stopped after {index} of {expected} tokens")
            yield int.from_bytes(data, "little")


def open_board(port, compiled, *, baud, timeout=2.0):
    """A `ForwardClient` on serial port `port` (a name, or an object with read/write), identified, checked
    to be a forward build of `compiled` (ProtocolError naming what differs otherwise), its codes in
    (`ForwardClient.wait_for_codes`). Close its ``port``."""
    from .host import open_serial

    if isinstance(port, str):
        port = open_serial(port, baud=baud, timeout=timeout)
    try:
        client = ForwardClient(port)
        identity = client.identify()
        expected = ForwardIdentity.of(compiled, context=identity.context, clock_hz=identity.clock_hz,
                                      divisor=identity.divisor)
        wrong = identity.mismatches(expected)
        if wrong:
            detail = ", ".join(f"{name} {getattr(identity, name)!r} (this model: {getattr(expected, name)!r})"
                               for name in wrong)
            raise ProtocolError(f"The board holds another model: {detail}; flash the bitstream built from it")
        client.wait_for_codes()
    except BaseException:
        getattr(port, "close", lambda: None)()
        raise
    return client
