"""The GAN task: the registry of setups (paper defaults, strength grids), a training run of each on
real digits (tiny budgets), the study over seeds with median/IQR and the FID box plot, sample
grids of at least 512 pixels, and the ``gan`` command (``--compare`` is the study task)."""
import base64
import dataclasses
import json
import math

import numpy as np
import pytest

from minireg.errors import ArgumentError
from minireg.gan import cli
from minireg.gan.metrics import feature_classifier
from minireg.gan.plots import MIN_GRID_PIXELS, read_png
from minireg.reg import CapacityBudget, CapacityError
from minireg.study import gan
from minireg.study.runner import run_study

pytest.importorskip("sklearn", reason="the digits ship with scikit-learn")
REQUIRED = ("none", "wgan-clip", "wgan-gp", "r1", "spectral-norm", "feature-matching", "lecam", "consistency",
            "orthogonal-g", "instance-noise", "dragan")


@pytest.fixture(scope="module")
def digits():
    return gan.load_data("digits", num_eval=200)


@pytest.fixture(scope="module")
def classifier():
    return feature_classifier("digits")


def test_registry_documents_every_required_setup():
    assert set(REQUIRED) <= set(gan.names()) and set(gan.DEFAULT_SETUPS) <= set(gan.names())
    for name in gan.names():
        setup = gan.get_setup(name)
        assert setup.paper and setup.here and setup.summary
        assert setup.describe().startswith(f"{name}: ")
        if setup.tuned:
            assert setup.grid_source != "-" and setup.default_strength in setup.strengths("full")
    clip = gan.get_setup("wgan-clip")
    assert (clip.loss, clip.n_critic, clip.optimizer, clip.lr) == ("wgan", 5, "rmsprop", 5e-5)
    gp = gan.get_setup("wgan-gp")
    assert (gp.loss, gp.n_critic, gp.lr, gp.betas, gp.grid) == ("wgan", 5, 1e-4, (0.0, 0.9), (1.0, 10.0))
    assert gan.get_setup("spectral-norm").loss == "hinge"
    with pytest.raises(ArgumentError, match="unknown GAN regularizer 'wgan-qp'.*valid names: none, wgan-clip"):
        gan.get_setup("wgan-qp")


@pytest.mark.parametrize("name", REQUIRED)
def test_every_setup_trains_a_few_steps(name, digits, classifier):
    result = gan.train(name, steps=2, data=digits, num_eval=200, eval_points=1, verbose=0, classifier=classifier)
    assert result["steps"] == 2 and result["metrics"]["num_samples"] == 200
    assert math.isfinite(result["metrics"]["fid"]) and result["untrained"]["fid"] > 0
    assert len(result["history"]["g_loss"]) == 2


def test_wgan_clip_stays_within_its_capacity_budget(digits, classifier):
    setup = gan.get_setup("wgan-clip")
    result = gan.train("wgan-clip", steps=3, data=digits, num_eval=200, eval_points=1, verbose=0,
                       classifier=classifier)
    for usage in result["capacity"].values():
        assert usage["params"] <= setup.capacity.max_params and usage["layers"] <= setup.capacity.max_layers
    tight = dataclasses.replace(setup, capacity=CapacityBudget(max_params=1000))
    with pytest.raises(CapacityError, match="over max_params=1,000"):
        gan.build_models(tight, digits, seed=0)


def test_strengths_reach_the_regularizer(digits):
    r1 = gan.get_setup("r1")
    assert r1.regularizers(gan.Context(digits, 10), 0.1)["penalties"][0].gamma == 0.1
    with pytest.raises(ArgumentError, match="no strength to choose"):
        gan.train("lecam", strength=0.5, steps=1, data=digits, num_eval=200, verbose=0)


def test_a_short_wgan_gp_run_improves_fid_over_the_untrained_generator(digits, classifier):
    result = gan.train("wgan-gp", steps=250, data=digits, num_eval=200, eval_points=1, verbose=0,
                       classifier=classifier)
    assert result["metrics"]["fid"] < result["untrained"]["fid"] / 3


def test_the_gan_study_reports_medians_and_quartiles_over_seeds(tmp_path):
    result = run_study(task="gan-digits", only="none,r1", seeds=2, epochs=3, num_eval=100, out=str(tmp_path),
                       progress=False)
    families = {f["name"]: f for f in result.summary["families"]}
    fid = families["r1"]["test_accuracy"]
    assert families["r1"]["metric"] == "test_fid" and len(fid["per_seed"]) == 2
    assert fid["iqr"][0] <= fid["median"] <= fid["iqr"][1] and set(fid) >= {"mean", "ci95"}
    for column in ("inception_score", "precision", "recall"):
        assert set(families["r1"][column]) >= {"median", "iqr"}
    assert set(families["r1"]["chosen_strength"]) <= set(gan.get_setup("r1").grid)
    assert families["r1"]["vs_none"] is not None and "median [IQR]" in result.table
    assert len(result.summary["runs"]) == 2 * (1 + 3)
    for record in result.summary["runs"]:     # validation and test use different real images
        assert record["result"]["validation"]["num_samples"] == 100 and record["result"]["test"] is not None
    assert (tmp_path / "fid_by_regularizer.png").stat().st_size > 0
    grid = read_png(tmp_path / "samples" / "r1.png")
    assert grid.shape[1] >= MIN_GRID_PIXELS


def test_sample_grids_are_large_enough_to_judge(tmp_path):
    from minireg.gan.plots import image_grid_png, save_image_grid
    digits = np.zeros((64, 64), dtype=np.float32)
    path = save_image_grid(digits, tmp_path / "grid.png")
    pixels = read_png(path)
    assert pixels.shape[0] >= MIN_GRID_PIXELS and pixels.shape[1] >= MIN_GRID_PIXELS
    # nearest neighbour: each 8x8 digit pixel is an exact block of equal pixels
    image = np.full((1, 8, 8), -1.0, dtype=np.float32)     # black (images are in [-1, 1])
    image[0, 0, 0] = 1.0
    big = read_png(save_image_grid(image, tmp_path / "one.png", padding=0))
    scale = big.shape[0] // 8
    assert scale * 8 >= MIN_GRID_PIXELS and np.all(big[:scale, :scale] == 255) and np.all(big[scale:, :] == 0)
    assert base64.b64encode(image_grid_png(digits))[:8] == base64.b64encode(path.read_bytes())[:8]


def test_cli_trains_one_setup_and_writes_metrics(tmp_path, capsys):
    status = cli.main(["gan", "--reg", "lecam", "--steps", "3", "--out", str(tmp_path), "--num-eval", "200",
                       "--eval-points", "1", "--quiet"])
    assert status == 0
    metrics = json.loads((tmp_path / "lecam" / "metrics.json").read_text())
    assert metrics["name"] == "lecam" and metrics["steps"] == 3
    assert set(metrics["metrics"]) >= {"fid", "inception_score", "precision", "recall"}
    assert (tmp_path / "lecam" / "checkpoint_generator.npz").exists()
    assert "untrained generator" in capsys.readouterr().out


def test_cli_compare_is_the_study_task(tmp_path, capsys):
    status = cli.main(["--compare", "none", "spectral-norm", "--steps", "2", "--seeds", "2", "--out", str(tmp_path),
                       "--num-eval", "100", "--quiet"])
    assert status == 0
    out = capsys.readouterr().out
    assert "spectral-norm" in out and "median [IQR]" in out
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["settings"]["task"] == "gan-digits" and [f["name"] for f in saved["families"]] == ["none",
                                                                                                  "spectral-norm"]


@pytest.mark.parametrize("argv, message", [
    (["--reg", "wgan-qp"], "unknown GAN regularizer 'wgan-qp'"),
    (["--compare", "none", "nope"], "unknown GAN regularizer 'nope'"),
    (["--num-eval", "0"], "--num-eval must be an integer >= 100, got 0"),
    (["--num-eval", "3"], "--num-eval must be an integer >= 100, got 3"),
    (["--compare", "--num-eval", "3"], "--num-eval must be an integer >= 100, got 3"),
    (["--steps", "0"], "--steps must be an integer >= 1"),
    (["--reg", "r1", "--compare"], "either --reg or --compare"),
])
def test_cli_refuses_bad_options_before_training(argv, message, capsys, tmp_path):
    assert cli.main(["gan", *argv, "--out", str(tmp_path)]) == 2
    assert message in capsys.readouterr().err
    assert not any(tmp_path.iterdir())


def test_cli_lists_the_setups(capsys):
    assert cli.main(["gan", "--list"]) == 0
    out = capsys.readouterr().out
    assert "wgan-gp: " in out and "strength grid 1, 10" in out
