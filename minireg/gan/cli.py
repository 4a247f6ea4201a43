"""The ``gan`` command: train a GAN with a named regularizer, or compare several.

    python -m minireg gan --reg wgan-gp [--steps N] [--seed S] [--out runs/gan] [--data digits]
    python -m minireg gan --compare [NAME ...]        # default: experiment.DEFAULT_COMPARE
    python -m minireg gan --list                      # the registry, with paper defaults
    python -m minireg.gan.cli ...                     # the same, without the other commands

``add_parser(subparsers)`` adds the command to a parent parser; ``run(args)`` executes it and
returns the exit status.
"""
import argparse
import os
import sys


def _configure(parser):
    from minireg.gan import experiment
    parser.add_argument("--reg", metavar="NAME", default=None,
                        help=f"the regularizer to train with: {', '.join(experiment.names())} (default none)")
    parser.add_argument("--compare", nargs="*", metavar="NAME", default=None,
                        help="train several regularizers with the same budget and print one table (no names: "
                             f"{' '.join(experiment.DEFAULT_COMPARE)})")
    parser.add_argument("--list", action="store_true", help="list the regularizers with their paper defaults")
    parser.add_argument("--steps", type=int, default=experiment.DEFAULT_STEPS,
                        help=f"generator steps per run (default {experiment.DEFAULT_STEPS})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights, noise and batches (default 0)")
    parser.add_argument("--data", default="digits", choices=experiment.DATASETS, help="data set (default digits)")
    parser.add_argument("--conditional", action="store_true",
                        help="condition G and D on the class one-hot (the sample grids get one column per class)")
    parser.add_argument("--out", default="runs/gan",
                        help="output directory (default runs/gan): a run writes to OUT/NAME, a comparison to OUT")
    parser.add_argument("--num-eval", type=int, default=experiment.NUM_EVAL,
                        help=f"samples for FID/IS/precision/recall (default {experiment.NUM_EVAL})")
    parser.add_argument("--eval-points", type=int, default=experiment.EVAL_POINTS,
                        help=f"evaluations and sample grids per run (default {experiment.EVAL_POINTS})")
    parser.add_argument("--threads", type=int, default=experiment.BLAS_THREADS,
                        help=f"BLAS threads while training (default {experiment.BLAS_THREADS}: the GAN's matrices "
                             f"are small; 0: leave the thread pools as configured)")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    return parser


def add_parser(subparsers):
    """Add the ``gan`` command to an ``argparse`` subparsers object; returns its parser."""
    parser = subparsers.add_parser(
        "gan", help="train a GAN with a chosen regularizer, or compare regularizers",
        description="Train the MLP GAN on real digits (or Fashion-MNIST) with a named regularizer and write "
                    "sample grids, loss and FID curves and a metrics JSON; --compare trains several with the "
                    "same budget and prints one table (classifier-FID, IS, precision, recall, seconds).")
    return _configure(parser)


def _fail(message):
    print(f"minireg gan: {message}", file=sys.stderr)
    return 2


def run(args):
    """Execute the parsed ``gan`` command; returns the exit status."""
    from minireg.gan import experiment
    if args.list:
        print(experiment.describe())
        return 0
    if args.compare is not None and args.reg is not None:
        return _fail("give either --reg or --compare, not both")
    names = (list(args.compare) or list(experiment.DEFAULT_COMPARE)) if args.compare is not None else [args.reg or
                                                                                                        "none"]
    unknown = [n for n in names if n not in experiment.REGISTRY]
    if unknown:
        return _fail(f"unknown GAN regularizer{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}; "
                     f"valid names: {', '.join(experiment.names())}")
    if args.steps < 1:
        return _fail(f"--steps must be >= 1, got {args.steps}")
    verbose = 0 if args.quiet else 1
    threads = args.threads or None
    try:
        if args.compare is not None:
            result = experiment.compare(names, steps=args.steps, seed=args.seed, out_dir=args.out, data=args.data,
                                        conditional=args.conditional, num_eval=args.num_eval,
                                        eval_points=args.eval_points, verbose=verbose, threads=threads)
            print(f"\n{args.data}{' (conditional)' if args.conditional else ''}, {args.steps} generator steps, "
                  f"seed {args.seed}, N = {args.num_eval}\n")
            print(result.table)
            print(f"\nwritten to {args.out}: " + ", ".join(os.path.relpath(p, args.out) for p in result.files.values()
                                                           if os.path.exists(str(p))) + ", <name>/...")
            return 0
        out = os.path.join(args.out, names[0])
        result = experiment.run(names[0], steps=args.steps, seed=args.seed, out_dir=out, data=args.data,
                                conditional=args.conditional, num_eval=args.num_eval, eval_points=args.eval_points,
                                verbose=verbose, threads=threads)
    except (ValueError, FileNotFoundError) as exc:
        return _fail(str(exc))
    m, u = result["metrics"], result["untrained"]
    print(f"\n{names[0]}: {experiment.get_setup(names[0]).summary}")
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
