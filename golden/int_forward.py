"""The integer-only GPT-2 forward: runs a `CompiledModel` from token ids to integer logits and tokens.

`IntegerForward` executes the artefact's program (:func:`golden.compile.program_of`)
with :mod:`golden.int_ops` on integer numpy arrays and nothing else: no float
enters after compilation. It runs a whole window at once (evaluation, the
prompt) or one token at a time against an `IntKVCache` (generation, the
hardware's batch-1 decode); the two agree bit for bit, because every operation
but attention is per position and attention sees exactly the cached keys and
values of the positions before.

Exact integer matrix products
    The PoT array's sums, attention scores and weighted values are formed by
    `int_matmul`: one float64 BLAS product when every partial sum is an integer
    below 2**53 (then the product is exact, as in `golden.datapath.pot_matmul`),
    otherwise an int64 product. Either way the result is the exact integer sum.
"""

import numpy as np

from . import int_ops
from .pot_format import PotFormat

__all__ = ["IntKVCache", "IntegerForward", "int_matmul"]

_FLOAT64_EXACT = 1 << 53


def int_matmul(x, w, bound):
    """Exact ``x @ w`` of integer arrays (int64 result); `bound` bounds ``K * max|x| * max|w|``.

    ``w`` may already be float64 (a constant converted once): it must then hold integers.
    """
    if bound < _FLOAT64_EXACT:
        return (np.ascontiguousarray(x, np.float64) @ np.ascontiguousarray(w, np.float64)).astype(np.int64)
    return np.ascontiguousarray(x, np.int64) @ np.ascontiguousarray(w, np.int64)


class IntKVCache:
    """The on-chip KV cache: per layer, keys and values ``act_bits`` signed, ``(B, H, n_positions, hd)`` int8/int16.

    ``length`` positions are filled; the forward appends the new ones.
    """

    def __init__(self, config, act_bits, batch=1):
        dtype = np.int8 if act_bits <= 8 else np.int16
        shape = (config.n_layer, batch, config.n_head, config.n_positions, config.head_dim)
        self.keys, self.values = np.zeros(shape, dtype), np.zeros(shape, dtype)
        self.length = 0


class IntegerForward:
    """A `CompiledModel` ready to run: integer matrices unpacked from codes, constants by name.

    Parameters
    ----------
    compiled : CompiledModel
    """

    def __init__(self, compiled):
        self.compiled = compiled
        self.config, self.formats = compiled.config, compiled.formats
        t = compiled.tensors
        f = self.formats
        self._t = t
        fmt = PotFormat(compiled.bits)
        qmax = 1 << (f.act_bits - 1)
        self._linear = {}
        for op in compiled.program:
            if op["op"] == "linear":
                name = op["name"]
                w = fmt.to_int(t[name + ".codes"]).astype(np.int64)
                bound = w.shape[0] * qmax * (1 << fmt.emax)
                self._linear[name] = (w.astype(np.float64) if bound < _FLOAT64_EXACT else w, bound)
        self._tables = {name: self._table_values(t[name + ".table"], f.tables, f.table_bits) for name in ("wte", "wpe")}
        head_table = next(op["table"] for op in compiled.program if op["op"] == "head")
        kind, bits = (f.tables, f.table_bits) if head_table == "wte.table" else (f.head, f.head_bits)
        head_w = np.ascontiguousarray(self._table_values(t[head_table], kind, bits).T)
        bound = head_w.shape[0] * qmax * int(np.abs(head_w).max())
        self._head = (head_w.astype(np.float64) if bound < _FLOAT64_EXACT else head_w, bound)
        hd = self.config.head_dim
        self._score_bound = hd * qmax * qmax
        self._value_bound = self.config.n_positions * (1 << (f.exp_bits - 1)) * qmax

    @staticmethod
    def _table_values(stored, kind, bits):
        """The integers a table stands for: itself ("int") or its PoT codes' values in units of 2**-Emax."""
        if kind == "int":
            return stored.astype(np.int64)
        return PotFormat(bits).to_int(stored).astype(np.int64)

    @property
    def logit_scale(self):
        """The real value of one logit step (for scoring only)."""
        return self.compiled.scales["logits"]

    def new_cache(self, batch=1):
        return IntKVCache(self.config, self.formats.act_bits, batch)

    def forward(self, tokens, cache=None):
        """Integer logits (int64, ``logit_bits`` signed): ``(T, V)`` for tokens ``(T,)``, ``(B, T, V)`` for ``(B, T)``.

        With a cache, `tokens` continue the sequence it holds and it grows by them.
        """
        ids = np.asarray(tokens, np.int64)
        batch = ids.reshape(-1, ids.shape[-1])
        start = 0 if cache is None else cache.length
        if start + batch.shape[1] > self.config.n_positions:
            raise ValueError(f"{start} cached + {batch.shape[1]} new positions exceed n_positions "
                             f"{self.config.n_positions}")
        if cache is None:
            cache = self.new_cache(batch.shape[0])
        elif cache.keys.shape[1] != batch.shape[0]:
            raise ValueError(f"The cache holds {cache.keys.shape[1]} sequences, not {batch.shape[0]}")
        x = a = logits = None
        for op in self.compiled.program:
            kind = op["op"]
            if kind == "embed":
                x = self._embed(batch, start)
            elif kind == "layer_norm":
                a = self._layer_norm(op["name"], x)
            elif kind == "linear":
                y = self._linear_op(op["name"], a, op["to"])
                if op["to"] == "act":
                    a = y
                else:
                    x = int_ops.saturate(x + y, self.formats.res_bits)
            elif kind == "attention":
                a = self._attention(op["name"], op["layer"], a, cache, start)
            elif kind == "gelu":
                a = int_ops.gelu_lookup(a, self._t[op["name"] + ".gelu"], self.formats.act_bits)
            elif kind == "head":
                logits = self._head_op(a)
            else:
                raise ValueError(f"Unknown operation {kind!r} in the compiled program")
        cache.length = start + batch.shape[1]
        return logits if ids.ndim == 2 else logits[0]

    # -- the operations --------------------------------------------------------------

    def _embed(self, ids, start):
        t, f = self._t, self.formats
        positions = np.arange(start, start + ids.shape[1])
        tok = int_ops.round_shift(self._tables["wte"][ids] * t["wte.mult"][ids][..., None],
                                  t["wte.shift"][ids][..., None])
        pos = int_ops.round_shift(self._tables["wpe"][positions] * t["wpe.mult"][positions][:, None],
                                  t["wpe.shift"][positions][:, None])
        return int_ops.saturate(tok + pos, f.res_bits)

    def _layer_norm(self, name, x):
        t, f = self._t, self.formats
        return int_ops.layer_norm(x, t[name + ".gamma"], t[name + ".beta"], gamma_shift=t[name + ".shift"],
                                  eps=t[name + ".eps"], frac_bits=f.ln_frac_bits, inv_bits=f.ln_inv_bits,
                                  out_bits=f.act_bits)

    def _linear_op(self, name, a, to):
        t, f = self._t, self.formats
        w, bound = self._linear[name]
        acc = int_matmul(a, w, bound) + t[name + ".bias"]
        out_bits = f.act_bits if to == "act" else f.res_bits
        return int_ops.requantize(acc, t[name + ".mult"], t[name + ".shift"], out_bits)

    def _attention(self, name, layer, qkv, cache, start):
        t, f, c = self._t, self.formats, self.config
        B, T, _ = qkv.shape
        q, k, v = qkv.reshape(B, T, 3, c.n_head, c.head_dim).transpose(2, 0, 3, 1, 4)     # (B, H, T, hd)
        end = start + T
        cache.keys[layer, :, :, start:end] = k
        cache.values[layer, :, :, start:end] = v
        keys, values = cache.keys[layer, :, :, :end], cache.values[layer, :, :, :end]
        y = int_ops.attention(q, keys, values, start=start, score_mult=t[name + ".score.mult"],
                              score_shift=t[name + ".score.shift"], table=t["exp2.lut"],
                              exp_frac_bits=f.exp_frac_bits, recip_bits=f.recip_bits, avg_frac_bits=f.avg_frac_bits,
                              out_mult=t[name + ".out.mult"], out_shift=t[name + ".out.shift"], out_bits=f.act_bits,
                              matmul=self._matmul)
        return y.transpose(0, 2, 1, 3).reshape(B, T, c.n_embd)

    def _matmul(self, x, w, kind):
        return int_matmul(x, w, self._score_bound if kind == "scores" else self._value_bound)

    def _head_op(self, a):
        t, f = self._t, self.formats
        w, bound = self._head
        return int_ops.requantize(int_matmul(a, w, bound), t["head.mult"], t["head.shift"], f.logit_bits)

    # -- scoring and sampling ------------------------------------------------------------

    def loss(self, tokens, targets):
        """Mean cross-entropy in nats of `targets` under the integer logits (scored in float64)."""
        logits = self.forward(tokens).reshape(-1, self.config.vocab_size).astype(np.float64) * self.logit_scale
        targets = np.asarray(targets, np.int64).reshape(-1)
        top = logits.max(axis=-1, keepdims=True)
        log_z = np.log(np.exp(logits - top).sum(axis=-1)) + top[:, 0]
        return float(np.mean(log_z - logits[np.arange(targets.size), targets]))

    def sample(self, logits, state, *, inv_temperature, top_k):
        """`golden.int_ops.sample` with this model's compiled constants: (token, next state)."""
        t = self._t
        return int_ops.sample(logits, state, inv_temperature=inv_temperature, top_k=top_k,
                              logit_mult=int(t["sampler.logit.mult"]), logit_shift=int(t["sampler.logit.shift"]),
                              table=t["exp2.lut"], exp_frac_bits=self.formats.exp_frac_bits)

    def generate(self, prompt, count, *, inv_temperature=0, top_k=None, seed=0):
        """Yield up to `count` token ids after `prompt` (ids), stopping at the context length.

        The prompt runs as one window into a fresh KV cache; then each token is
        sampled (`sample`, xorshift32 seeded by `int_ops.seed_state`) and fed back
        alone. The hardware's contract: the same prompt, settings and seed give
        these tokens.
        """
        state = int_ops.seed_state(seed)
        ids = np.asarray(prompt, np.int64)
        cache = self.new_cache()
        logits = self.forward(ids, cache)[-1]
        count = min(count, self.config.n_positions - len(ids))
        for index in range(count):
            token, state = self.sample(logits, state, inv_temperature=inv_temperature, top_k=top_k)
            yield token
            if index + 1 < count:
                logits = self.forward(np.array([token]), cache)[-1]
