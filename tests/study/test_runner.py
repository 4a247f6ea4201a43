"""The study's runner: a study is a pure function of its config (serial, --jobs 2 and Dask give the
same numbers), the cache resumes without recomputing, choices never read the test split, failed
runs are recorded, options are checked before the first run, and Dask waits are bounded."""
import json
import os
import time

import numpy as np
import pytest

from minireg.errors import ArgumentError, MissingDataError
from minireg.study import data as study_data
from minireg.study import families as study_families
from minireg.study import runner
from minireg.study.runner import StudyError, run_study

pytest.importorskip("sklearn", reason="the digits ship with scikit-learn")
TINY = dict(task="mlp-digits", only="none,l2,dropout", seeds=2, epochs=2, progress=False, figures=False)
L2_GRID = study_families.FAMILIES["l2"].grid
DROPOUT_GRID = study_families.FAMILIES["dropout"].grid


def _numbers(result):
    """Everything a study computes except the seconds: families and every run's result."""
    def strip(value):
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in ("seconds", "train_seconds")}
        if isinstance(value, list):
            return [strip(v) for v in value]
        return value
    runs = sorted((r for r in result.summary["runs"]), key=lambda r: r["key"])
    return strip(result.summary["families"]), strip([{"key": r["key"], "result": r["result"]} for r in runs])


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    out = tmp_path_factory.mktemp("serial")
    return out, run_study(**TINY, out=str(out))


def test_results_json_has_the_families_list(serial):
    out, result = serial
    saved = json.loads((out / "results.json").read_text())
    names = [f["name"] for f in saved["families"]]
    assert names == ["none", "l2", "dropout"]
    for family in saved["families"]:
        assert len(family["chosen_strength"]) == 2
        accuracy = family["test_accuracy"]
        assert set(accuracy) >= {"mean", "ci95", "per_seed"} and len(accuracy["per_seed"]) == 2
        lo, hi = accuracy["ci95"]
        assert lo <= accuracy["mean"] <= hi
        for column in ("generalization_gap", "zero_fraction", "weight_l2_norm"):
            assert len(family[column]["per_seed"]) == 2
    by_name = {f["name"]: f for f in saved["families"]}
    assert by_name["none"]["vs_none"] is None and by_name["none"]["chosen_strength"] == [None, None]
    vs = by_name["l2"]["vs_none"]
    assert set(vs) >= {"mean_diff", "ci95"} and vs["mean_diff"] == pytest.approx(
        np.mean(np.subtract(by_name["l2"]["test_accuracy"]["per_seed"], by_name["none"]["test_accuracy"]["per_seed"])))
    assert set(by_name["l2"]["chosen_strength"]) <= set(study_families.FAMILIES["l2"].grid)
    # every run: its config, metrics and history; every grid point of every family and seed
    assert len(saved["runs"]) == 2 * (1 + len(L2_GRID) + len(DROPOUT_GRID))
    run = saved["runs"][0]
    assert run["config"]["task"] == "mlp-digits" and len(run["result"]["history"]["val_accuracy"]) == 2
    assert (out / "results.csv").read_text().startswith("family,chosen_strength,test_accuracy_mean")
    markdown = (out / "results.md").read_text()
    assert "| l2 |" in markdown and "vs none" in markdown
    html = (out / "report.html").read_text()
    assert "<table>" in html and "vs none" in html and "http" not in html.split("<body>")[1]


def test_jobs_2_gives_the_same_numbers(serial, tmp_path):
    pytest.importorskip("joblib")
    assert _numbers(run_study(**TINY, jobs=2, out=str(tmp_path))) == _numbers(serial[1])


def test_local_dask_cluster_gives_the_same_numbers(serial, tmp_path):
    distributed = pytest.importorskip("distributed", reason="the Dask path needs dask[distributed] (test extra)")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as cluster:
        result = run_study(**TINY, dask_scheduler=cluster.scheduler_address, out=str(tmp_path))
    assert _numbers(result) == _numbers(serial[1])
    assert result.summary["settings"]["executor"] == "dask"


def test_resume_after_an_interruption_recomputes_nothing_that_finished(tmp_path, monkeypatch):
    real_run = study_families.FAMILIES["l2"].build
    calls, interrupt = [], [True]

    def counting(net, strength):
        calls.append(strength)
        if interrupt[0] and len(calls) == 3:
            raise KeyboardInterrupt          # the study is interrupted during its third l2 run
        return real_run(net, strength)
    monkeypatch.setitem(study_families.FAMILIES, "l2",
                        study_families.dataclasses.replace(study_families.FAMILIES["l2"], build=counting))
    options = dict(TINY, only="none,l2", seeds=1, out=str(tmp_path))
    with pytest.raises(KeyboardInterrupt):
        run_study(**options)
    finished = set(os.listdir(tmp_path / "cache"))
    assert len(finished) == 3                # none and two l2 strengths
    calls.clear()
    interrupt[0] = False
    result = run_study(**options)
    assert calls == list(L2_GRID[2:])        # only the l2 strengths that had not finished
    calls.clear()
    extended = run_study(**dict(options, seeds=2))
    assert calls == list(L2_GRID) and len(extended.summary["runs"]) == 2 * (1 + len(L2_GRID))   # the new seed only
    assert _numbers(result)[1] == [r for r in _numbers(extended)[1] if r["key"] in
                                   {x["key"] for x in result.summary["runs"]}]


def _poisoned(monkeypatch):
    real = study_data.load_images.__wrapped__

    def poisoned(dataset, flat):
        train, (x_test, y_test) = real(dataset, flat)
        return train, (x_test, (y_test + 1 + np.arange(len(y_test)) % 9) % 10)     # every test label wrong
    monkeypatch.setattr(study_data, "load_images", poisoned)


@pytest.mark.parametrize("cv", [None, 2])
def test_the_choice_never_reads_the_test_split(tmp_path, monkeypatch, cv):
    options = dict(TINY, only="none,l2,dropout", cv=cv)
    clean = run_study(**options, out=str(tmp_path / "clean"))
    _poisoned(monkeypatch)
    poisoned = run_study(**options, out=str(tmp_path / "poisoned"))
    for a, b in zip(clean.summary["families"], poisoned.summary["families"]):
        assert a["chosen_strength"] == b["chosen_strength"]
        assert b["test_accuracy"]["mean"] < 0.2 < a["test_accuracy"]["mean"]       # the poison did arrive
    if cv:
        selection = [r for r in poisoned.summary["runs"] if r["config"]["fold"] is not None]
        assert selection and all(r["result"]["test"] is None for r in selection)
        refits = [r for r in poisoned.summary["runs"] if r["config"]["fold"] is None]
        assert len(refits) == 3 * 2 and all(r["result"]["validation"] is None for r in refits)


def test_a_failing_run_is_recorded_and_the_study_goes_on(tmp_path, monkeypatch):
    real = study_families.FAMILIES["l2"].build

    def fragile(net, strength):
        if strength == 1e-2:
            raise FloatingPointError("diverged")
        return real(net, strength)
    monkeypatch.setitem(study_families.FAMILIES, "l2",
                        study_families.dataclasses.replace(study_families.FAMILIES["l2"], build=fragile))
    result = run_study(**dict(TINY, only="none,l2"), out=str(tmp_path))
    failed = result.summary["failed"]
    assert len(failed) == 2 and all("FloatingPointError: diverged" in f["error"] for f in failed)
    l2 = result.summary["families"][1]
    assert l2["failed_runs"] == 2 and 1e-2 not in l2["chosen_strength"] and len(l2["test_accuracy"]["per_seed"]) == 2
    # failures are not cached: a resume retries them
    assert len(os.listdir(tmp_path / "cache")) == 2 * (1 + len(L2_GRID) - 1)


@pytest.mark.parametrize("options, message", [
    (dict(out="/proc/forbidden"), "--out '/proc/forbidden' is not a writable directory"),
    (dict(cv=1), "--cv must be an integer >= 2"),
    (dict(seeds=0), "--seeds must be an integer >= 1"),
    (dict(only="none,dropuot"), "has no family 'dropuot' \\(did you mean 'dropout'\\?\\)"),
    (dict(task="cnn-fasion"), "--task must be one of.*did you mean 'cnn-fashion'"),
    (dict(task="gan-digits", only=None, cv=3), "--cv: the GAN tasks"),
    (dict(task="gan-digits", only=None, num_eval=3), "--num-eval must be an integer >= 100"),
    (dict(task="linear-diabetes", only=None, epochs=3), "--epochs: linear-diabetes has no training epochs"),
    (dict(jobs=2, dask_scheduler="tcp://127.0.0.1:1"), "either --jobs or --dask-scheduler"),
    (dict(num_eval=500), "--num-eval applies to the GAN tasks only"),
])
def test_options_are_checked_before_the_first_run(tmp_path, monkeypatch, options, message):
    monkeypatch.setattr(runner, "execute", lambda *a, **k: pytest.fail("a run started"))
    with pytest.raises(ArgumentError, match=message):
        run_study(**{**TINY, "out": str(tmp_path / "out"), **options})


def test_missing_fashion_mnist_gives_the_install_hint(tmp_path, monkeypatch):
    import minireg.datasets
    monkeypatch.setattr(minireg.datasets, "FASHION_MNIST_PATH", str(tmp_path / "nothing"))
    with pytest.raises(MissingDataError, match="apt-get install .*dataset-fashion-mnist"):
        run_study(task="cnn-fashion", out=str(tmp_path / "out"), progress=False)


def test_an_unanswering_dask_scheduler_is_an_error_after_a_short_wait(tmp_path):
    pytest.importorskip("distributed")
    start = time.monotonic()
    with pytest.raises(StudyError, match="no Dask scheduler answered within 1 s"):
        run_study(**TINY, dask_scheduler="tcp://127.0.0.1:9", connect_timeout=1.0, out=str(tmp_path))
    assert time.monotonic() - start < 20


def test_a_cluster_without_workers_stops_the_study_instead_of_hanging(tmp_path):
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=0, host="127.0.0.1", dashboard_address=None) as cluster:
        start = time.monotonic()
        with pytest.raises(StudyError, match="no worker for 1 s"):
            run_study(**TINY, dask_scheduler=cluster.scheduler_address, worker_grace=1.0, out=str(tmp_path))
        assert time.monotonic() - start < 30
