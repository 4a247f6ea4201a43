"""The study's figures (matplotlib), written under ``--out`` and embedded in report.html.

- ``comparison.png``: the test score of every family, one dot per seed with the mean and its 95%
  interval, next to the paired difference from ``none`` with its interval (0 marked);
- ``paths/<family>.png``: the regularization path of each family with a strength: validation and
  test score, exact-zero fraction and weight norm against the strength, the chosen strengths marked;
- classification: ``learning_curves.png``, small multiples (one panel per family, ``none`` in grey
  in each, so 11 curves stay readable) of the accuracy per epoch of the first seed's final model,
  and ``weight_histograms.png`` (labelled axes);
- linear regression: ``coefficient_paths.png``, the classic lasso / ridge / elastic-net coefficient
  paths over a log grid of alphas, from ``regularization_path``;
- GANs: ``fid_by_regularizer.png``, a box and strip plot of the test FID over seeds per
  regularizer, and ``samples/<family>.png``, the first seed's final sample grid.
"""
import base64
import math
import os

import numpy as np


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, plt):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _label(summary, name):
    return next(c["label"] for c in summary["columns"] if c["name"] == name)


def plot_comparison(summary, path):
    plt = _pyplot()
    families = [f for f in summary["families"] if f["test_accuracy"] is not None]
    metric = families[0]["metric"] if families else "test score"
    fig, axes = plt.subplots(1, 2, figsize=(12, 0.45 * len(families) + 1.6), sharey=True)
    for y, f in enumerate(families):
        s = f["test_accuracy"]
        axes[0].plot(s["per_seed"], [y] * len(s["per_seed"]), "o", color="tab:blue", alpha=0.45, markersize=4)
        if s["ci95"][0] is not None:
            axes[0].errorbar(s["mean"], y, xerr=[[s["mean"] - s["ci95"][0]], [s["ci95"][1] - s["mean"]]], fmt="D",
                             color="black", capsize=3, markersize=5)
        vs = f["vs_none"]
        if vs is not None and vs["ci95"][0] is not None:
            color = "grey" if vs["indistinguishable"] else "tab:red"
            axes[1].errorbar(vs["mean_diff"], y, xerr=[[vs["mean_diff"] - vs["ci95"][0]],
                                                       [vs["ci95"][1] - vs["mean_diff"]]],
                             fmt="o", color=color, capsize=3)
    axes[0].set_yticks(range(len(families)), [f["name"] for f in families])
    axes[0].invert_yaxis()
    axes[0].set_xlabel(f"{_label(summary, metric)} (dots: seeds; diamond: mean, 95% CI)")
    axes[1].axvline(0.0, color="black", linewidth=1)
    axes[1].set_xlabel(f"paired difference from none, 95% CI (grey: covers 0)")
    for ax in axes:
        ax.grid(alpha=0.3, axis="x")
    fig.suptitle(summary["settings"]["title"])
    return _save(fig, path, plt)


def plot_path(summary, family, path):
    plt = _pyplot()
    rows = family["path"]
    strengths = [r["strength"] for r in rows]
    log = all(isinstance(a, (int, float)) and a > 0 for a in strengths) and max(strengths) / min(strengths) > 20
    panels = [("validation", f"validation ({summary['columns'][0]['label'].replace('test ', '')})"),
              ("test", f"{summary['columns'][0]['label']} (not used for choosing)"),
              ("zero_fraction", "exact-zero fraction"), ("weight_l2_norm", "weight L2 norm")]
    panels = [(k, label) for k, label in panels if any(k in r for r in rows)]
    fig, axes = plt.subplots(1, len(panels), figsize=(4 * len(panels), 3.3), squeeze=False)
    chosen = [a for a in family["chosen_strength"] if a is not None]
    for ax, (key, label) in zip(axes[0], panels):
        xs = [r["strength"] for r in rows if key in r]
        means = np.array([r[key]["mean"] for r in rows if key in r])
        lo = np.array([r[key]["ci95"][0] if r[key]["ci95"][0] is not None else r[key]["mean"] for r in rows if key in r])
        hi = np.array([r[key]["ci95"][1] if r[key]["ci95"][1] is not None else r[key]["mean"] for r in rows if key in r])
        ax.plot(xs, means, "o-", color="tab:blue")
        ax.fill_between(xs, lo, hi, color="tab:blue", alpha=0.2)
        for a in sorted(set(chosen)):
            ax.axvline(a, color="tab:red", linestyle=":", linewidth=1)
        if log:
            ax.set_xscale("log")
        ax.set_xlabel("strength" + (" (red: chosen)" if chosen else ""))
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle(f"{family['name']}: {family['summary']} (mean over seeds, 95% CI)")
    return _save(fig, path, plt)


def _final_runs(summary, plan):
    """``{family: record}``: the first seed's final run of each family."""
    finals = {}
    chosen = {f["name"]: dict(zip(plan.seeds, f["chosen_strength"])) for f in summary["families"]}
    for record in summary["runs"]:
        config = record["config"]
        if record["status"] != "ok" or not config["score_test"] or config["family"] in finals:
            continue
        seed = min(plan.seeds)
        strength = config.get("strength")
        if config["seed"] == seed and chosen[config["family"]].get(seed) == strength:
            finals[config["family"]] = record
    return {f["name"]: finals[f["name"]] for f in summary["families"] if f["name"] in finals}


def plot_learning_curves(finals, path, key="val_accuracy"):
    plt = _pyplot()
    names = list(finals)
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.3 * cols, 2.5 * rows), squeeze=False, sharex=True, sharey=True)
    history = {n: finals[n]["result"]["history"] for n in names}
    key = key if all(key in h for h in history.values()) else "accuracy"
    for ax, name in zip(axes.ravel(), names):
        if "none" in history and name != "none":
            ax.plot(range(1, len(history["none"][key]) + 1), history["none"][key], color="grey", linewidth=1,
                    label="none")
        ax.plot(range(1, len(history[name][key]) + 1), history[name][key], color="tab:blue", label=name)
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7, loc="lower right")
    label = key.replace("val_", "validation ").replace("_", " ")
    for i, ax in enumerate(axes.ravel()):
        if i >= len(names):
            ax.axis("off")
        elif i + cols >= len(names):         # the lowest panel of its column
            ax.set_xlabel("epoch")
            ax.tick_params(labelbottom=True)
    for ax in axes[:, 0]:
        ax.set_ylabel(label)
    fig.suptitle(f"{label} per epoch of each family's final model (first seed; grey: none)")
    return _save(fig, path, plt)


def plot_weight_histograms(finals, path):
    plt = _pyplot()
    names = [n for n in finals if "weight_histogram" in finals[n]["result"]]
    cols = min(4, len(names))
    rows = math.ceil(len(names) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 2.7 * rows), squeeze=False)
    for ax, name in zip(axes.ravel(), names):
        result = finals[name]["result"]
        h = result["weight_histogram"]
        edges = np.asarray(h["edges"])
        ax.stairs(np.maximum(h["counts"], 0.5), edges, fill=True, color="tab:blue")
        ax.set_yscale("log")
        ax.set_title(f"{name} ({100 * result['zero_fraction']:.1f}% exact zeros)", fontsize=9)
        ax.set_xlabel("weight value", fontsize=8)
        ax.set_ylabel("count (log scale)", fontsize=8)
        ax.tick_params(labelsize=7)
    for ax in axes.ravel()[len(names):]:
        ax.axis("off")
    fig.suptitle("Weights of each family's final model (first seed; the central 99.9%)")
    return _save(fig, path, plt)


DIABETES_FEATURES = ("age", "sex", "bmi", "bp", "s1", "s2", "s3", "s4", "s5", "s6")


def plot_coefficient_paths(summary, path, l1_ratio=0.5):
    """Lasso, ridge and elastic-net coefficients against alpha on the whole diabetes training split."""
    from minireg.study.data import regression_split
    from minireg.study.linear import regularization_path
    plt = _pyplot()
    split = regression_split(0, folds=2, fold=None)          # all 353 training rows, standardized
    alphas = np.logspace(-3, 2.5, 80)
    chosen = {f["name"]: [a for a in f["chosen_strength"] if a is not None] for f in summary["families"]}
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2), sharey=True)
    for ax, (name, penalty) in zip(axes, (("lasso", "l1"), ("ridge", "l2"), ("elastic_net", "elastic_net"))):
        coefficients = regularization_path(split.x_train, split.y_train, penalty, alphas, l1_ratio)
        for j, feature in enumerate(DIABETES_FEATURES):
            ax.plot(alphas, coefficients[:, j], label=feature)
        if chosen.get(name):
            ax.axvline(float(np.median(chosen[name])), color="black", linestyle=":",
                       label="median chosen alpha")
        zeros = (coefficients == 0).sum(axis=1)
        ax.set_title(f"{name}: exact zeros go from {zeros.min()} to {zeros.max()} of 10")
        ax.set_xscale("log")
        ax.set_xlabel("alpha (1/(2n)||y - Xw||^2 + alpha R(w))")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("coefficient (standardized features)")
    axes[-1].legend(fontsize=7, ncol=2)
    fig.suptitle("Regularization paths on diabetes: L1 sets coefficients to exactly 0, L2 only shrinks them")
    return _save(fig, path, plt)


def plot_fid_box(summary, path):
    plt = _pyplot()
    families = [f for f in summary["families"] if f["test_accuracy"] is not None]
    values = [f["test_accuracy"]["per_seed"] for f in families]
    fig, ax = plt.subplots(figsize=(max(6, 0.8 * len(families) + 2), 4.2))
    ax.boxplot(values, whis=(0, 100), widths=0.6)
    rng = np.random.default_rng(0)
    for i, v in enumerate(values, start=1):
        ax.plot(i + rng.uniform(-0.12, 0.12, len(v)), v, "o", color="tab:blue", alpha=0.6, markersize=4)
    ax.set_xticks(range(1, len(families) + 1), [f["name"] for f in families], rotation=35, ha="right")
    ax.set_yscale("log")
    ax.set_ylabel("test FID (log scale; lower is better)")
    ax.set_title("Test FID over seeds per regularizer (box: quartiles, whiskers: range, dots: seeds)")
    ax.grid(alpha=0.3, axis="y", which="both")
    return _save(fig, path, plt)


def plot_study(out, summary, plan):
    """Every figure of the task; returns ``{name: path}``."""
    files = {"comparison": plot_comparison(summary, os.path.join(out, "comparison.png"))}
    kind = plan.task.kind
    for family in summary["families"]:
        if family["path"]:
            files[f"paths/{family['name']}"] = plot_path(summary, family, os.path.join(out, "paths",
                                                                                      f"{family['name']}.png"))
    finals = _final_runs(summary, plan)
    if kind == "classification" and finals:
        files["learning_curves"] = plot_learning_curves(finals, os.path.join(out, "learning_curves.png"))
        files["weight_histograms"] = plot_weight_histograms(finals, os.path.join(out, "weight_histograms.png"))
    if kind == "regression":
        files["coefficient_paths"] = plot_coefficient_paths(summary, os.path.join(out, "coefficient_paths.png"),
                                                            plan.options["l1_ratio"])
    if kind == "gan":
        files["fid_by_regularizer"] = plot_fid_box(summary, os.path.join(out, "fid_by_regularizer.png"))
        for name, record in finals.items():
            path = os.path.join(out, "samples", f"{name}.png")
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "wb") as f:
                f.write(base64.b64decode(record["result"]["samples_png"]))
            files[f"samples/{name}"] = path
    return files
