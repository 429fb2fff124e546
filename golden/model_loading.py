"""From a checkpoint path to the quantized model the hardware runs, with the usual defaults.

Every command that starts from a checkpoint (emit, vectors, export, build, the
host driver, generation) goes through `load_integer_model`, so they agree on
what "the default model", "its calibration text" and "its val text" mean.
"""

from .checkpoint import load_checkpoint
from .cli import UserError
from .data import default_split, read_tokens
from .datapath import DEFAULT_ACT_BITS
from .integer_model import quantize_model
from .paths import DEFAULT_MODEL_DIR
from .pot_format import DEFAULT_BITS
from .quantize import DEFAULT_METHOD
from .tokens import calibration_tokens, checkpoint_dir, read_token_file

__all__ = ["DEFAULT_CALIB_TOKENS", "checkpoint_dir", "split_tokens", "calibration_windows", "load_integer_model"]

DEFAULT_CALIB_TOKENS = 8192


def split_tokens(checkpoint, split, vocab_size, explicit=None, option="--data"):
    """Tokens of `explicit` (a .bin or .txt file, given as `option`) or of the checkpoint's own `split`."""
    if explicit:
        return read_token_file(explicit, checkpoint, vocab_size)
    path = default_split(checkpoint_dir(checkpoint), split)
    if path is None:
        raise UserError(f"No {split} text: give {option} FILE (a uint16 .bin token file or a UTF-8 .txt); "
                        f"the checkpoint {checkpoint} has no {split}.bin beside it")
    return read_tokens(path, vocab_size=vocab_size)


def calibration_windows(model, checkpoint, calib=None, calib_tokens=DEFAULT_CALIB_TOKENS, block=None, data=None):
    """Calibration inputs (W, block) of `golden.tokens.calibration_tokens` (`calib`, train.bin, val.bin, `data`)."""
    from .eval import windows
    tokens = calibration_tokens(checkpoint, model.config.vocab_size, calib, data).tokens
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
