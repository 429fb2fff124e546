"""The batch-1 decode mapping of the PoT array and what it costs: beats, PE utilisation, code bandwidth.

    python -m hdl.forward.decode_plan [--checkpoint DIR] [--shapes 2x16,4x3,...] [--json]

Why a new mapping
    Today's engine is output-stationary: row ``r`` of the R x C array holds
    token ``r``'s outputs, weights flow down the columns and are shared by
    all rows. Batch-1 decode has one token, so one row works and the array
    runs at ``1 / R`` of its PEs (50 % on the iCEBreaker's 2 x 16).

The mapping (`hdl.forward.decode_linear.DecodeLinear`)
    Split K: row ``r`` takes K chunk ``r`` (``ceil(K / R)`` activations of the
    one token, from its own bank), column ``c`` output channel
    ``tile * C + c``; every PE gets its own code each beat (one ROM word of
    ``R * C`` codes). A tile is ``ceil(K / R)`` beats and one drain beat;
    the ``R`` partial sums of a column are added at the drain (plus the
    bias) and requantised while the next tile runs. A layer of ``K x N``
    takes ``ceil(N / C) (ceil(K / R) + 1)`` beats; utilisation is
    ``K N / (R C beats)``: below 1 only by the drain beat and by the padding
    of ``K`` and ``N`` to the array.

What bounds it: the code stream
    Without batch, every code is used once per token, so the array needs
    ``R C b`` bits of codes per beat. On the UP5K the codes live in SPRAM, 16
    bits per SPRAM per cycle; the default model's codes (4-bit) fill exactly
    3 of the 4 SPRAMs (786,432 bits), which deliver 48 bits = 12 codes per
    cycle. So 12 PEs can be kept busy at the SPRAMs' clock, and a larger
    array only waits: the 2 x 16 array (128 bits per beat) would be
    bandwidth-bound at 12 / 32 = 37.5 %. The 4th SPRAM holds the KV cache:
    ``2 n_layer P d act_bits`` bits give the default model ``P = 64``.

`plan` computes these figures for any compiled model and array shape.
"""

import argparse
import json

from golden.cli import ArgumentParser, HelpFormatter, positive_int, run

__all__ = ["SPRAM_BITS", "SPRAM_WIDTH", "linear_shapes", "plan", "spram_context", "main"]

#: One iCE40UP5K SPRAM: 256 Kbit, read 16 bits per cycle.
SPRAM_BITS, SPRAM_WIDTH, UP5K_SPRAMS = 256 * 1024, 16, 4


def linear_shapes(compiled):
    """``[(name, K, N, on_array)]`` of every product of one token: the linear layers, then the head.

    ``on_array`` is False for a head of integer weights (``"int"`` format:
    8-bit integers, which the PoT array cannot multiply).
    """
    t, f = compiled.tensors, compiled.formats
    shapes = [(op["name"], *t[op["name"] + ".codes"].shape, True) for op in compiled.program if op["op"] == "linear"]
    table = next(op.get("table", "wte.table") for op in compiled.program if op["op"] == "head")
    kind = f.tables if table == "wte.table" else f.head
    head = t[table]
    return shapes + [("head", head.shape[1], head.shape[0], kind == "pot")]


def _ceil(a, b):
    return -(-a // b)


def plan(compiled, *, rows, columns, mapping="split-k", code_bits_per_cycle=None):
    """Beats and utilisation of one decode token's linear layers on a ``rows x columns`` array.

    Parameters
    ----------
    mapping : "split-k" or "output-stationary"
        This module's mapping, or today's (one row busy).
    code_bits_per_cycle : int or None
        The code store's bandwidth; None: unbounded.

    Returns
    -------
    dict
        ``layers`` (per product: K, N, beats, MACs), ``beats``, ``macs``,
        ``utilisation`` (MACs over PE beats), ``code_bits`` per token,
        ``bandwidth_beats`` (beats the code stream needs at
        `code_bits_per_cycle`), ``bound_beats`` (the larger) and
        ``bound_utilisation``.
    """
    if mapping not in ("split-k", "output-stationary"):
        raise ValueError(f"mapping must be 'split-k' or 'output-stationary', not {mapping!r}")
    layers, bits = [], compiled.bits
    for name, k, n, on_array in linear_shapes(compiled):
        if not on_array:
            continue
        chunk = _ceil(k, rows) if mapping == "split-k" else k
        beats = _ceil(n, columns) * (chunk + 1)
        layers.append({"name": name, "k": k, "n": n, "beats": beats, "macs": k * n})
    beats = sum(layer["beats"] for layer in layers)
    macs = sum(layer["macs"] for layer in layers)
    code_bits = macs * bits
    bandwidth_beats = _ceil(code_bits, code_bits_per_cycle) if code_bits_per_cycle else 0
    bound = max(beats, bandwidth_beats)
    pes = rows * columns
    return {"mapping": mapping, "rows": rows, "columns": columns, "pes": pes, "layers": layers, "beats": beats,
            "macs": macs, "utilisation": macs / (pes * beats), "code_bits": code_bits,
            "code_bits_per_beat": (pes if mapping == "split-k" else columns) * bits, "bandwidth_beats": bandwidth_beats, "bound_beats": bound,
            "bound_utilisation": macs / (pes * bound)}


def spram_context(compiled, *, sprams=UP5K_SPRAMS):
    """``(code_sprams, context)``: SPRAMs the linear codes fill, and the KV cache positions the rest hold."""
    c, f = compiled.config, compiled.formats
    code_bits = sum(k * n for _, k, n, on_array in linear_shapes(compiled)[:-1]) * compiled.bits
    code_sprams = _ceil(code_bits, SPRAM_BITS)
    per_position = 2 * c.n_layer * c.n_embd * f.act_bits
    return code_sprams, max(0, (sprams - code_sprams) * SPRAM_BITS // per_position)


def _rows_of(compiled, shapes, bandwidth):
    rows = []
    for mapping, r, c in shapes:
        rows.append(plan(compiled, rows=r, columns=c, mapping=mapping, code_bits_per_cycle=bandwidth))
    return rows


def _shapes(text):
    """An argparse type: ``RxC`` (split-K) or ``os:RxC`` (output-stationary) items, comma-separated."""
    shapes = []
    for item in text.split(","):
        mapping, _, size = item.rpartition(":")
        try:
            r, c = (int(v) for v in size.lower().split("x"))
            if r < 1 or c < 1 or mapping not in ("", "os"):
                raise ValueError
        except ValueError:
            raise argparse.ArgumentTypeError(f"array shape {item!r} is not RxC or os:RxC with positive R and C") \
                from None
        shapes.append(("output-stationary" if mapping == "os" else "split-k", r, c))
    return shapes


def main(argv=None):
    p = ArgumentParser(
        prog="python -m hdl.forward.decode_plan", formatter_class=HelpFormatter,
        description="Beats, PE utilisation and code bandwidth of one decode token's linear layers, for today's "
                    "output-stationary mapping and the split-K mapping, on given array shapes.",
        epilog="example: python -m hdl.forward.decode_plan --shapes os:2x16,2x16,4x3,1x12")
    p.add_argument("--checkpoint", metavar="DIR", default=None, help="checkpoint (default: the hardware model)")
    p.add_argument("--bits", metavar="b", type=positive_int, default=4, help="PoT code width")
    p.add_argument("--shapes", type=_shapes, default="os:2x16,2x16,4x4,4x3,1x12",
                   help="comma-separated RxC (split-K) or os:RxC (output-stationary)")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    args = p.parse_args(argv)
    from golden.compile import compile_checkpoint

    compiled = compile_checkpoint(args.checkpoint, bits=args.bits)
    code_sprams, context = spram_context(compiled)
    bandwidth = code_sprams * SPRAM_WIDTH
    rows = _rows_of(compiled, args.shapes, bandwidth)
    if args.json:
        print(json.dumps({"code_sprams": code_sprams, "code_bits_per_cycle": bandwidth, "kv_context": context,
                          "plans": rows}, indent=1))
        return 0
    print(f"codes fill {code_sprams} SPRAM(s) ({bandwidth} bits per cycle); the rest holds a KV cache of "
          f"{context} positions")
    for name, k, n, on_array in linear_shapes(compiled):
        if not on_array:
            print(f"not on the PoT array: {name} ({k} x {n} = {k * n} MACs of integer table weights)")
    print(f"{'mapping':<19}{'array':>7}{'PEs':>5}{'beats':>8}{'util':>7}{'bits/beat':>11}{'bound beats':>13}"
          f"{'bound util':>12}")
    for r in rows:
        print(f"{r['mapping']:<19}{r['rows']:>4}x{r['columns']:<2}{r['pes']:>5}{r['beats']:>8}"
              f"{100 * r['utilisation']:>6.1f}%{r['code_bits_per_beat']:>11}{r['bound_beats']:>13}"
              f"{100 * r['bound_utilisation']:>11.1f}%")
    return 0


if __name__ == "__main__":
    run(main, "python -m hdl.forward.decode_plan")
