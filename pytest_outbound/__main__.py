"""``python -m pytest_outbound``: work with policies and reports without running tests.

    docs POLICY... [-o OUT] [--title T] [--check]   render the documentation page
    check POLICY...                                 validate policy files
    report REPORT.json [--format text|markdown]     summarise a saved report

Exit status: 0 success; 1 ``docs --check`` found the page out of date; 2 usage errors, invalid
policies, or a missing/invalid report. Errors are single lines (``file:line: message``), never
tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pytest_outbound._docs import DEFAULT_TITLE, docs_diff, render_docs
from pytest_outbound._errors import PolicyError
from pytest_outbound._policy import Policy
from pytest_outbound._report import (
    ReportError,
    load_report,
    summary_markdown,
    summary_text,
    write_text_atomic,
)
from pytest_outbound._version import __version__

PROG = "python -m pytest_outbound"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status instead of exiting."""
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse exits)
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 2)
    if args.command is None:
        parser.print_usage(sys.stderr)
        print(f"{PROG}: error: choose a command: docs, check or report", file=sys.stderr)
        return 2
    command: int = args.run(args)
    return command


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Document, validate and report a program's network egress policy.",
    )
    parser.add_argument("--version", action="version", version=f"pytest-outbound {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    docs = sub.add_parser(
        "docs",
        help="render the documentation page from policy files",
        description="Render the Markdown page of the documented destinations (no tests run).",
    )
    docs.add_argument("policies", nargs="+", metavar="POLICY", help="TOML policy file(s)")
    docs.add_argument("-o", "--output", metavar="OUT", help="write the page here (atomically)")
    docs.add_argument("--title", default=DEFAULT_TITLE, help=f'page title ("{DEFAULT_TITLE}")')
    docs.add_argument(
        "--check",
        action="store_true",
        help="do not write: exit 1 with a diff if OUT is not the page the policy gives",
    )
    docs.set_defaults(run=_docs)

    check = sub.add_parser(
        "check",
        help="validate policy files",
        description="Validate policy files; print every error as file:line: message.",
    )
    check.add_argument("policies", nargs="+", metavar="POLICY", help="TOML policy file(s)")
    check.set_defaults(run=_check)

    report = sub.add_parser(
        "report",
        help="summarise a saved JSON report",
        description="Print the summary of a report written by --outbound-report.",
    )
    report.add_argument("report", metavar="REPORT.json")
    report.add_argument(
        "--format",
        choices=("text", "markdown"),
        default="text",
        help="text (as the terminal summary) or markdown (a GitHub job summary)",
    )
    report.set_defaults(run=_report)
    return parser


def _load(paths: Sequence[str]) -> tuple[list[tuple[str, Policy]], list[str]]:
    """Every file's policy, and every error: one per bad file, then cross-file duplicates."""
    loaded: list[tuple[str, Policy]] = []
    errors: list[str] = []
    seen_files: set[Path] = set()
    for path in paths:
        resolved = Path(path).resolve()
        if resolved in seen_files:  # the same file named twice is not a duplicate definition
            continue
        seen_files.add(resolved)
        try:
            loaded.append((path, Policy.from_toml(path)))
        except PolicyError as exc:
            errors.append(str(exc))
    first: dict[str, str] = {}
    for path, policy in loaded:
        for dest in policy.destinations:
            if dest.name in first:
                errors.append(
                    str(
                        PolicyError(
                            f"duplicate destination name {dest.name!r} (first defined at"
                            f" {first[dest.name]}); names must be unique",
                            dest.source or path,
                        )
                    )
                )
            else:
                first[dest.name] = dest.source or path
    return loaded, errors


def _check(args: argparse.Namespace) -> int:
    loaded, errors = _load(args.policies)
    for path, policy in loaded:
        n = len(policy.destinations)
        print(f"ok: {n} destination{'' if n == 1 else 's'} in {path}")
    for error in errors:
        print(error, file=sys.stderr)
    return 2 if errors else 0


def _docs(args: argparse.Namespace) -> int:
    loaded, errors = _load(args.policies)
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        return 2
    policy = Policy()
    for _, one in loaded:
        policy = policy.merge(one)
    page = render_docs(policy.destinations, title=args.title)
    if args.check:
        if not args.output:
            print(f"{PROG} docs: error: --check needs -o OUT (the page to check)", file=sys.stderr)
            return 2
        try:
            current = Path(args.output).read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{args.output}: cannot read: {exc}", file=sys.stderr)
            return 2
        diff = docs_diff(page, current, args.output)
        if diff:
            sys.stdout.write(diff)
            print(
                f"{args.output} is out of date; regenerate it with: {PROG} docs"
                f" {' '.join(args.policies)} -o {args.output}",
                file=sys.stderr,
            )
            return 1
        print(f"ok: {args.output} is up to date")
        return 0
    if args.output:
        try:
            write_text_atomic(args.output, page)
        except OSError as exc:
            print(f"{args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
            return 2
        n = len(policy.destinations)
        print(f"wrote {args.output}: {n} destination{'' if n == 1 else 's'}")
        return 0
    sys.stdout.write(page)
    return 0


def _report(args: argparse.Namespace) -> int:
    try:
        report = load_report(args.report)
        if args.format == "markdown":
            sys.stdout.write(summary_markdown(report))
        else:
            for line in summary_text(report):
                print(line)
    except ReportError as exc:
        message = str(exc) if exc.path else f"{args.report}: {exc}"
        print(f"error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
