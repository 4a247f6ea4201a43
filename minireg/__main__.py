"""Command line: ``python -m minireg info`` (or the ``minireg`` console script)."""
import argparse
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(prog="minireg", description="minireg: regularization in deep learning")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("info", help="print versions, backend, device and active kernels")
    args = parser.parse_args(argv)
    if args.command == "info":
        from minireg._info import show_config
        show_config()
    return 0


if __name__ == "__main__":
    sys.exit(main())
