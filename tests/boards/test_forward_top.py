# amaranth: UnusedElaboratable=no
"""The whole-forward board top in Verilator, UART pins included, driven by the host client a real board gets:
its tokens are exactly the integer golden's (`IntegerForward.generate`), and a malformed GENERATE is answered
with its error status while the board goes on generating.

The default suite runs a test checkpoint on the ULX3S top (codes in the bitstream) and on the iCEBreaker top
(codes in SPRAM, read from the simulated flash at reset), a few seconds each once built;
the default model on the iCEBreaker top at context 64, over 64 tokens, and the test checkpoint over 64 tokens
are slow."""

import pytest

from boards.forward_protocol import Command, encode_generate
from boards.forward_sim import ForwardSim
from boards.forward_top import FLASH_CONSTANTS_OFFSET, ForwardTop, compose_forward
from boards.protocol import encode_request
from golden.int_forward import IntegerForward

from tiny_checkpoints import write_tiny_checkpoint

TINY_SHAPE = dict(n_layer=2, n_embd=16, n_head=2, vocab_size=23, n_positions=80)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from golden.compile import compile_checkpoint
    return compile_checkpoint(write_tiny_checkpoint(tmp_path_factory.mktemp("forward_top"), **TINY_SHAPE))


@pytest.fixture(scope="module")
def tiny_ulx3s(verilator, tiny, tmp_path_factory):
    """The ULX3S top for the test checkpoint at its whole context, built for Verilator once for the module."""
    return ForwardSim(tiny, board="ulx3s", sim_dir=tmp_path_factory.mktemp("forward_sim"))


def request(prompt, count, inv_temperature, top_k, seed):
    return {"prompt": prompt, "count": count, "inv_temperature": inv_temperature, "top_k": top_k, "seed": seed}


def golden_tokens(compiled, req, context):
    """`IntegerForward.generate`'s tokens for `req`, as many as a board of `context` positions makes."""
    tokens = IntegerForward(compiled).generate(req["prompt"], min(req["count"], context - len(req["prompt"])),
                                               inv_temperature=req["inv_temperature"], top_k=req["top_k"],
                                               seed=req["seed"])
    return [int(token) for token in tokens]


@pytest.fixture(scope="module")
def tiny_icebreaker(verilator, tiny, tmp_path_factory):
    """The iCEBreaker top for the test checkpoint (context 64, codes read from the flash at reset), built once."""
    return ForwardSim(tiny, board="icebreaker", sim_dir=tmp_path_factory.mktemp("forward_sim_ice40"))


def test_tops(tiny):
    """Both boards' tops: identity from the artefact and the board's clock, UART divisor from the baud rate;
    the iCEBreaker's codes are read from the flash at reset (SPRAM), the ULX3S's are in the bitstream."""
    icebreaker = compose_forward(tiny, board="icebreaker", context=16, rows=2, columns=3, head_lanes=3)
    assert isinstance(icebreaker, ForwardTop) and icebreaker.board == "icebreaker"
    assert icebreaker.identity.context == 16 and icebreaker.identity.vocab_size == 23
    assert icebreaker.identity.loads_codes and icebreaker.core.linear.codes == "loaded"
    assert (icebreaker.identity.rows, icebreaker.identity.columns) == (2, 3)
    assert icebreaker.identity.code_words == icebreaker.core.linear.code_depth and icebreaker.core.attention_lanes == 2
    assert icebreaker.boot.base == icebreaker.codes_base and icebreaker.flash_image()[:4] == \
        icebreaker.core.constant_image()[:4]
    assert icebreaker.divisor == 12 and icebreaker.identity.clock_hz == round(icebreaker.frequency)
    ulx3s = compose_forward(tiny, board="ulx3s")
    assert not ulx3s.identity.loads_codes and ulx3s.identity.code_words == 0
    assert ulx3s.identity.context == 80 and ulx3s.divisor == 15 and ulx3s.frequency == 45e6
    assert ulx3s.identity.digest == icebreaker.identity.digest
    # The iCEBreaker streams its core's constants from the flash (the image at 1 MiB); the ULX3S keeps them.
    assert icebreaker.core.constant_source == "flash" and icebreaker.flash.offset == FLASH_CONSTANTS_OFFSET
    assert icebreaker.flash.clock_hz == icebreaker.frequency
    assert ulx3s.core.constant_source == "rom" and ulx3s.flash is None and ulx3s.boot is None
    assert ulx3s.flash_image() is None and ulx3s.codes_base is None
    for options in ({"constants": "flash"}, {"codes": "loaded"}):
        with pytest.raises(ValueError, match="Constants and codes from the SPI flash are built for the iCEBreaker"):
            compose_forward(tiny, board="ulx3s", **options)
    # Codes from the flash with the constants in block RAM: the image is the codes' part alone.
    rom = compose_forward(tiny, board="icebreaker", context=16, constants="rom")
    assert rom.codes_base == 0 and rom.flash is not None and rom.boot is not None
    with pytest.raises(ValueError, match="Board must be one of icebreaker, ulx3s, not 'de10'"):
        compose_forward(tiny, board="de10")


def test_sim_tiny_ulx3s(tiny, tiny_ulx3s):
    """A few tokens of the test checkpoint through the ULX3S top's UART: the integer golden's, exactly;
    then a malformed GENERATE of each kind is answered with its error and the next generation is right."""
    good = request([3, 1, 4], 6, 300, 10, 5)
    V = tiny.config.vocab_size
    bad = [
        (encode_generate([1, V], 3, inv_temperature=256, top_k=V, seed=0), "BAD_ARGUMENT"),     # id outside V
        (encode_generate([1, 2], 3, inv_temperature=256, top_k=0, seed=0), "BAD_ARGUMENT"),     # top-k 0
        (encode_request(Command.GENERATE, bytes(13)), "BAD_LENGTH"),                           # odd length
        (encode_generate([1, 2], 3, inv_temperature=256, top_k=V, seed=0)[:-3], "TIMEOUT"),    # cut short
    ]
    requests = [good]
    for raw, _ in bad:
        requests += [{"raw": raw.hex()}, request([7, 7], 4, 0, None, 1)]
    results = tiny_ulx3s.generate(requests)
    assert results[0]["status"] == "OK" and results[0]["tokens"] == golden_tokens(tiny, good, 80)
    for i, (_, status) in enumerate(bad):
        assert results[1 + 2 * i] == {"status": status, "payload": ""}
        after = results[2 + 2 * i]
        assert after["status"] == "OK" and after["tokens"] == golden_tokens(tiny, requests[2 + 2 * i], 80)


def test_sim_tiny_icebreaker_reads_its_codes_from_the_flash(tiny, tiny_icebreaker):
    """The iCEBreaker top holds its codes in SPRAM: it reads them from the flash model (the build's one image,
    over the flash pins) at reset. A GENERATE sent at once waits for them and is the integer golden's, exactly;
    the identity then says they are in; malformed requests (the old LOAD among them) get their errors and the
    board keeps generating."""
    sim, V = tiny_icebreaker, tiny.config.vocab_size
    good = request([3, 1, 4], 8, 300, 10, 5)
    bad = [(bytes([0x4C, 5, 0, 0, 0, 0, 1, 0]), "BAD_COMMAND"),                     # LOAD: no longer served
           (encode_generate([1, V], 3, inv_temperature=256, top_k=V, seed=0), "BAD_ARGUMENT"),
           (encode_generate([1, 2], 3, inv_temperature=256, top_k=V, seed=0xFFFF_FFFF), "BAD_ARGUMENT"),
           (encode_request(Command.GENERATE, bytes(10)), "BAD_LENGTH")]
    requests = [good, {"identify": True}] + [{"raw": r.hex()} for r, _ in bad] + [
        request([7, 7], 4, 0, None, 1), request([0], 6, 0, V, 0)]
    results = sim.generate(requests, wait=False)
    assert sim.boot_s is None                  # not waited for: the first GENERATE went at once
    assert results[0]["status"] == "OK" and results[0]["tokens"] == golden_tokens(tiny, good, 64)
    assert results[1] == {"status": "OK", "codes_loaded": True, "codes_missing": False}
    assert [r["status"] for r in results[2:6]] == [status for _, status in bad]
    for i in (6, 7):
        assert results[i]["status"] == "OK" and results[i]["tokens"] == golden_tokens(tiny, requests[i], 64)


@pytest.mark.slow
def test_sim_tiny_ulx3s_64_tokens(tiny, tiny_ulx3s):
    """The test checkpoint on the ULX3S top over 64 tokens (and one cut at the context), bit-exact."""
    requests = [request([5, 0, 22, 9], 64, 256, None, 11), request(list(range(20)), 100, 200, 7, 3)]
    results = tiny_ulx3s.generate(requests)
    for req, result in zip(requests, results):
        assert result["status"] == "OK" and result["tokens"] == golden_tokens(tiny, req, 80)
    assert len(results[0]["tokens"]) == 64 and len(results[1]["tokens"]) == 60


@pytest.mark.slow
def test_sim_default_model_icebreaker_64_tokens(verilator, tmp_path):
    """The default model on the iCEBreaker top at context 64: 63 tokens after a one-token prompt, and greedy
    after a longer prompt, exactly the integer golden's."""
    from golden.compile import compile_checkpoint
    compiled = compile_checkpoint()
    sim = ForwardSim(compiled, board="icebreaker", context=64, sim_dir=tmp_path)
    requests = [request([0], 64, 320, None, 7), request([18, 47, 56, 57, 58, 1, 15, 47, 58, 47, 64, 43, 52, 10],
                                                         64, 0, None, 0)]
    results = sim.generate(requests)
    for req, result in zip(requests, results):
        assert result["status"] == "OK" and result["tokens"] == golden_tokens(compiled, req, 64)
    assert len(results[0]["tokens"]) == 63
    # The codes came from the flash at reset: 3 banks of 16,384 words (96 KiB: no padding of N).
    assert sim.top.core.linear.code_banks.shape == (3, 16384) and sim.boot_s is not None
