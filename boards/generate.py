"""Generate text: on the whole-forward board (or its simulation), or with the host doing the model's work.

    python -m boards.generate [--checkpoint PATH] [--prompt TEXT] [--tokens N] [--temperature T]
                              [--top-k K] [--seed S] [--backend float|golden|integer|sim|board]
                              [--design forward|linear] [--board icebreaker|ulx3s] [--port DEV]

``integer`` the whole forward in integers on the host (`golden.int_forward`),
            sampler included: the reference every whole-forward hardware back-end
            must equal token for token (``--compiled DIR`` runs an artefact
            written by ``golden.export --compiled``);
``sim``     the board top in Verilator, UART pins included, driven by the host
            client a real board gets;
``board``   a real board over its serial port (``--port``).

The iCEBreaker holds the linear codes in SPRAM, which the bitstream cannot
set: the board reads them from its SPI flash at reset (96 KiB for the
default model, beside the constants: `hdl.code_boot`), and the host only
waits until its identity says they are in (`boards.forward_protocol.open_board`);
``sim`` does the same over the simulated flash pins.

With ``--design forward`` (the default) ``sim`` and ``board`` run the whole
forward on the FPGA (`boards.forward_top`): the host sends the prompt's ids
and the settings (`boards.forward_protocol`) and prints each token as the
board sends it; they give exactly the ``integer`` back-end's tokens for the
same prompt, settings and seed. ``--backend sim --board icebreaker|ulx3s``
picks the top (and ``--context`` the positions it holds); the Verilator build
is cached in build/forward-sim/. Bad input (a prompt longer than the board's
context, ids outside the vocabulary, a top-k of 0 or above it, a temperature
whose ``round(256 / T)`` does not fit 16 bits) is refused before anything is
built or sent.

With ``--design linear`` (the earlier design) the host does embeddings, layer
norm, attention, GELU, softmax, the head and the per-channel scales, and only
each linear layer's integer work goes to the back-end:

``float``   the float model (no quantization), for comparison;
``golden``  the numpy integer datapath (`golden.datapath`);
``sim``     the engine's emitted Verilog in Verilator, kept alive across tokens;
``board``   the iCEBreaker's linear build over its UART, through the host driver.

`golden`, linear `sim` and linear `board` return the same integers, so for the
same seed they produce the same text; `float` and `golden` sample in floating
point, so their text is their own. Tokens are decoded one at a time with a KV
cache, so each step sends one token through every layer (batch-1 decode).
"""

import argparse
import sys
import time

import numpy as np

from golden.cli import HelpFormatter, UserError, run
from golden.checkpoint import load_checkpoint
from golden.gpt2 import KVCache
from golden.model_loading import load_integer_model
from golden.paths import HARDWARE_MODEL_DIR
from golden.pot_format import DEFAULT_BITS
from golden.tokens import add_calib_arguments, load_tokenizer

from .forward_protocol import inv_temperature

__all__ = ["BACKENDS", "DESIGNS", "Generator", "TokenGenerator", "IntegerGenerator", "decoded", "inv_temperature",
           "main"]

BACKENDS = ("float", "golden", "integer", "sim", "board")
DESIGNS = ("forward", "linear")


class Generator:
    """Sampling from a model whose linear layers are computed by `linear` (see `golden.gpt2`)."""

    def __init__(self, model, vocab, linear=None):
        self.model, self.vocab, self.linear = model, vocab, linear

    def stream(self, prompt, tokens, *, temperature=1.0, top_k=None, seed=0):
        """Yield the generated text one token at a time (see `decoded`).

        The context is the prompt plus what has been generated, up to the
        model's n_positions; generation stops there.
        """
        ids = prompt_ids(self.vocab, prompt, self.model.config.n_positions)
        return decoded(self.vocab, self._tokens(ids, tokens, temperature, top_k, seed))

    def _tokens(self, ids, tokens, temperature, top_k, seed):
        limit = self.model.config.n_positions
        rng = np.random.default_rng(seed)
        cache = KVCache()
        logits = self.model.forward(ids.astype(np.int64), linear=self.linear, cache=cache)[-1]
        count = min(tokens, limit - len(ids))
        for index in range(count):
            token = sample(logits, rng, temperature, top_k)
            yield token
            if index + 1 < count:                        # the last token's logits would go unused
                logits = self.model.forward(np.array([token]), linear=self.linear, cache=cache)[-1]


def decoded(vocab, tokens):
    """Yield, per token of `tokens`, the text it adds: what the tokens so far decode to, less what was yielded.

    `vocab` is the checkpoint's tokenizer (`golden.tokens.load_tokenizer`). A byte-level BPE token can end
    inside a UTF-8 character; such a token yields "" and the character comes whole with the token that ends
    it (or, if generation stops first, as the tokenizer decodes the part)."""
    generated, shown = [], ""
    for token in tokens:
        generated.append(int(token))
        text = vocab.decode(generated)
        if text.endswith("\ufffd"):
            yield ""
            continue
        yield text[len(shown):]
        shown = text
    if generated and shown != (text := vocab.decode(generated)):
        yield text[len(shown):]


def prompt_ids(vocab, prompt, limit, holder="model"):
    """The prompt's token ids; UserError when it is empty or fills the context of `limit` positions (the
    `holder`'s: the model's, or the board's)."""
    ids = vocab.encode(prompt)
    if len(ids) == 0:
        raise UserError("The prompt is empty; give at least one character")
    if len(ids) >= limit:
        raise UserError(f"The prompt has {len(ids)} tokens; the {holder}'s context is {limit}")
    return ids


class TokenGenerator:
    """Sampling by a whole-forward generator of token ids: `generate(ids, count, *, inv_temperature, top_k,
    seed)` (`golden.int_forward.IntegerForward.generate`, `boards.forward_protocol.ForwardClient.generate`,
    `boards.forward_sim.ForwardSim.tokens`), holding `context` positions."""

    def __init__(self, generate, vocab, context):
        self.generate, self.vocab, self.context = generate, vocab, context

    def stream(self, prompt, tokens, *, temperature=1.0, top_k=None, seed=0):
        """Yield the generated text one token at a time (same contract as `Generator.stream`)."""
        ids = prompt_ids(self.vocab, prompt, self.context)
        return decoded(self.vocab, self.generate(ids, tokens, inv_temperature=inv_temperature(temperature),
                                                 top_k=top_k, seed=seed))


class IntegerGenerator(TokenGenerator):
    """Sampling from the whole integer forward (`golden.int_forward.IntegerForward`), sampler included."""

    def __init__(self, forward, vocab):
        super().__init__(forward.generate, vocab, forward.config.n_positions)
        self.forward = forward


def sample(logits, rng, temperature, top_k):
    """A token from softmax(logits / temperature) restricted to the top k (temperature 0: argmax)."""
    logits = np.asarray(logits, np.float64)
    if temperature == 0:
        return int(np.argmax(logits))
    logits = logits / temperature
    if top_k is not None and top_k < logits.size:
        logits = np.where(logits < np.sort(logits)[-top_k], -np.inf, logits)
    probs = np.exp(logits - logits.max())
    return int(rng.choice(logits.size, p=probs / probs.sum()))


def make_linear(backend, integer_model, args):
    """The pluggable linear of a back-end, and its session (None for float and golden)."""
    if backend == "float":
        return None, None
    if backend == "golden":
        return integer_model.linear, None
    if backend == "sim":
        from sim.engine_session import EngineSession
        session = EngineSession(integer_model, rows=args.rows, columns=args.cols)
    else:
        from boards.host import BoardSession
        session = BoardSession.open(args.port, integer_model)
    return integer_model.offloaded_linear(session.accumulate), session


def compiled_model(args, vocab):
    """The whole forward's artefact: ``--compiled`` read back, or the checkpoint compiled now."""
    from golden.artefact import read_compiled
    from golden.compile import compile_checkpoint

    compiled = read_compiled(args.compiled)[1] if args.compiled else compile_checkpoint(args.checkpoint, bits=args.bits,
                                                                                          calib=args.calib)
    if compiled.config.vocab_size != vocab.size:
        raise UserError(f"The compiled model has {compiled.config.vocab_size} tokens, the vocabulary {vocab.size}")
    return compiled


def integer_generator(args, vocab):
    """The integer back-end: a compiled artefact (``--compiled``) or the checkpoint compiled now."""
    from golden.int_forward import IntegerForward
    from golden.int_ops import seed_state

    inv_temperature(args.temperature)
    seed_state(args.seed)
    compiled = compiled_model(args, vocab)
    if args.top_k is not None and args.top_k > vocab.size:
        raise UserError(f"--top-k must be at most the vocabulary size {vocab.size}, not {args.top_k}")
    return IntegerGenerator(IntegerForward(compiled), vocab)


def forward_generator(args, vocab):
    """The whole-forward design's sim or board back-end, and its session. Every request is checked
    (`boards.forward_protocol.check_generate`) before the Verilator build or the first byte to the board."""
    from .forward_protocol import check_generate, open_board
    from .forward_top import default_context

    settings = {"inv_temperature": inv_temperature(args.temperature), "top_k": args.top_k, "seed": args.seed}
    compiled = compiled_model(args, vocab)
    if args.backend == "board":
        client = open_board(args.port, compiled, baud=args.baud)
        ids = prompt_ids(vocab, args.prompt, client.identity.context, "board")
        check_generate(ids, args.tokens, vocab_size=vocab.size, context=client.identity.context, **settings)
        return TokenGenerator(client.generate, vocab, client.identity.context), client.port
    from .forward_sim import ForwardSim
    n_positions = compiled.config.n_positions
    context = default_context(args.board, compiled) if args.context is None else args.context
    if not 1 <= context <= n_positions:
        raise UserError(f"--context must be 1 to the model's {n_positions} positions, not {context}")
    ids = prompt_ids(vocab, args.prompt, context, "board")
    check_generate(ids, args.tokens, vocab_size=vocab.size, context=context, **settings)
    def say(message):
        print(f"boards.generate: {message}", file=sys.stderr, flush=True)
    session = ForwardSim(compiled, board=args.board, context=context, say=say)
    if session.top.boot is not None:
        say(f"the {args.board} reads its codes ({session.top.core.linear.code_banks.size:,} words) from the "
            f"simulated SPI flash at reset")
    return TokenGenerator(session.tokens, vocab, context), session


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="python -m boards.generate", formatter_class=HelpFormatter,
        description="Generate text on the whole-forward FPGA design (a board or its simulation), or on the host.",
        epilog="examples:\n  python -m boards.generate --prompt 'ROMEO:' --tokens 200\n"
               "  python -m boards.generate --backend integer --seed 7 --top-k 10\n"
               "  python -m boards.generate --backend sim --board icebreaker --tokens 60 --seed 7 --top-k 10\n"
               "  python -m boards.generate --backend board --port /dev/ttyUSB1 --tokens 60\n"
               "  python -m boards.generate --backend sim --design linear --tokens 16 --seed 1")
    parser.add_argument("--checkpoint", metavar="PATH", default=str(HARDWARE_MODEL_DIR),
                        help="GPT-2 checkpoint with its tokenizer beside it: the project's character vocab.json, "
                             "or Hugging Face's tokenizer.json or GPT-2's vocab.json + merges.txt")
    parser.add_argument("--prompt", metavar="TEXT", default="ROMEO:\n", help="text to continue")
    parser.add_argument("--tokens", metavar="N", type=int, default=200, help="tokens to generate")
    parser.add_argument("--temperature", metavar="T", type=float, default=0.8, help="sampling temperature (0: greedy)")
    parser.add_argument("--top-k", metavar="K", type=int, default=None, help="sample among the K likeliest only")
    parser.add_argument("--seed", metavar="S", type=int, default=0, help="sampling seed")
    parser.add_argument("--backend", choices=BACKENDS, default="golden",
                        help="where the model runs (sim and board: the --design on an FPGA)")
    parser.add_argument("--design", choices=DESIGNS, default="forward",
                        help="sim and board: the whole forward on the FPGA, or only its linear layers")
    parser.add_argument("--board", choices=("icebreaker", "ulx3s"), default="icebreaker",
                        help="forward sim: the board top to simulate")
    parser.add_argument("--context", metavar="N", type=int, default=None,
                        help="forward sim: positions the top holds (default: the board's, 64 on the iCEBreaker, "
                             "the model's on the ULX3S)")
    parser.add_argument("--baud", metavar="BAUD", type=int, default=3_000_000, help="board: the UART's rate")
    parser.add_argument("--bits", metavar="B", type=int, default=DEFAULT_BITS, help="weight code bits")
    parser.add_argument("--rows", metavar="R", type=int, default=1, help="array rows (linear sim back-end)")
    parser.add_argument("--cols", metavar="C", type=int, default=16, help="array columns (linear sim back-end)")
    parser.add_argument("--port", metavar="DEV", help="serial port of the board (board back-end)")
    parser.add_argument("--compiled", metavar="DIR", help="integer and forward back-ends: run this golden.export "
                                                          "--compiled folder (default: compile the checkpoint)")
    add_calib_arguments(parser)
    parser.add_argument("--stats", action="store_true", help="print tokens/s on stderr at the end")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.tokens < 1:
        raise UserError(f"--tokens must be a positive integer, not {args.tokens}")
    if args.temperature < 0:
        raise UserError(f"--temperature must be >= 0, not {args.temperature}")
    if args.top_k is not None and args.top_k < 1:
        raise UserError(f"--top-k must be a positive integer, not {args.top_k}")
    if args.context is not None and args.context < 1:
        raise UserError(f"--context must be a positive integer, not {args.context}")
    if args.backend == "board" and not args.port:
        raise UserError("The board back-end needs --port (e.g. /dev/ttyUSB1); without a board, use --backend sim")
    forward = args.backend == "integer" or (args.backend in ("sim", "board") and args.design == "forward")
    if args.compiled and not forward:
        raise UserError(f"--compiled runs on the integer back-end or the forward design, not {args.backend}"
                        + (f" with --design {args.design}" if args.backend in ("sim", "board") else ""))
    vocab = load_tokenizer(args.checkpoint, load_checkpoint(args.checkpoint).config.vocab_size)
    if vocab is None:
        raise UserError(f"The checkpoint {args.checkpoint} has no tokenizer beside it (vocab.json, tokenizer.json, "
                        f"or vocab.json + merges.txt) to encode the prompt and decode what it generates")
    vocab.encode(args.prompt)                                        # a bad character fails before any work
    if args.backend == "integer":
        generator, session = integer_generator(args, vocab), None
    elif forward:
        generator, session = forward_generator(args, vocab)
    else:
        integer_model = load_integer_model(args.checkpoint, bits=args.bits, calib=args.calib)
        linear, session = make_linear(args.backend, integer_model, args)
        generator = Generator(integer_model.model, vocab, linear)
    start, count = time.perf_counter(), 0
    try:
        sys.stdout.write(args.prompt)
        for text in generator.stream(args.prompt, args.tokens, temperature=args.temperature, top_k=args.top_k,
                                     seed=args.seed):
            sys.stdout.write(text)
            sys.stdout.flush()
            count += 1
    finally:
        if session is not None:
            session.close()
    sys.stdout.write("\n")
    if args.stats:
        seconds = time.perf_counter() - start
        cycles = getattr(session, "cycles", None)
        per_token = f", {cycles / (count + len(args.prompt) - 1):.0f} simulated cycles per token" if cycles else ""
        if hasattr(session, "tokens_per_s"):
            rate, first = session.tokens_per_s()
            per_token = (f"; the simulated {args.board} at {session.top.frequency / 1e6:g} MHz: {rate:.0f} tokens/s "
                         f"(UART included), first token {first * 1e3:.2f} ms after the request")
            if session.boot_s is not None:
                per_token += f"; codes read from the flash {session.boot_s * 1e3:.2f} ms of simulated time after reset"
        print(f"{args.backend}: {count} tokens in {seconds:.2f} s, {count / seconds:.1f} tokens/s{per_token}",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    run(main, "python -m boards.generate")
