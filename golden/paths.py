"""Where potgen's shipped data and generated output live.

Every module that needs the embedded default model, the corpus it was trained
on, or the `build/` folder asks here, so that the locations have one definition.
"""

from pathlib import Path

__all__ = ["PACKAGE_DIR", "REPO_DIR", "SHAKESPEARE_TEXT", "DEFAULT_MODEL_DIR", "BUILD_DIR"]

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_DIR = PACKAGE_DIR.parent

#: Tiny Shakespeare (public domain), the corpus of the default model.
SHAKESPEARE_TEXT = PACKAGE_DIR / "data" / "tinyshakespeare.txt"

#: The embedded default model: a Hugging Face GPT-2 directory (config.json,
#: model.safetensors, vocab.json) with its token splits train.bin and val.bin.
DEFAULT_MODEL_DIR = PACKAGE_DIR / "models" / "shakespeare_char"

#: Generated output only (Verilog, bitstreams, reports, ROM images); git-ignored.
BUILD_DIR = REPO_DIR / "build"
