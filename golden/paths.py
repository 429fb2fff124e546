"""Where potgen's shipped data and generated output live.

Every module that needs the embedded default model, the corpus it was trained
on, or the `build/` folder asks here, so that the locations have one definition.
"""

from pathlib import Path

__all__ = ["PACKAGE_DIR", "REPO_DIR", "SHAKESPEARE_TEXT", "DEFAULT_MODEL_DIR", "HARDWARE_MODEL_DIR", "BUILD_DIR"]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent

#: Tiny Shakespeare (public domain), the corpus of the default model.
SHAKESPEARE_TEXT = PACKAGE_DIR / "data" / "tinyshakespeare.txt"

#: The embedded default model: a Hugging Face GPT-2 directory (config.json,
#: model.safetensors, vocab.json) with its token splits train.bin and val.bin.
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "shakespeare_char"

#: The model the hardware runs unless told otherwise: the default model after
#: 4-bit PoT quantization-aware training (``python -m golden.qat --bits 4``, its
#: ``qat.json`` records how). Its weights are already PoT values, so at 4 bits
#: it quantizes to exactly the codes it was trained with, and its val CE is
#: within 0.01 of the float model's, against +0.17 for the float model rounded.
#: The float model stays the reference of the quality study (`golden.eval`).
HARDWARE_MODEL_DIR = PACKAGE_DIR / "models" / "shakespeare_char_qat4"

#: Generated output only (Verilog, bitstreams, reports, ROM images); git-ignored.
BUILD_DIR = REPO_DIR / "build"
