"""The ``study`` command: ``python -m minireg study [--task NAME] [options]``.

``add_parser(subparsers)`` adds it to a parent parser; ``run(args)`` executes it and returns the
exit status (2 with the usage message for a bad option, 1 when the study cannot go on).
"""
import os
import sys

from minireg.errors import MiniregError


def add_parser(subparsers):
    """Add the ``study`` command to an ``argparse`` subparsers object; returns its parser."""
    from minireg.study.tasks import DEFAULT_TASK, TASKS
    tasks = "; ".join(f"{name}: {task.title}" for name, task in TASKS.items()).replace("%", "%%")   # argparse
    parser = subparsers.add_parser(
        "study", help="compare regularizer families over seeds, with tuned strengths and confidence intervals",
        description="Train a task under each regularizer family, choose each family's strength per seed on "
                    "validation data (held out, or --cv K folds), score the final models once on the test set, and "
                    "report mean and 95% CI over seeds with a paired comparison against no regularization. Writes "
                    "results.json/.csv/.md, report.html and figures to --out. Needs joblib, matplotlib and "
                    "scikit-learn: pip install 'minireg[study]'.")
    parser.add_argument("--task", default=DEFAULT_TASK, metavar="NAME",
                        help=f"what to train (default {DEFAULT_TASK}): {tasks}")
    parser.add_argument("--preset", default="default", choices=("default", "full"),
                        help="default: the budget of the README (the default task: about 2.5 minutes of CPU); "
                             "full: every family, wider grids, more seeds and epochs (meant for --jobs or Dask)")
    parser.add_argument("--seeds", type=int, help="seeds per family and strength (default: the preset's)")
    parser.add_argument("--only", metavar="NAMES", help="comma-separated families (default: the preset's)")
    parser.add_argument("--cv", type=int, metavar="K", help="choose strengths by K-fold cross-validation (default: "
                                                            "a held-out validation split)")
    parser.add_argument("--epochs", type=int, help="training epochs (GAN tasks: generator steps) per run")
    parser.add_argument("--num-eval", type=int, help="GAN tasks: samples for FID/IS/precision/recall")
    parser.add_argument("--conditional", action="store_true", default=None,
                        help="GAN tasks: condition G and D on the class")
    parser.add_argument("--jobs", type=int, default=1, help="runs in parallel processes (joblib; default 1)")
    parser.add_argument("--dask-scheduler", metavar="ADDRESS",
                        help="run on a Dask cluster, e.g. tcp://127.0.0.1:8786 (instead of --jobs)")
    parser.add_argument("--threads", type=int, default=1, help="BLAS threads per run (default 1: the matrices are "
                                                               "small)")
    parser.add_argument("--out", default="runs/study", help="output directory (default runs/study); its cache/ "
                                                            "lets an interrupted or extended study resume")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(usage_error=parser.error)
    return parser


def run(args):
    """Execute the parsed ``study`` command; returns the exit status."""
    import importlib.util

    from minireg.study import report
    from minireg.study.runner import StudyError, run_study
    figures = importlib.util.find_spec("matplotlib") is not None
    if not figures:
        print(f"minireg study: {report.NO_FIGURES}", file=sys.stderr)
    try:
        result = run_study(task=args.task, preset=args.preset, seeds=args.seeds, only=args.only, cv=args.cv,
                           epochs=args.epochs, jobs=args.jobs, dask_scheduler=args.dask_scheduler, out=args.out,
                           progress=not args.quiet, figures=figures, threads=args.threads, num_eval=args.num_eval,
                           conditional=args.conditional)
    except StudyError as exc:
        print(f"minireg study: {exc}", file=sys.stderr)
        return 1
    except MiniregError as exc:
        args.usage_error(str(exc))
    print(report.settings_text(result.summary) + "\n")
    print(result.table)
    print("\n" + report.HOW_TO_READ_TEXT)
    written = sorted({os.path.relpath(p, args.out).split(os.sep)[0] for p in result.files.values()})
    print(f"\nwritten to {args.out}: " + ", ".join(written))
    if result.summary["failed"]:
        print(f"{len(result.summary['failed'])} runs failed (see results.json)", file=sys.stderr)
    return 0
