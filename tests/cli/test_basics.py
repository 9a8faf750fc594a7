import subprocess
import sys

import pytest

import scalelab
from scalelab.cli import main


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"scalelab {scalelab.__version__}"


def test_import_is_light():
    code = ("import sys, scalelab, scalelab.theory, scalelab.nn, scalelab.lora;"
            "bad=[m for m in ('transformers','peft','accelerate','matplotlib') if m in sys.modules];"
            "print(bad); sys.exit(1 if bad else 0)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


def test_help_on_every_command(capsys):
    import typer

    from scalelab.cli import app

    names = [c.name for c in typer.main.get_command(app).commands.values()]
    assert "reproduce" in names
    for name in names:
        assert main([name, "--help"]) == 0, name
        assert "Usage" in capsys.readouterr().out


def test_bad_input_is_one_line_exit_2(capsys):
    assert main(["reproduce", "no-such-experiment"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: unknown experiment 'no-such-experiment'")
    assert "\n" not in err


@pytest.mark.parametrize("argv", [["no-such-command"], ["reproduce"]])
def test_usage_errors_exit_2(argv, capsys):
    assert main(argv) == 2


def test_console_script_exit_status():
    r = subprocess.run([sys.executable, "-m", "scalelab", "reproduce", "nope"],
                       capture_output=True, text=True)
    assert r.returncode == 2
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_check_out_dir_is_the_one_output_folder_rule(tmp_path, capsys):
    from scalelab.errors import check_out_dir

    assert check_out_dir("--out", tmp_path / "new") == tmp_path / "new"  # need not exist
    assert check_out_dir("--out", str(tmp_path)) == tmp_path
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(ValueError, match=r"^--out must be a directory, got a file: '.*f\.txt'$"):
        check_out_dir("--out", tmp_path / "f.txt")
    # The commands that write into --out use it: one line, exit 2, before any work.
    for argv in (["reproduce", "eoc-curves", "--quick"], ["finetune"]):
        assert main([*argv, "--out", str(tmp_path / "f.txt")]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert err[-1] == f"error: --out must be a directory, got a file: {str(tmp_path / 'f.txt')!r}"
