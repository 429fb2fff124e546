"""GPT-2 in numpy: the reference forward pass that every other model is checked against.

The model reads as nanoGPT's ``model.py`` does: token and position embeddings,
``n_layer`` pre-norm blocks (ln_1, causal self-attention, ln_2, MLP), a final
layer norm and a head tied to the token embedding (or not). Everything is
float32, as in a torch float32 forward.

The four linear layers of every block -- ``attn.c_attn``, ``attn.c_proj``,
``mlp.c_fc``, ``mlp.c_proj`` -- go through one pluggable function
``linear(name, x)``, so the same forward runs with float weights, with
power-of-two weights, or with the integer datapath of the accelerator. The
head is not a pluggable layer: the host computes it.

Weights use the Hugging Face Conv1D layout ``(in, out) = (K, N)``: a linear
layer is ``x @ W + b``. Loading checkpoints lives in :mod:`golden.checkpoint`.
"""

import math
from dataclasses import dataclass

import numpy as np

from .activations import ACTIVATIONS, REFUSED, erf, gelu, gelu_new

__all__ = ["GPT2Config", "GPT2", "KVCache", "ACTIVATIONS", "erf", "gelu", "gelu_new"]


# -- configuration ---------------------------------------------------------------------

@dataclass(frozen=True)
class GPT2Config:
    """Shape of a GPT-2 model.

    Parameters
    ----------
    vocab_size, n_positions, n_embd, n_layer, n_head : int
        Vocabulary size, context length, width, depth and attention heads;
        ``n_embd`` must be a multiple of ``n_head``.
    activation : str
        The MLP activation, a name of transformers' ``ACT2FN`` (`golden.activations`):
        ``"gelu_new"`` (GPT-2's tanh approximation), ``"gelu"`` (exact, nanoGPT's), ...
    layer_norm_epsilon : float
        Added to the variance in every layer norm.
    tied_head : bool
        True when the head is the token embedding ``wte``; False when the model
        has its own ``lm_head.weight``.
    n_inner : int or None
        Width of the MLP's hidden layer (``mlp.c_fc``'s outputs); None is GPT-2's ``4 * n_embd``.
    scale_attn_weights : bool
        Divide the attention scores by ``sqrt(head_dim)`` (GPT-2 does).
    scale_attn_by_inverse_layer_idx : bool
        Also divide block ``i``'s attention scores by ``i + 1`` (Mistral's GPT-2 option).
    reorder_and_upcast_attn : bool
        transformers' mixed-precision option: the scale is applied inside the
        score matmul, in float32. In a float32 forward it computes the same
        scores, so it is recorded and changes nothing here.

    Raises
    ------
    ValueError
        When a field is out of range; the message repeats the bad value.
    """

    vocab_size: int
    n_positions: int
    n_embd: int
    n_layer: int
    n_head: int
    activation: str = "gelu_new"
    layer_norm_epsilon: float = 1e-5
    tied_head: bool = True
    n_inner: int | None = None
    scale_attn_weights: bool = True
    scale_attn_by_inverse_layer_idx: bool = False
    reorder_and_upcast_attn: bool = False

    def __post_init__(self):
        for field in ("vocab_size", "n_positions", "n_embd", "n_layer", "n_head"):
            value = getattr(self, field)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{field} must be a positive integer, not {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"n_embd must be a multiple of n_head, not {self.n_embd!r} with n_head {self.n_head!r}")
        if self.activation in REFUSED:
            raise ValueError(f"activation {self.activation!r} is not supported: {REFUSED[self.activation]}")
        if self.activation not in ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} is not supported; "
                             f"supported: {', '.join(map(repr, ACTIVATIONS))}")
        if isinstance(self.layer_norm_epsilon, bool) or not (
                isinstance(self.layer_norm_epsilon, (int, float)) and 0 < self.layer_norm_epsilon < 1):
            raise ValueError(f"layer_norm_epsilon must be a float in (0, 1), not {self.layer_norm_epsilon!r}")
        if self.n_inner is not None and (not isinstance(self.n_inner, (int, np.integer))
                                         or isinstance(self.n_inner, bool) or self.n_inner < 1):
            raise ValueError(f"n_inner must be a positive integer or None, not {self.n_inner!r}")
        for field in ("tied_head", "scale_attn_weights", "scale_attn_by_inverse_layer_idx",
                      "reorder_and_upcast_attn"):
            if not isinstance(getattr(self, field), bool):
                raise ValueError(f"{field} must be a bool, not {getattr(self, field)!r}")

    @property
    def head_dim(self):
        return self.n_embd // self.n_head

    @property
    def inner_dim(self):
        """Width of the MLP's hidden layer: ``n_inner``, or ``4 * n_embd`` when it is None."""
        return 4 * self.n_embd if self.n_inner is None else int(self.n_inner)

    def attention_scale(self, block):
        """The factor block ``block``'s attention scores ``q . k`` are multiplied by, as transformers takes it."""
        scale = 1 / math.sqrt(self.head_dim) if self.scale_attn_weights else 1.0
        if self.scale_attn_by_inverse_layer_idx:
            scale /= float(block + 1)
        return scale

    def param_shapes(self):
        """Canonical parameter name -> shape, in forward order."""
        d, f, shapes = self.n_embd, self.inner_dim, {"wte": (self.vocab_size, self.n_embd), "wpe": (self.n_positions, self.n_embd)}
        for i in range(self.n_layer):
            for name, shape in (("ln_1.weight", (d,)), ("ln_1.bias", (d,)),
                                ("attn.c_attn.weight", (d, 3 * d)), ("attn.c_attn.bias", (3 * d,)),
                                ("attn.c_proj.weight", (d, d)), ("attn.c_proj.bias", (d,)),
                                ("ln_2.weight", (d,)), ("ln_2.bias", (d,)),
                                ("mlp.c_fc.weight", (d, f)), ("mlp.c_fc.bias", (f,)),
                                ("mlp.c_proj.weight", (f, d)), ("mlp.c_proj.bias", (d,))):
                shapes[f"h.{i}.{name}"] = shape
        shapes.update({"ln_f.weight": (d,), "ln_f.bias": (d,)})
        if not self.tied_head:
            shapes["lm_head.weight"] = (self.vocab_size, d)
        return shapes


# -- the model -------------------------------------------------------------------------

class KVCache:
    """The keys and values of the tokens a model has seen, per block.

    Passed to :meth:`GPT2.forward`, it lets generation feed only the new tokens
    (so each step's linear layers see one token: the batch-1 decode of the
    array); the logits are those of the whole sequence.
    """

    def __init__(self):
        self.keys, self.values = {}, {}
        self.length = 0


class GPT2:
    """A GPT-2 language model: a :class:`GPT2Config` and its float32 parameters.

    Parameters
    ----------
    config : GPT2Config
    params : dict of str to numpy.ndarray
        Exactly the names of ``config.param_shapes()`` with those shapes, all
        finite. They are stored as read-only float32 views; use
        :meth:`with_weights` for a model with other weights.

    Members
    -------
    linear_names : list of str
        ``"h.{i}.attn.c_attn"``, ``"h.{i}.attn.c_proj"``, ``"h.{i}.mlp.c_fc"``,
        ``"h.{i}.mlp.c_proj"`` for every block, in the order the forward calls them.

    Raises
    ------
    ValueError
        On a missing or unexpected tensor, a wrong shape, or NaN/Inf values;
        the message names the tensor.
    """

    def __init__(self, config, params):
        if not isinstance(config, GPT2Config):
            raise TypeError(f"config must be a GPT2Config, not {config!r}")
        shapes = config.param_shapes()
        for problem, names in (("missing", [name for name in shapes if name not in params]),
                               ("unexpected", sorted(set(params) - set(shapes)))):
            if names:
                more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
                raise ValueError(f"{problem} tensor {names[0]!r}{more}")
        self.config = config
        self.params = {}
        for name, shape in shapes.items():
            array = np.asarray(params[name])
            if array.shape != shape:
                raise ValueError(f"tensor {name!r} has shape {array.shape}, expected {shape}")
            array = array.astype(np.float32, copy=False).view()
            bad = array.size - np.count_nonzero(np.isfinite(array))
            if bad:
                raise ValueError(f"tensor {name!r} has {bad} NaN/Inf values")
            array.flags.writeable = False
            self.params[name] = array
        self.linear_names = [f"h.{i}.{layer}" for i in range(config.n_layer)
                             for layer in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")]

    def __repr__(self):
        return f"GPT2({self.config!r})"

    def weight(self, name):
        """The ``(K, N)`` float32 weight of linear layer ``name``."""
        return self.params[self._check_linear_name(name) + ".weight"]

    def bias(self, name):
        """The ``(N,)`` float32 bias of linear layer ``name``."""
        return self.params[self._check_linear_name(name) + ".bias"]

    def with_weights(self, weights):
        """A copy of this model with the weights of some linear layers replaced.

        ``weights`` maps linear names (as in :attr:`linear_names`) to ``(K, N)``
        arrays; everything else is shared with this model (it is read-only).
        """
        params = dict(self.params)
        for name, array in weights.items():
            params[self._check_linear_name(name) + ".weight"] = array
        return GPT2(self.config, params)

    def forward(self, tokens, linear=None, cache=None, head=True):
        """Logits, float32 ``(T, vocab)`` for tokens ``(T,)`` or ``(B, T, vocab)`` for ``(B, T)``.

        ``linear(name, x)`` computes every block's linear layer ``name`` on
        ``x`` of shape ``(..., K)`` and returns ``(..., N)``; None is the float
        layer ``x @ W + b``. With a :class:`KVCache`, ``tokens`` continue the
        sequence the cache has seen, and the cache grows by them. With
        ``head=False`` the head is skipped and the result is the final layer
        norm's output ``(..., d)``: what a caller that only watches the linear
        layers (calibration) needs, without GPT-2's 50,257-wide logits.
        """
        start = cache.length if cache is not None else 0
        batch = self._check_tokens(tokens, "tokens", start)                          # (B, T)
        linear = self._float_linear if linear is None else linear
        lin = lambda name, x: self._call(linear, name, x)  # noqa: E731
        act = ACTIVATIONS[self.config.activation]
        x = self.params["wte"][batch] + self.params["wpe"][start:start + batch.shape[1]]   # (B, T, d)
        for i in range(self.config.n_layer):
            h = f"h.{i}."
            qkv = lin(h + "attn.c_attn", self._norm(h + "ln_1", x))
            x = x + lin(h + "attn.c_proj", self._attention(qkv, cache, i))
            x = x + lin(h + "mlp.c_proj", act(lin(h + "mlp.c_fc", self._norm(h + "ln_2", x))))
        if cache is not None:
            cache.length += batch.shape[1]
        x = self._norm("ln_f", x)
        if not head:
            return x if np.ndim(tokens) == 2 else x[0]
        weight = self.params["wte" if self.config.tied_head else "lm_head.weight"]   # (vocab, d)
        logits = _matmul(x, weight.T)                                                # (B, T, vocab)
        return logits if np.ndim(tokens) == 2 else logits[0]

    def loss(self, tokens, targets, linear=None):
        """Mean cross-entropy, in nats, of predicting ``targets`` (same shape as ``tokens``)."""
        if np.shape(targets) != np.shape(tokens):
            raise ValueError(f"targets must have the shape of tokens {np.shape(tokens)}, not {np.shape(targets)}")
        targets = self._check_tokens(targets, "targets").reshape(-1)
        logits = self.forward(tokens, linear).reshape(targets.size, -1)
        top = logits.max(axis=-1, keepdims=True)
        logits -= top                                                              # in place: (B T, vocab)
        picked = logits[np.arange(targets.size), targets]
        np.exp(logits, out=logits)
        log_z = np.log(logits.sum(axis=-1))                                        # log-sum-exp, less top
        return float(np.mean(log_z - picked, dtype=np.float64))

    # -- pieces of the forward ---------------------------------------------------------

    def _attention(self, qkv, cache=None, block=None):
        """Causal multi-head self-attention on the c_attn output ``(B, T, 3d)`` -> ``(B, T, d)``."""
        B, T, _ = qkv.shape
        H, hd = self.config.n_head, self.config.head_dim
        q, k, v = np.ascontiguousarray(qkv.reshape(B, T, 3, H, hd).transpose(2, 0, 3, 1, 4))  # (B, H, T, hd)
        start = 0
        if cache is not None:
            if block in cache.keys:
                start = cache.keys[block].shape[2]
                k = np.concatenate([cache.keys[block], k], axis=2)                  # (B, H, start + T, hd)
                v = np.concatenate([cache.values[block], v], axis=2)
            cache.keys[block], cache.values[block] = k, v
        scale = np.float32(self.config.attention_scale(block or 0))
        out = np.empty_like(q)                                                     # (B, H, T, hd)
        for first in range(0, T, _QUERY_BLOCK):     # causal: a block of queries needs the keys up to its last
            last = min(T, first + _QUERY_BLOCK)
            seen = start + last
            att = q[:, :, first:last] @ k[:, :, :seen].swapaxes(-1, -2)          # (B, H, last - first, seen)
            att *= scale
            att += np.triu(np.full((last - first, seen), -np.inf, dtype=np.float32), start + first + 1)  # mask
            att -= att.max(axis=-1, keepdims=True)
            np.exp(att, out=att)
            att /= att.sum(axis=-1, keepdims=True)
            np.matmul(att, v[:, :, :seen], out=out[:, :, first:last])
        return out.transpose(0, 2, 1, 3).reshape(B, T, H * hd)

    def _norm(self, name, x):
        """Layer norm ``name`` (``h.{i}.ln_1``, ``h.{i}.ln_2`` or ``ln_f``) over the last axis."""
        mean = x.mean(axis=-1, keepdims=True)
        centered = x - mean
        var = (centered * centered).mean(axis=-1, keepdims=True)
        eps = np.float32(self.config.layer_norm_epsilon)
        return centered / np.sqrt(var + eps) * self.params[name + ".weight"] + self.params[name + ".bias"]

    def _float_linear(self, name, x):
        return _matmul(x, self.params[name + ".weight"]) + self.params[name + ".bias"]

    def _call(self, linear, name, x):
        """Run the pluggable linear and check that it kept the shape contract."""
        y = linear(name, x)
        n = self.params[name + ".bias"].shape[0]
        if np.shape(y) != x.shape[:-1] + (n,):
            raise ValueError(f"linear {name!r} returned shape {np.shape(y)}, expected {x.shape[:-1] + (n,)}")
        return np.asarray(y, dtype=np.float32)

    def _check_linear_name(self, name):
        if name not in self.linear_names:
            raise KeyError(f"{name!r} is not a linear layer; they are {self.linear_names[0]!r} ... {self.linear_names[-1]!r}")
        return name

    def _check_tokens(self, tokens, what, start=0):
        """Token ids as an int64 ``(B, T)`` array; ``(T,)`` becomes ``(1, T)``."""
        array = np.asarray(tokens)
        if array.dtype.kind not in "iu":
            raise ValueError(f"{what} must be integers, not {array.dtype}")
        if array.ndim not in (1, 2) or array.shape[-1] == 0:
            raise ValueError(f"{what} must have shape (T,) or (B, T) with T >= 1, not {array.shape}")
        if start + array.shape[-1] > self.config.n_positions:
            seen = f" after {start} cached" if start else ""
            raise ValueError(f"{what} length {array.shape[-1]}{seen} exceeds n_positions {self.config.n_positions}")
        if array.size and (array.min() < 0 or array.max() >= self.config.vocab_size):
            bad = array[(array < 0) | (array >= self.config.vocab_size)].flat[0]
            raise ValueError(f"{what} holds id {bad}, outside the vocabulary [0, {self.config.vocab_size})")
        return array.astype(np.int64, copy=False).reshape(-1, array.shape[-1])


#: Queries whose causal attention is computed at once: a longer sequence goes in blocks, each against the keys
#: it can see, so scores stay in cache and the masked half is not computed. Sequences up to this length
#: take one block (every shipped model: the same float operations as one whole-sequence pass).
_QUERY_BLOCK = 128


def _matmul(x, w):
    """``x (..., K) @ w (K, N)`` as one 2-D BLAS call."""
    return (x.reshape(-1, x.shape[-1]) @ w).reshape(x.shape[:-1] + (w.shape[1],))
