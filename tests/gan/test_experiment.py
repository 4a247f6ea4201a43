"""The GAN regularization registry, run/compare and the ``gan`` command on real digits (tiny budgets):
every registered setup trains, the table has its columns, files are written, unknown names are
refused with the valid ones listed, and a short WGAN-GP run beats the untrained generator."""
import csv
import dataclasses
import json
import math

import pytest

from minireg.gan import cli, experiment
from minireg.gan.metrics import feature_classifier
from minireg.reg import CapacityBudget, CapacityError

REQUIRED = ("none", "wgan-clip", "wgan-gp", "r1", "spectral-norm", "feature-matching", "lecam", "consistency",
            "orthogonal-g", "instance-noise", "dragan")


@pytest.fixture(scope="module")
def digits():
    return experiment.load_data("digits", num_eval=200)


@pytest.fixture(scope="module")
def classifier():
    return feature_classifier("digits")


def test_registry_documents_every_required_setup():
    assert set(REQUIRED) <= set(experiment.names())
    assert set(experiment.DEFAULT_COMPARE) <= set(experiment.names())
    for name in experiment.names():
        setup = experiment.get_setup(name)
        assert setup.paper and setup.here and setup.summary
        assert setup.describe().startswith(f"{name}: ")
    clip = experiment.get_setup("wgan-clip")
    assert (clip.loss, clip.n_critic, clip.optimizer, clip.lr) == ("wgan", 5, "rmsprop", 5e-5)
    gp = experiment.get_setup("wgan-gp")
    assert (gp.loss, gp.n_critic, gp.lr, gp.betas) == ("wgan", 5, 1e-4, (0.0, 0.9))
    assert experiment.get_setup("spectral-norm").loss == "hinge"
    with pytest.raises(ValueError, match="unknown GAN regularizer 'wgan-qp'; valid names: none, wgan-clip"):
        experiment.get_setup("wgan-qp")


@pytest.mark.parametrize("name", REQUIRED)
def test_every_setup_trains_a_few_steps(name, digits, classifier):
    result = experiment.run(name, steps=2, data=digits, num_eval=200, eval_points=1, verbose=0,
                            classifier=classifier)
    assert result["steps"] == 2 and result["metrics"]["num_samples"] == 200
    assert math.isfinite(result["metrics"]["fid"]) and result["untrained"]["fid"] > 0
    assert len(result["history"]["g_loss"]) == 2


def test_wgan_clip_stays_within_its_capacity_budget_and_clip(digits, classifier):
    setup = experiment.get_setup("wgan-clip")
    result = experiment.run("wgan-clip", steps=3, data=digits, num_eval=200, eval_points=1, verbose=0,
                            classifier=classifier)
    for usage in result["capacity"].values():
        assert usage["params"] <= setup.capacity.max_params and usage["layers"] <= setup.capacity.max_layers
    tight = dataclasses.replace(setup, capacity=CapacityBudget(max_params=1000))
    with pytest.raises(CapacityError, match="over max_params=1,000"):
        experiment.build_models(tight, digits, seed=0)


def test_compare_returns_one_table_with_the_untrained_generator_first(digits, tmp_path, monkeypatch):
    monkeypatch.setattr(experiment, "load_data", lambda name, num_eval: digits)
    result = experiment.compare(["none", "r1"], steps=3, out_dir=str(tmp_path), num_eval=200, eval_points=1,
                                verbose=0)
    assert [row["regularizer"] for row in result.rows] == ["untrained generator", "none", "r1"]
    for row in result.rows:
        assert set(experiment.COLUMNS) <= set(row)
    header = result.table.splitlines()[0]
    for column in ("regularizer", "FID", "IS", "precision", "recall", "seconds"):
        assert f"| {column} |" in header
    assert result.rows[1]["seconds"] > 0 and result.rows[0]["fid_gain"] == 1.0
    with open(tmp_path / "results.csv") as f:
        assert [r["regularizer"] for r in csv.DictReader(f)] == ["untrained generator", "none", "r1"]
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["steps"] == 3 and len(saved["rows"]) == 3
    assert (tmp_path / "results.md").read_text().count("\n|") == 5      # header, rule, 3 rows
    for name in ("none", "r1"):
        assert (tmp_path / name / "metrics.json").exists() and (tmp_path / name / "samples.png").exists()
    with pytest.raises(ValueError, match="valid names"):
        experiment.compare(["none", "bogus"], steps=1)


def test_conditional_runs_report_the_label_accuracy(digits, classifier):
    result = experiment.run("r1", steps=2, data=digits, conditional=True, num_eval=200, eval_points=1, verbose=0,
                            classifier=classifier)
    assert 0 <= result["metrics"]["label_accuracy"] <= 1
    row = experiment._row("r1", result["metrics"], 1.0, 100.0)
    assert "label accuracy" in experiment.markdown_table([row])


def test_a_short_wgan_gp_run_improves_fid_over_the_untrained_generator(digits, classifier):
    result = experiment.run("wgan-gp", steps=250, data=digits, num_eval=200, eval_points=1, verbose=0,
                            classifier=classifier)
    assert result["metrics"]["fid"] < result["untrained"]["fid"] / 3


def test_cli_writes_metrics_json(tmp_path, capsys):
    status = cli.main(["gan", "--reg", "lecam", "--steps", "3", "--out", str(tmp_path), "--num-eval", "200",
                       "--eval-points", "1", "--quiet"])
    assert status == 0
    metrics = json.loads((tmp_path / "lecam" / "metrics.json").read_text())
    assert metrics["name"] == "lecam" and metrics["steps"] == 3
    assert set(metrics["metrics"]) >= {"fid", "inception_score", "precision", "recall"}
    assert (tmp_path / "lecam" / "losses.png").exists() and (tmp_path / "lecam" / "fid.png").exists()
    assert (tmp_path / "lecam" / "checkpoint_generator.npz").exists()
    out = capsys.readouterr().out
    assert "FID" in out and "untrained generator" in out


def test_cli_compare_writes_the_table(tmp_path, capsys):
    status = cli.main(["--compare", "none", "spectral-norm", "--steps", "2", "--out", str(tmp_path),
                       "--num-eval", "200", "--eval-points", "1", "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    assert "| untrained generator |" in out and "| spectral-norm |" in out
    assert {p.name for p in tmp_path.iterdir()} >= {"results.md", "results.csv", "results.json", "none"}


def test_cli_refuses_unknown_names_listing_the_valid_ones(capsys):
    assert cli.main(["gan", "--reg", "wgan-qp"]) == 2
    err = capsys.readouterr().err
    assert "unknown GAN regularizer 'wgan-qp'" in err and "valid names: none, wgan-clip, wgan-gp" in err
    assert cli.main(["gan", "--compare", "none", "nope", "nada"]) == 2
    assert "'nope', 'nada'" in capsys.readouterr().err
    assert cli.main(["gan", "--list"]) == 0
    assert "wgan-gp: " in capsys.readouterr().out
