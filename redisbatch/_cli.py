"""The ``redisbatch`` command line."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redisbatch", description="Distributed batch imports on Redis."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser(
        "demo", help="generate a users CSV, import it with several workers, print a summary"
    )
    demo.add_argument("--records", type=_positive, default=100_000, help="users to generate")
    demo.add_argument("--workers", type=_positive, default=4, help="worker processes")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "demo":
        from ._demo import run_demo

        try:
            return run_demo(records=args.records, workers=args.workers)
        except KeyboardInterrupt:
            return 130
        except Exception as exc:  # a one-line message, no traceback
            print(f"redisbatch: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 2
    return 2  # pragma: no cover - argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
