"""The study's report: per-family summaries over seeds, tables and the files under ``--out``.

``summarize`` turns the runs into the ``results.json`` structure: settings, a ``families`` list
(for each: ``name``, ``chosen_strength`` per seed, ``test_accuracy`` = ``{mean, ci95, per_seed}``
of the task's test score (test accuracy; test R^2 for regression; for GANs the test FID, with
``median`` and ``iqr`` too), the other columns likewise, ``vs_none`` = ``{mean_diff, ci95,
indistinguishable}``, the regularization path), and every run's config, metrics and history.

How to read the table: ``mean [lo, hi]`` is the mean over seeds with its 95% t-interval. The
``vs none`` column is the paired comparison: the mean over seeds of (family - none), each seed
with the same split, initial weights and batches, and its 95% t-interval. Pairing cancels what
the seeds share, so it can separate families whose own intervals overlap. ``= none`` marks a
family whose paired interval covers 0: indistinguishable from no regularization at this budget.
"""
import base64
import collections
import csv
import html
import json
import math
import os

from minireg.study import stats

NO_FIGURES = ("matplotlib is missing, so the study writes no figures, only the tables and the JSON: "
              "pip install 'minireg[study]'")


def _strength_text(value):
    return "-" if value is None else f"{value:.3g}"


def chosen_text(chosen):
    """``"0.001 x4, 0.01 x1"``: the chosen strengths over seeds, most frequent first (more than three
    different ones: their median and range)."""
    values = [v for v in chosen if v not in ("failed", None)]
    counts = collections.Counter(_strength_text(v) for v in values)
    if not values:
        return "-" if chosen and all(v is None for v in chosen) else "failed"
    if len(counts) > 3:       # a spread of choices: their median and range
        return (f"median {_strength_text(float(sorted(values)[len(values) // 2]))} "
                f"[{_strength_text(min(values))}, {_strength_text(max(values))}]")
    return ", ".join(f"{text} x{n}" for text, n in counts.most_common())


def _path(plan, records, family):
    """Per strength: summaries over seeds of the validation score (the mean over folds with --cv)
    and, held out, the test score, the exact-zero fraction and the weight norm."""
    task = plan.task
    values = collections.defaultdict(lambda: collections.defaultdict(list))   # strength -> metric -> per seed
    by_seed = collections.defaultdict(lambda: collections.defaultdict(list))  # (strength, seed) -> metric -> folds
    for record in records:
        config = record["config"]
        if config["family"] != family.name or config.get("fold") is None and plan.cv is not None:
            continue
        for strength, point in plan.points(record):
            cell = by_seed[(strength, config["seed"])]
            cell["validation"].append(task.select.value(point))
            if point.get("test") is not None:
                cell["test"].append(task.test.value(point))
            for key in ("zero_fraction", "weight_l2_norm"):
                if key in point:
                    cell[key].append(point[key])
    for (strength, _), cell in sorted(by_seed.items(), key=lambda item: (str(item[0][0]), item[0][1])):
        for metric, folds in cell.items():
            values[strength][metric].append(sum(folds) / len(folds))
    rows = []
    for strength in plan.grid(family):
        if strength in values:
            rows.append({"strength": strength, **{metric: stats.summary(v) for metric, v in values[strength].items()}})
    return rows


def summarize(plan, records, chosen, settings):
    """The ``results.json`` structure (see the module docstring)."""
    task = plan.task
    finals = plan.final_points(records, chosen)
    columns = (task.test,) + tuple(task.columns)

    def per_seed(name, metric):
        return {seed: metric.value(point) for seed, (_, point, _) in finals[name].items()}

    baseline = per_seed("none", task.test) if "none" in finals else None
    families = []
    for family in plan.families:
        entry = {"name": family.name, "summary": family.summary, "grid": list(plan.grid(family)),
                 "grid_source": family.grid_source,
                 "chosen_strength": [None if chosen[family.name].get(s) == "failed" else chosen[family.name].get(s)
                                     for s in plan.seeds],
                 "seeds": sorted(finals[family.name]), "metric": task.test.name}
        for metric in columns:
            values = per_seed(family.name, metric)
            if not values:
                entry[metric.name] = None
                continue
            ordered = [values[s] for s in sorted(values)]
            entry[metric.name] = {**stats.summary(ordered), **(stats.median_iqr(ordered) if task.kind == "gan" else {})}
        entry["test_accuracy"] = entry[task.test.name]
        entry["vs_none"] = None
        if baseline is not None and family.name != "none":
            mine = per_seed(family.name, task.test)
            common = sorted(set(mine) & set(baseline))
            if common:
                entry["vs_none"] = stats.paired([mine[s] for s in common], [baseline[s] for s in common])
                entry["vs_none"]["seeds"] = common
        entry["path"] = _path(plan, records, family) if family.tuned else []
        entry["failed_runs"] = sum(1 for r in records if r["config"]["family"] == family.name and r["status"] != "ok")
        families.append(entry)
    failed = [{"key": r["key"], "family": r["config"]["family"], "seed": r["config"]["seed"],
               "error": r.get("error")} for r in records if r["status"] != "ok"]
    return {"settings": settings, "columns": [{"name": m.name, "label": m.label} for m in columns],
            "families": families, "failed": failed, "runs": records}


# -- tables ----------------------------------------------------------------------------------------
def _interval(s, digits=3, signed=False):
    if s is None:
        return "-"
    fmt = f"{{:{'+' if signed else ''}.{digits}f}}"
    lo, hi = s["ci95"]
    if lo is None:
        return fmt.format(s["mean"])
    return f"{fmt.format(s['mean'])} [{fmt.format(lo)}, {fmt.format(hi)}]"


def _median(s, digits=2):
    if s is None:
        return "-"
    return f"{s['median']:.{digits}f} [{s['iqr'][0]:.{digits}f}, {s['iqr'][1]:.{digits}f}]"


def _digits(name):
    return 2 if name in ("test_fid", "inception_score", "weight_l2_norm", "test_mse") else 3


def table_rows(summary):
    """Header and rows of the table, as strings."""
    gan = summary["settings"]["task"].startswith("gan-")
    labels = {c["name"]: c["label"] for c in summary["columns"]}
    names = [c["name"] for c in summary["columns"]]
    header = ["family", "chosen strength"]
    header += [labels[n] + (" median [IQR]" if gan else " mean [95% CI]") for n in names[:1]]
    header += [f"vs none: {labels[names[0]]} diff [95% CI]"] + [labels[n] for n in names[1:]]
    rows = []
    for f in summary["families"]:
        cell = _median if gan else _interval
        vs = f["vs_none"]
        vs_text = "-" if vs is None else _interval({"mean": vs["mean_diff"], "ci95": vs["ci95"]}, _digits(names[0]),
                                                   signed=True) + (" = none" if vs["indistinguishable"] else "")
        rows.append([f["name"], chosen_text(f["chosen_strength"]), cell(f[names[0]], _digits(names[0])), vs_text]
                    + [cell(f[n], _digits(n)) for n in names[1:]])
    return header, rows


def format_table(summary):
    """The plain-text table the command prints."""
    header, rows = table_rows(summary)
    widths = [max(len(r[i]) for r in [header] + rows) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) if i < 2 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in [header] + rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def markdown_table(summary):
    header, rows = table_rows(summary)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * 2 + "---:|" * (len(header) - 2)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"


def settings_text(summary):
    s = summary["settings"]
    protocol = f"{s['cv']}-fold cross-validation" if s["cv"] else "a held-out validation split"
    return (f"{s['title']}; {len(s['seeds'])} seeds; strengths chosen per family and seed on {protocol}; "
            f"test set scored once per final model; backend {s['backend']}; {s['total_seconds']:.0f} s")


# -- files -------------------------------------------------------------------------------------------
def _plain(value):
    """JSON-ready (NaN and infinity become null)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def _write(path, text):
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        f.write(text)
    os.replace(tmp, path)
    return path


def write_csv(path, summary):
    names = [c["name"] for c in summary["columns"]]
    rows = []
    for f in summary["families"]:
        row = {"family": f["name"], "chosen_strength": ";".join(_strength_text(v) for v in f["chosen_strength"])}
        for n in names:
            s = f[n] or {}
            row.update({f"{n}_mean": s.get("mean"), f"{n}_ci95_lo": (s.get("ci95") or [None])[0],
                        f"{n}_ci95_hi": (s.get("ci95") or [None, None])[1]})
            if "median" in s:
                row.update({f"{n}_median": s["median"], f"{n}_q1": s["iqr"][0], f"{n}_q3": s["iqr"][1]})
        vs = f["vs_none"] or {}
        row.update({"vs_none_mean_diff": vs.get("mean_diff"), "vs_none_ci95_lo": (vs.get("ci95") or [None])[0],
                    "vs_none_ci95_hi": (vs.get("ci95") or [None, None])[1],
                    "indistinguishable_from_none": vs.get("indistinguishable"), "failed_runs": f["failed_runs"]})
        rows.append(row)
    with open(f"{path}.tmp", "w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    os.replace(f"{path}.tmp", path)
    return path


def write_outputs(out, summary, plan, figures=True):
    """results.json, results.csv, results.md, the figures and report.html under ``out``."""
    files = {"json": os.path.join(out, "results.json"), "csv": os.path.join(out, "results.csv"),
             "markdown": os.path.join(out, "results.md"), "html": os.path.join(out, "report.html")}
    _write(files["json"], json.dumps(_plain(summary), indent=1))
    write_csv(files["csv"], summary)
    _write(files["markdown"], f"{settings_text(summary)}\n\n{markdown_table(summary)}")
    if figures:
        from minireg.study import plots
        files.update(plots.plot_study(out, summary, plan))
    _write(files["html"], html_report(summary, {k: v for k, v in files.items() if v.endswith(".png")}))
    return files


HOW_TO_READ_TEXT = ("mean [lo, hi]: the mean over seeds and its 95% t-interval (GANs: median [interquartile "
                    "range]). vs none: the paired difference from none over the same seeds and splits, with its 95% "
                    "t-interval; '= none': the interval covers 0 (indistinguishable from no regularization).")
HOW_TO_READ = ("Each number is the mean over seeds with its 95% t-interval (GANs: the median with the "
               "interquartile range). <em>vs none</em> is the paired comparison: the mean over seeds of "
               "(family &minus; none) on the same splits, initial weights and batches, with its 95% t-interval; "
               "&ldquo;= none&rdquo; marks a family whose interval covers 0, indistinguishable from no "
               "regularization here.")


def html_report(summary, figures):
    """One self-contained HTML page: the settings, the table, how to read it, every figure (base64 PNG)."""
    header, rows = table_rows(summary)
    table = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>" + "".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows) + "</table>"
    sources = "<ul>" + "".join(
        f"<li><b>{html.escape(f['name'])}</b>: {html.escape(f['summary'])}; grid "
        f"{html.escape(', '.join(_strength_text(a) for a in f['grid']))} ({html.escape(f['grid_source'])})</li>"
        for f in summary["families"]) + "</ul>"
    images = []
    for name, path in figures.items():
        with open(path, "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        images.append(f"<h3>{html.escape(name)}</h3><img alt='{html.escape(name)}' src='data:image/png;base64,{data}'>")
    failed = "".join(f"<li>{html.escape(r['family'])} seed {r['seed']}: {html.escape(str(r['error']))}</li>"
                     for r in summary["failed"])
    return f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>minireg study: {html.escape(summary['settings']['task'])}</title>
<style>body{{font-family:sans-serif;max-width:1200px;margin:2em auto;}} table{{border-collapse:collapse;}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right;}} td:first-child,td:nth-child(2){{text-align:left;}}
img{{max-width:100%;}}</style></head><body>
<h1>minireg study: {html.escape(summary['settings']['task'])}</h1>
<p>{html.escape(settings_text(summary))}</p>
{table}
<p>{HOW_TO_READ}</p>
<h2>Families and their grids</h2>{sources}
{f'<h2>Failed runs</h2><ul>{failed}</ul>' if failed else ''}
<h2>Figures</h2>
{''.join(images)}
</body></html>
"""
