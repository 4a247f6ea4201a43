"""The ``study`` command and ``python -m minireg --version``: tables, files, progress, bad options."""
import json
import subprocess
import sys

import pytest

import minireg
from minireg.__main__ import main
from minireg.study import runner

pytest.importorskip("sklearn", reason="the digits ship with scikit-learn")


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == 0 and capsys.readouterr().out.strip() == f"minireg {minireg.__version__}"


@pytest.mark.parametrize("command", ["study", "gan"])
def test_help_lists_the_tasks_and_options(command, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([command, "--help"])
    out = capsys.readouterr().out
    assert exit_info.value.code == 0 and "--out" in out
    if command == "study":
        assert "cnn-fashion" in out and "30% label noise" in out and "--cv K" in out


def test_linear_task_writes_paths_and_the_table(tmp_path, capsys):
    assert main(["study", "--task", "linear-diabetes", "--seeds", "3", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "test R^2 mean [95% CI]" in out and "vs none" in out and "lasso" in out
    saved = json.loads((tmp_path / "results.json").read_text())
    lasso = next(f for f in saved["families"] if f["name"] == "lasso")
    assert len(lasso["chosen_strength"]) == 3 and lasso["metric"] == "test_r2"
    assert len(lasso["path"]) == 21 and {"validation", "test", "zero_fraction"} <= set(lasso["path"][0])
    assert lasso["path"][-1]["zero_fraction"]["mean"] == 1.0        # alpha 100: every coefficient exactly 0
    pytest.importorskip("matplotlib")
    for name in ("coefficient_paths.png", "comparison.png", "paths/lasso.png", "paths/ridge.png"):
        assert (tmp_path / name).stat().st_size > 0
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") >= 5 and "<script" not in html


def test_classification_progress_bar_and_figures(tmp_path, capsys):
    pytest.importorskip("tqdm")
    assert main(["study", "--task", "cnn-digits", "--only", "none,dropout", "--seeds", "2", "--epochs", "1",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "study: 100%" in captured.err and "10/10" in captured.err and "run/s" in captured.err
    assert "dropout" in captured.out
    pytest.importorskip("matplotlib")
    for name in ("learning_curves.png", "weight_histograms.png", "paths/dropout.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_bad_out_fails_before_any_run(monkeypatch, capsys):
    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--out", "/proc/forbidden", "--quiet"])
    assert exit_info.value.code == 2
    assert "--out '/proc/forbidden' is not a writable directory" in capsys.readouterr().err


def test_command_line_process(tmp_path):
    done = subprocess.run([sys.executable, "-m", "minireg", "study", "--only", "none,dropout", "--seeds", "2",
                           "--epochs", "1", "--out", str(tmp_path), "--quiet"], capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr
    assert "test accuracy mean [95% CI]" in done.stdout and "\ndropout " in done.stdout
    assert (tmp_path / "results.csv").exists() and (tmp_path / "report.html").exists()
