"""From a checkpoint path to the quantized model the hardware runs, with the usual defaults.

Every command that starts from a checkpoint (emit, vectors, export, build, the
host driver, generation) goes through `load_integer_model`, so they agree on
what "the default model", "its calibration text" and "its val text" mean.
"""

from pathlib import Path

from .checkpoint import load_checkpoint
from .cli import UserError
from .data import default_split, read_tokens
from .datapath import DEFAULT_ACT_BITS
from .integer_model import quantize_model
from .paths import DEFAULT_MODEL_DIR
from .pot_format import DEFAULT_BITS
from .quantize import DEFAULT_METHOD

__all__ = ["DEFAULT_CALIB_TOKENS", "checkpoint_dir", "split_tokens", "calibration_windows", "load_integer_model"]

DEFAULT_CALIB_TOKENS = 8192


def checkpoint_dir(checkpoint):
    """The folder a checkpoint's vocab.json and token splits sit in."""
    path = Path(checkpoint or DEFAULT_MODEL_DIR)
    return path if path.is_dir() else path.parent


def split_tokens(checkpoint, split, vocab_size, explicit=None):
    """Tokens of `explicit` (a .bin path) or of the checkpoint's own `split` ("train" / "val")."""
    path = Path(explicit) if explicit else default_split(checkpoint_dir(checkpoint), split)
    if path is None:
        raise UserError(f"The checkpoint {checkpoint} has no {split}.bin beside it; give a token file")
    return read_tokens(path, vocab_size=vocab_size)


def calibration_windows(model, checkpoint, calib=None, calib_tokens=DEFAULT_CALIB_TOKENS, block=None):
    """Calibration inputs (W, block) from `calib` or the checkpoint's train split (else its val split)."""
    from .eval import windows
    try:
        tokens = split_tokens(checkpoint, "train", model.config.vocab_size, calib)
    except UserError:
        tokens = split_tokens(checkpoint, "val", model.config.vocab_size)
    return windows(tokens, block or model.config.n_positions, calib_tokens)[0]


def load_integer_model(checkpoint=None, *, bits=DEFAULT_BITS, method=DEFAULT_METHOD, act_bits=DEFAULT_ACT_BITS,
                       pe="pot", pot_scale=False, calib=None, calib_tokens=DEFAULT_CALIB_TOKENS, names=None):
    """Load `checkpoint` (default: the embedded model) and quantize it as the array holds it.

    Returns an `IntegerModel` whose layers are `names` (all linear layers by default).
    """
    checkpoint = checkpoint or DEFAULT_MODEL_DIR
    model = load_checkpoint(checkpoint)
    if names:
        unknown = [name for name in names if name not in model.linear_names]
        if unknown:
            raise UserError(f"No linear layer {unknown[0]!r} in {checkpoint}; it has "
                            f"{model.linear_names[0]} .. {model.linear_names[-1]} ({len(model.linear_names)} layers)")
    calib_inputs = calibration_windows(model, checkpoint, calib, calib_tokens)
    return quantize_model(model, calib_tokens=calib_inputs, bits=bits, method=method, pot_scale=pot_scale,
                          act_bits=act_bits, pe=pe, names=names)
