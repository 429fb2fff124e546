#!/usr/bin/env bash
# Set up potgen on a fresh machine: the Python package with every extra, and Icarus Verilog.
# Safe to run again: it only installs what is missing.
set -euo pipefail
cd "$(dirname "$0")"
python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
if ! command -v iverilog >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iverilog) >/dev/null \
            || echo "setup.sh: could not install iverilog; the Icarus runs will skip" >&2
    else
        echo "setup.sh: iverilog missing; install it (apt-get install iverilog) for the Icarus runs" >&2
    fi
fi
