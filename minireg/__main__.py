"""Command line: ``python -m minireg info | study | gan`` (or the ``minireg`` console script);
``python -m minireg --version`` prints the version."""
import argparse
import importlib
import sys

# Each subcommand module provides add_parser(subparsers) and run(args); imported only when needed.
COMMANDS = {"study": "minireg.study.cli", "gan": "minireg.gan.cli"}


def main(argv=None):
    from minireg import __version__
    parser = argparse.ArgumentParser(prog="minireg", description="minireg: regularization in deep learning")
    parser.add_argument("--version", action="version", version=f"minireg {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, backend, device and active kernels")
    modules = {name: importlib.import_module(path) for name, path in COMMANDS.items()}
    for module in modules.values():
        module.add_parser(commands)
    args = parser.parse_args(argv)
    if args.command == "info":
        from minireg._info import show_config
        show_config()
        return 0
    return modules[args.command].run(args)


if __name__ == "__main__":
    sys.exit(main())
