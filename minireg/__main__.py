"""Command line: ``python -m minireg info | study`` (or the ``minireg`` console script)."""
import argparse
import os
import sys


def _study_parser(commands):
    from minireg import study
    parser = commands.add_parser(
        "study", help="train one network under every regularizer family and compare them",
        description="Train the same MLP on the same data split with the same seed and epochs under each "
                    "regularizer family; print one table and write curves, weight histograms, CSV, Markdown "
                    "and JSON to --out. Needs joblib (and matplotlib for the figures): pip install 'minireg[study]'.")
    parser.add_argument("--only", metavar="NAMES",
                        help=f"comma-separated configurations to run (default: all): {', '.join(study.names())}")
    parser.add_argument("--epochs", type=int, default=study.EPOCHS, help=f"epochs per configuration "
                                                                         f"(default {study.EPOCHS})")
    parser.add_argument("--seed", type=int, default=study.SEED, help=f"seed of every run (default {study.SEED})")
    parser.add_argument("--jobs", type=int, default=1, help="configurations run in parallel processes (joblib; "
                                                            "default 1)")
    parser.add_argument("--dask-scheduler", metavar="ADDRESS",
                        help="run the configurations on a Dask cluster (joblib's Dask backend), e.g. "
                             "tcp://127.0.0.1:8786; --jobs is then ignored")
    parser.add_argument("--data", choices=study.DATASETS, default="digits", help="data set (default digits)")
    parser.add_argument("--subset", type=int, default=None,
                        help=f"training images (train + validation) to draw; 0: all (default: all for digits, "
                             f"{study.FASHION_SUBSET} for fashion-mnist)")
    parser.add_argument("--out", default="runs/study", help="output directory (default runs/study)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def _run_study(args, parser):
    from minireg import study
    figures = study.importlib_find("matplotlib") is not None
    try:        # every check before any training
        study.check_options(args.only, args.epochs, args.jobs, args.data, args.subset, args.seed)
        study.require_dependencies()
        study.load_data(args.data, args.subset)
    except study.MissingDependency as exc:
        print(f"minireg study: {exc}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError) as exc:
        parser.error(str(exc))
    if not figures:
        print(f"minireg study: {study.NO_FIGURES}", file=sys.stderr)
    result = study.run_study(only=args.only, epochs=args.epochs, seed=args.seed, jobs=args.jobs, out=args.out,
                             data=args.data, subset=args.subset, dask_scheduler=args.dask_scheduler,
                             progress=not args.quiet, figures=figures)
    print(result.table)
    written = [os.path.relpath(path, args.out) for kind, path in result.files.items() if not kind.startswith("curves/")]
    print(f"\nwritten to {args.out}: " + ", ".join(written + (["curves/*.png"] if figures else [])))
    return 0


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minireg", description="minireg: regularization in deep learning")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, backend, device and active kernels")
    study_parser = _study_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "info":
        from minireg._info import show_config
        show_config()
    elif args.command == "study":
        return _run_study(args, study_parser)
    return 0


if __name__ == "__main__":
    sys.exit(main())
