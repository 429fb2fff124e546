#!/usr/bin/env bash
# Set up potgen on a fresh machine: the Python package with every extra, and Icarus Verilog.
# Run it inside the virtual environment you want potgen in. Safe to run again: it only installs what is missing.
# It fails, saying why, if anything the README's commands or the test suite need cannot be installed.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
if ! command -v iverilog >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) >/dev/null
    fi
    if ! command -v iverilog >/dev/null; then
        echo "setup.sh: Icarus Verilog (iverilog) is missing and could not be installed here;" \
             "install it as root (apt-get install iverilog) and run ./setup.sh again" >&2
        exit 1
    fi
fi
