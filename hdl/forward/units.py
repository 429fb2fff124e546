# amaranth: UnusedElaboratable=no
"""Every whole-forward unit sized from a compiled artefact (golden's `CompiledModel`).

The widths come from the artefact, not from constants here: the
accumulator of the widest linear layer, the largest requantiser shift, the
layer norms' row length and formats, the tables of the first layer.
"""

import numpy as np

from golden.datapath import pot_acc_bits

from .attention_unit import AttentionUnit
from .decode_linear import DecodeLinear
from .head_unit import head_for, head_tied
from .embedding_unit import EmbeddingUnit
from .exp2_unit import Exp2Unit
from .gelu_table import GeluTable
from .isqrt_unit import IsqrtUnit
from .layer_norm_unit import LayerNormUnit
from .reciprocal_unit import ReciprocalUnit
from .requantizer import Requantizer
from .serial_requantizer import SerialRequantizer
from .sampler import Sampler
from .xorshift32 import Xorshift32

__all__ = ["FLASH_NORM_SERIAL_SHIFT_BITS", "linear_acc_bits", "requantizer_for", "layer_norm_for", "attention_for", "sampler_for", "embedding_for",
           "gelu_for", "decode_linear_for", "units_for"]

#: `LayerNormUnit.serial_shift_bits` of a core whose constants come from the flash (the iCEBreaker's, short of
#: logic cells, its token bound by the flash stream): the whole normalising shift one place a cycle (38 LC fewer
#: for the default model, about 8 cycles more an element); a block-RAM core (the ULX3S's) keeps the log shifter.
FLASH_NORM_SERIAL_SHIFT_BITS = 6


def linear_acc_bits(compiled):
    """The exact accumulator width of the widest linear layer (codes, activations and bias of the artefact)."""
    t, f = compiled.tensors, compiled.formats
    widths = [pot_acc_bits(t[op["name"] + ".codes"].shape[0], f.act_bits, compiled.bits,
                           int(np.abs(t[op["name"] + ".bias"]).max()))
              for op in compiled.program if op["op"] == "linear"]
    return max(widths)


def requantizer_for(compiled, *, to="act"):
    """The linear layers' `Requantizer`: onto activations (``to="act"``) or the residual (``"residual"``)."""
    t, f = compiled.tensors, compiled.formats
    shifts = [int(np.max(t[op["name"] + ".shift"])) for op in compiled.program if op["op"] == "linear"]
    return Requantizer(acc_bits=linear_acc_bits(compiled), mult_bits=f.mult_bits,
                       shift_bits=max(1, max(shifts).bit_length()),
                       out_bits=f.act_bits if to == "act" else f.res_bits)


def layer_norm_for(compiled, *, serial_shift_bits=0):
    """The `LayerNormUnit` of the artefact's row length and formats (eps port as wide as its eps; the
    smallest eps and the range of the layer norms' shifts bound its shifters); `serial_shift_bits` as the
    unit's."""
    f, t = compiled.formats, compiled.tensors
    names = [op["name"] for op in compiled.program if op["op"] == "layer_norm"]
    eps = [int(t[name + ".eps"]) for name in names]
    shifts = [int(t[name + ".shift"]) for name in names]
    return LayerNormUnit(d=compiled.config.n_embd, res_bits=f.res_bits, frac_bits=f.ln_frac_bits,
                         inv_bits=f.ln_inv_bits, gamma_bits=f.ln_gamma_bits, eps_bits=max(1, max(eps).bit_length()),
                         eps_min=max(1, min(eps)), gamma_shift_range=(min(shifts), max(shifts)), out_bits=f.act_bits,
                         serial_shift_bits=serial_shift_bits)


def attention_for(compiled, *, positions=None, lanes=1, groups=1):
    """The `AttentionUnit` of `compiled` with a KV cache of `positions` (default: the model's context) and
    `lanes` channels per cycle; with `groups` (dividing ``n_head``), the unit of one group of
    ``n_head / groups`` heads (``d / groups`` channels), of which `groups` work side by side. Its
    shifter covers the layers' ``attn.score.shift`` and ``attn.out.shift`` values only, and it knows their
    ``attn.score.mult`` range (for `AttentionUnit.compact`)."""
    c, f, t = compiled.config, compiled.formats, compiled.tensors
    if c.n_head % groups:
        raise ValueError(f"attention groups must divide n_head {c.n_head}, not {groups}")
    shifts = [int(t[f"h.{i}.attn.score.shift"]) for i in range(c.n_layer)]
    outs = [int(t[f"h.{i}.attn.out.shift"]) for i in range(c.n_layer)]
    mults = [int(t[f"h.{i}.attn.score.mult"]) for i in range(c.n_layer)]
    return AttentionUnit(d=c.n_embd // groups, n_head=c.n_head // groups, n_layer=c.n_layer, positions=positions or c.n_positions,
                         act_bits=f.act_bits, table=t["exp2.lut"], exp_frac_bits=f.exp_frac_bits,
                         exp_bits=f.exp_bits, recip_bits=f.recip_bits, avg_frac_bits=f.avg_frac_bits,
                         mult_bits=f.mult_bits, lanes=lanes, score_shifts=(min(shifts), max(shifts)),
                         out_shifts=(min(outs), max(outs)), score_mults=(min(mults), max(mults)))


def sampler_for(compiled):
    """The `Sampler` of `compiled`'s vocabulary and formats."""
    f = compiled.formats
    t = compiled.tensors
    return Sampler(vocab_size=compiled.config.vocab_size, logit_bits=f.logit_bits, table=t["exp2.lut"],
                   exp_frac_bits=f.exp_frac_bits, exp_bits=f.exp_bits, logit_mult=int(t["sampler.logit.mult"]),
                   logit_shift=int(t["sampler.logit.shift"]))


def embedding_for(compiled, *, lanes=None):
    """The `EmbeddingUnit` of `compiled`'s integer tables (``tables="int"``); with `lanes`, holding wte for a
    tied head of that many lanes."""
    t, f = compiled.tensors, compiled.formats
    if f.tables != "int":
        raise ValueError(f"the embedding unit reads integer tables, not tables={f.tables!r}")
    return EmbeddingUnit(wte=t["wte.table"], wpe=t["wpe.table"], wte_mult=t["wte.mult"], wte_shift=t["wte.shift"],
                         wpe_mult=t["wpe.mult"], wpe_shift=t["wpe.shift"], res_bits=f.res_bits, lanes=lanes)


def gelu_for(compiled, layer=0):
    """The `GeluTable` of layer `layer` of `compiled`."""
    return GeluTable(table=compiled.tensors[f"h.{layer}.mlp.gelu"], act_bits=compiled.formats.act_bits)


def decode_linear_for(compiled, name, *, rows=4, columns=3):
    """The `DecodeLinear` of linear layer `name` of `compiled` on a ``rows x columns`` split-K array."""
    t, f = compiled.tensors, compiled.formats
    to = next(op["to"] for op in compiled.program if op["op"] == "linear" and op["name"] == name)
    return DecodeLinear(codes=t[name + ".codes"], bias=t[name + ".bias"], mult=t[name + ".mult"],
                        shift=t[name + ".shift"], bits=compiled.bits, act_bits=f.act_bits,
                        out_bits=f.act_bits if to == "act" else f.res_bits, rows=rows, columns=columns,
                        mult_bits=f.mult_bits)


def units_for(compiled, *, cache_positions=4):
    """``{name: component}`` of every unit, sized from `compiled`.

    The attention unit's KV cache is given `cache_positions` positions: at the
    model's context the cache is SPRAM's (262 Kbit at 64 positions for the
    default model), which synthesis alone would spread over logic.
    """
    t, f = compiled.tensors, compiled.formats
    ln = layer_norm_for(compiled)
    root_bits = (ln.d_bits + 1) // 2
    units = {
        "requantizer (to act)": requantizer_for(compiled, to="act"),
        "requantizer (to residual)": requantizer_for(compiled, to="residual"),
        "isqrt": IsqrtUnit(value_bits=ln.d_bits),
        "reciprocal": ReciprocalUnit(value_bits=root_bits, bits=f.ln_inv_bits),
        "layer norm": ln,
        "layer norm (serial shift: the flash core's)": layer_norm_for(
            compiled, serial_shift_bits=FLASH_NORM_SERIAL_SHIFT_BITS),
        "exp2": Exp2Unit(table=t["exp2.lut"], frac_bits=f.exp_frac_bits, exp_bits=f.exp_bits, z_bits=24),
        "gelu table": gelu_for(compiled),
        "xorshift32": Xorshift32(),
        "sampler": sampler_for(compiled),
        f"attention (cache of {cache_positions} positions)": attention_for(compiled, positions=cache_positions),
        f"attention, 4 lanes (cache of {cache_positions} positions)": attention_for(compiled,
                                                                                 positions=cache_positions, lanes=4),
    }
    if f.tables == "int":
        units["embedding"] = embedding_for(compiled)
        if head_tied(compiled):
            units["embedding (wte for a tied 4-lane head)"] = embedding_for(compiled, lanes=4)
    units["decode linear c_attn (4x3 PEs)"] = decode_linear_for(compiled, "h.0.attn.c_attn")
    try:
        units["head (4 lanes)"] = head = head_for(compiled, lanes=4)
        units["serial requantizer (head's)"] = SerialRequantizer(acc_bits=head.acc_bits, mult_bits=f.mult_bits,
                                                                 shift_range=head.shift_range, out_bits=f.logit_bits)
        if head_tied(compiled):
            units["head (4 lanes, tied: table in the embedding)"] = head_for(compiled, lanes=4, shared_table=True)
    except ValueError:                          # a PoT head table: not the head unit's format
        pass
    from .linear_residual import LinearResidual
    from .sequencer import LayerNormLinear

    units["linear to residual: mlp.c_proj + add (4x3)"] = LinearResidual(compiled=compiled, linear="h.0.mlp.c_proj")

    units["sequencer stage 1: ln_1 + c_attn"] = LayerNormLinear(compiled=compiled, norm="h.0.ln_1",
                                                                linear="h.0.attn.c_attn")
    return units
