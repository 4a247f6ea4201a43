"""The ``gan`` command: train a GAN with a named regularizer, or compare them (the study's GAN task).

    python -m minireg gan --reg wgan-gp [--strength 10] [--steps N] [--seed S] [--out runs/gan]
    python -m minireg gan --compare [NAME ...]     # = python -m minireg study --task gan-digits [--only ...]
    python -m minireg gan --list                   # the registry, with paper defaults and grids
    python -m minireg.gan.cli ...                  # the same, without the other commands

``add_parser(subparsers)`` adds the command to a parent parser; ``run(args)`` executes it and
returns the exit status. Every option is checked before anything trains.
"""
import argparse
import os
import sys

from minireg import check
from minireg.errors import ArgumentError, MiniregError


def _configure(parser):
    from minireg.study import gan
    parser.add_argument("--reg", metavar="NAME", default=None,
                        help=f"the regularizer to train with: {', '.join(gan.names())} (default none)")
    parser.add_argument("--strength", type=float, default=None,
                        help="the regularizer's strength, for those with a grid (default: the paper's)")
    parser.add_argument("--compare", nargs="*", metavar="NAME", default=None,
                        help="compare regularizers over seeds: the study task gan-digits (gan-fashion with --data "
                             f"fashion-mnist); no names: {' '.join(gan.DEFAULT_SETUPS)}")
    parser.add_argument("--list", action="store_true", help="list the regularizers with their paper defaults")
    parser.add_argument("--steps", type=int, default=gan.DEFAULT_STEPS,
                        help=f"generator steps per run (default {gan.DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, noise and batches (default 0)")
    parser.add_argument("--seeds", type=int, default=None, help="--compare: seeds per regularizer (default 5)")
    parser.add_argument("--jobs", type=int, default=1, help="--compare: runs in parallel processes")
    parser.add_argument("--data", default="digits", choices=gan.DATASETS, help="data set (default digits)")
    parser.add_argument("--conditional", action="store_true",
                        help="condition G and D on the class one-hot (the sample grids get one column per class)")
    parser.add_argument("--out", default="runs/gan",
                        help="output directory (default runs/gan): a run writes to OUT/NAME, a comparison to OUT")
    parser.add_argument("--num-eval", type=int, default=gan.NUM_EVAL,
                        help=f"samples for FID/IS/precision/recall (default {gan.NUM_EVAL}, at least "
                             f"{gan.MIN_NUM_EVAL})")
    parser.add_argument("--eval-points", type=int, default=gan.EVAL_POINTS,
                        help=f"evaluations and sample grids per run (default {gan.EVAL_POINTS})")
    parser.add_argument("--threads", type=int, default=1,
                        help="BLAS threads while training (default 1: the GAN's matrices are small)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def add_parser(subparsers):
    """Add the ``gan`` command to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "gan", help="train a GAN with a chosen regularizer, or compare regularizers over seeds",
        description="Train the MLP GAN on real digits (or Fashion-MNIST) with a named regularizer and write "
                    "sample grids, loss and FID curves and a metrics JSON; --compare runs the study's GAN task "
                    "(every regularizer over seeds, median and IQR of FID/IS/precision/recall).")
    return _configure(parser)


def _fail(message):
    print(f"minireg gan: {message}", file=sys.stderr)
    return 2


def _compare(args, names):
    from minireg.study import report
    from minireg.study.runner import StudyError, run_study
    task = "gan-digits" if args.data == "digits" else "gan-fashion"
    try:
        result = run_study(task=task, seeds=args.seeds, only=names or None, epochs=args.steps, jobs=args.jobs,
                           out=args.out, progress=not args.quiet, threads=args.threads, num_eval=args.num_eval,
                           conditional=args.conditional or None)
    except StudyError as exc:
        print(f"minireg gan: {exc}", file=sys.stderr)
        return 1
    print(report.settings_text(result.summary) + "\n")
    print(result.table)
    print(f"\nwritten to {args.out}: results.json, results.csv, results.md, report.html")
    return 0


def run(args):
    """Execute the parsed ``gan`` command; returns the exit status."""
    from minireg.study import gan
    if args.list:
        print(gan.describe())
        return 0
    try:
        if args.compare is not None and args.reg is not None:
            raise ArgumentError("give either --reg or --compare, not both")
        names = list(args.compare) if args.compare is not None else [args.reg or "none"]
        for name in names:
            gan.get_setup(name)
        check.positive_int("--steps", args.steps)
        check.integer("--num-eval", args.num_eval, low=gan.MIN_NUM_EVAL)
        check.integer("--eval-points", args.eval_points, low=0)
        check.positive_int("--threads", args.threads)
        if args.compare is not None:
            return _compare(args, names)
        if args.strength is not None:
            check.nonnegative("--strength", args.strength)
        from minireg.study.runner import writable_directory
        out = writable_directory(os.path.join(args.out, names[0]))
        data = gan.load_data(args.data, args.num_eval)
        from minireg._threads import blas_threads
        with blas_threads(args.threads):
            result = gan.train(names[0], strength=args.strength, steps=args.steps, seed=args.seed, out_dir=out,
                               data=data, conditional=args.conditional, num_eval=args.num_eval,
                               eval_points=args.eval_points, verbose=0 if args.quiet else 1)
    except MiniregError as exc:
        return _fail(str(exc))
    m, u = result["metrics"], result["untrained"]
    strength = "" if result["strength"] is None else f" (strength {result['strength']:g})"
    print(f"\n{names[0]}{strength}: {gan.get_setup(names[0]).summary}")
    print(f"  {args.data}{' (conditional)' if args.conditional else ''}, {args.steps} generator steps, seed "
          f"{args.seed}, {result['seconds']:.1f} s of training")
    print(f"  FID {m['fid']:.2f} (untrained generator {u['fid']:.1f})  IS {m['inception_score']:.2f}  "
          f"precision {m['precision']:.3f}  recall {m['recall']:.3f}  (N = {m['num_samples']})")
    print(f"  written to {out}: " + ", ".join(os.path.relpath(p, out) for p in result["files"].values()
                                             if os.path.exists(str(p))))
    return 0


def main(argv=None):
    """``python -m minireg.gan.cli [gan] ...``: a parser with just the ``gan`` command."""
    parser = argparse.ArgumentParser(prog="minireg", description="minireg GAN experiments")
    commands = parser.add_subparsers(dest="command", required=True)
    add_parser(commands)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] != "gan":
        argv = ["gan"] + argv if not (argv and argv[0] in ("-h", "--help")) else argv
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
