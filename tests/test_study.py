"""The regularizer study: table, files, identical numbers however it runs, and bad input."""
import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

from minireg import study
from minireg.__main__ import main

pytest.importorskip("joblib", reason="the study needs joblib: pip install -e '.[study]'")

TINY = dict(only="none,l1_prox,dropout", epochs=2, subset=300, progress=False)
COLUMNS = ["regularizer", "test_accuracy", "train_test_gap", "zero_fraction", "weight_l2_norm", "seconds"]


def _have(module):
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def _numbers(result):
    """Everything the study computes except the wall-clock seconds."""
    return [{k: v for k, v in r.items() if k != "seconds"} for r in result.results]


def _same(a, b):
    assert _numbers(a) == _numbers(b)
    assert list(a.weights) == list(b.weights)
    for name in a.weights:
        np.testing.assert_array_equal(a.weights[name], b.weights[name])


@pytest.fixture(scope="module")
def sequential(tmp_path_factory):
    """The tiny study, one configuration after the other (the reference for the parallel runs)."""
    out = tmp_path_factory.mktemp("study-jobs1")
    return out, study.run_study(**TINY, out=str(out), figures=_have("matplotlib"))


def test_tiny_study_writes_the_table_and_the_files(sequential):
    out, result = sequential
    assert [r["name"] for r in result.results] == ["none", "l1_prox", "dropout"]
    header = result.table.splitlines()[0].split("  ")
    assert [h for h in header if h] == ["regularizer", "test acc", "train-test gap", "zero weights", "weight L2 norm",
                                        "seconds"]
    assert len(result.table.splitlines()) == 2 + 3
    with open(out / "results.csv") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:len(COLUMNS)] == COLUMNS and [r["regularizer"] for r in rows] == ["none", "l1_prox",
                                                                                            "dropout"]
    markdown = (out / "results.md").read_text().splitlines()
    assert markdown[0].startswith("| regularizer | test acc |") and len(markdown) == 2 + 3
    saved = json.loads((out / "results.json").read_text())
    assert saved["settings"]["epochs"] == 2 and saved["settings"]["sizes"] == {"train": 240, "validation": 60,
                                                                                "test": 360}
    for r in saved["results"]:
        assert 0 <= r["test_accuracy"] <= 1 and 0 <= r["zero_fraction"] <= 1 and r["weight_l2_norm"] > 0
        assert r["train_test_gap"] == pytest.approx(r["train_accuracy"] - r["test_accuracy"])
        assert len(r["history"]["val_accuracy"]) == 2
        assert sum(layer["size"] for layer in r["layers"]) == 64 * 256 + 256 * 256 + 256 * 10
    by_name = {r["name"]: r for r in saved["results"]}
    assert by_name["l1_prox"]["zero_fraction"] > 0 == by_name["none"]["zero_fraction"]
    if _have("matplotlib"):
        for name in ("learning_curves.png", "weight_histograms.png", "curves/none.png", "curves/dropout.png"):
            assert os.path.getsize(out / name) > 0


def test_jobs_2_gives_the_same_numbers(sequential, tmp_path):
    _, reference = sequential
    _same(study.run_study(**TINY, jobs=2, out=str(tmp_path), figures=False), reference)


def test_dask_cluster_gives_the_same_numbers(sequential, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the Dask path needs dask[distributed] (in the test "
                                                            "extra)")
    _, reference = sequential
    with distributed.LocalCluster(n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None) as cluster:
        result = study.run_study(**TINY, dask_scheduler=cluster.scheduler_address, out=str(tmp_path), figures=False)
    _same(result, reference)


def test_bad_options_fail_before_training(capsys):
    with pytest.raises(ValueError, match="unknown regularizer name.*bogus.*valid names: " + ", ".join(study.names())):
        study.run_study(only="none,bogus")
    for options, message in ((dict(epochs=0), "--epochs must be an integer >= 1"),
                             (dict(jobs=0), "--jobs must be an integer >= 1"),
                             (dict(only=" , "), "valid names"),
                             (dict(data="cifar"), "--data must be one of")):
        with pytest.raises(ValueError, match=message):
            study.check_options(**options)
    with pytest.raises(SystemExit) as exit_info:
        main(["study", "--only", "bogus"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "bogus" in err and all(name in err for name in study.names())


def test_missing_joblib_names_the_extra(monkeypatch, capsys, tmp_path):
    real = study.importlib_find
    monkeypatch.setattr(study, "importlib_find", lambda module: None if module == "joblib" else real(module))
    assert main(["study", "--only", "none", "--epochs", "1", "--out", str(tmp_path)]) == 1
    assert "pip install 'minireg[study]'" in capsys.readouterr().err
    assert not os.listdir(tmp_path)


def test_command_line(tmp_path):
    out = tmp_path / "tmp"
    done = subprocess.run([sys.executable, "-m", "minireg", "study", "--only", "none,l2", "--epochs", "1", "--out",
                           str(out), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "regularizer" in done.stdout and "\nl2 " in done.stdout
    assert (out / "results.csv").exists() and (out / "results.json").exists()
    if _have("matplotlib"):
        assert (out / "weight_histograms.png").exists() and (out / "learning_curves.png").exists()
    else:
        assert "pip install 'minireg[study]'" in done.stderr


def test_without_matplotlib_the_study_warns_and_writes_no_figures(monkeypatch, tmp_path):
    real = study.importlib_find
    monkeypatch.setattr(study, "importlib_find", lambda module: None if module == "matplotlib" else real(module))
    with pytest.warns(UserWarning, match="no figures"):
        result = study.run_study(only="none", epochs=1, subset=300, progress=False, out=str(tmp_path))
    assert sorted(result.files) == ["csv", "json", "markdown"]
    assert sorted(os.listdir(tmp_path)) == ["results.csv", "results.json", "results.md"]
