"""What every potgen command line shares: user mistakes become one line, not a traceback.

A command's ``main(argv)`` raises ValueError (CheckpointError and DataError are
ValueErrors), TypeError, OSError or `ToolError` for bad input or a missing tool;
`run` prints ``prog: message`` on stderr and exits with status 2. A Python
package missing from the user's environment (an extra not installed) becomes
one line naming the package to install. Set ``POTGEN_DEBUG=1`` to see the
traceback instead.

This module is the command lines' common ground: golden, hdl and boards all
import it, so it knows no hardware (`ToolError` is any external program's
failure; `hdl.toolchain` raises it for the FPGA tools).
"""

import argparse
import os
import sys

__all__ = ["UserError", "ToolError", "run", "HelpFormatter", "ArgumentParser", "positive_int"]

#: Python modules of potgen's extras -> what to install when one is missing.
PACKAGES = {
    "amaranth": "amaranth[builtin-yosys]",
    "amaranth_boards": "amaranth-boards",
    "cocotb": "cocotb",
    "cocotb_tools": "cocotb",
    "cocotbext": "cocotbext-uart",
    "matplotlib": "matplotlib",
    "serial": "pyserial",
    "tokenizers": "tokenizers",
    "torch": "torch==2.13.0",
    "transformers": "transformers",
}


class UserError(ValueError):
    """A mistake in what the user asked for; its message is the whole story."""


class ToolError(RuntimeError):
    """An external program is missing or failed; the message is one line fit for a user."""


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Defaults shown in --help, and the epilog's examples kept as written.

    A default is added only where the help does not already say it, and never as "None" or "False"
    (an option with nothing to default to, or a flag)."""

    def _get_help_string(self, action):
        help_text = action.help or ""
        if "default" in help_text or action.default is None or action.default is False \
                or action.default == argparse.SUPPRESS:
            return help_text
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line on stderr (exit status 2), without the usage dump."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def positive_int(text):
    """An argparse type: a positive integer, or the error argparse reports as one line."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, not {value}")
    return value


def missing_package_message(error):
    """The one line for a ModuleNotFoundError of one of potgen's extras (None for any other module)."""
    top = (error.name or "").partition(".")[0]
    if top not in PACKAGES:
        return None
    return (f"the Python package {PACKAGES[top]!r} is not installed (module {error.name!r}); "
            f"run ./setup.sh, or: pip install '{PACKAGES[top]}'")


def run(main, prog, argv=None):
    """Call ``main(argv)`` and exit with its status; user errors exit 2 with one line on stderr."""
    try:
        status = main(argv)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except ModuleNotFoundError as error:
        message = missing_package_message(error)
        if message is None or os.environ.get("POTGEN_DEBUG"):
            raise
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
    except (ValueError, TypeError, OSError, KeyError, ToolError) as error:
        if os.environ.get("POTGEN_DEBUG"):
            raise
        message = error.args[0] if isinstance(error, KeyError) and error.args else error
        print(f"{prog}: error: {message}", file=sys.stderr)
        sys.exit(2)
    sys.exit(status or 0)
