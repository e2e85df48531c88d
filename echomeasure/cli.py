"""The ``echomeasure`` command: a thin shell over the library.

Exit status: 0 success; 2 user error (one ``error: ...`` line on stderr, no traceback,
nothing partial left behind); 1 for anything else (a bug: the traceback is shown).

Each command imports what it needs when it runs, so ``echomeasure --help`` and light
commands start fast (torch is only imported by commands that run models).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Callable, Sequence

from echomeasure import __version__
from echomeasure.errors import EchomeasureError

log = logging.getLogger("echomeasure")

Command = Callable[[argparse.Namespace], int]


def _print_json(obj: object) -> None:
    sys.stdout.write(json.dumps(obj, separators=(",", ":")) + "\n")
    sys.stdout.flush()


# --------------------------------------------------------------------------- commands
# Each command is filled in by the module that owns its stage; see architecture.md section 3.


def cmd_inspect(args: argparse.Namespace) -> int:
    """Print what a file is: kind, frames, size, frame time, regions, de-identification status."""
    from echomeasure.ingest import inspect_file

    _print_json(inspect_file(args.path))
    return 0


def cmd_deid(args: argparse.Namespace) -> int:
    """Write a de-identified copy of IN at OUT (DICOM to DICOM, video to video)."""
    from echomeasure import config
    from echomeasure.ingest import deidentify_file

    result = deidentify_file(args.input, args.output, secret=config.secret(args.secret))
    _print_json(result)
    return 0


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for tests and docs)."""
    p = argparse.ArgumentParser(
        prog="echomeasure",
        description="AI-assisted echocardiography measurement with human review.",
    )
    p.add_argument("--version", action="version", version=f"echomeasure {__version__}")
    p.add_argument("-v", "--verbose", action="store_true", help="log progress details to stderr")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    s = sub.add_parser("inspect", help="describe a DICOM / video / image file as JSON")
    s.add_argument("path")
    s.set_defaults(func=cmd_inspect)

    s = sub.add_parser("deid", help="write a de-identified copy of a DICOM or video file")
    s.add_argument("input", metavar="IN")
    s.add_argument("output", metavar="OUT")
    s.add_argument("--secret", help="site secret for UID remapping (default: $ECHOMEASURE_SECRET or db/.secret)")
    s.set_defaults(func=cmd_deid)

    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.func(args) or 0)
    except EchomeasureError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("error: interrupted\n")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
