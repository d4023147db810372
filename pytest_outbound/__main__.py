"""``python -m pytest_outbound``: work with policies and reports without running tests.

    docs [POLICY...] [--report R] [-o OUT] [--title T] [--check [PAGE]]
                                        render the documentation page (with --report, the
                                        page a full run would write, from its evidence)
    check [POLICY...] [--report R --require-coverage]
                                        validate policy files; judge coverage on a report
    merge REPORT... -o OUT              one report from many (CI shards)
    report REPORT.json [--format text|markdown]     summarise a saved report
    sandbox [--policy P...] [--mode M] -- COMMAND...
                                        run COMMAND in the sandbox (Linux): its only road
                                        out is a gateway that judges; print the summary
    init --from-report R [-o POLICY]    a draft policy from a run's report; appends to POLICY
                                        only what it does not allow yet (without -o: prints)
    export --format harden-runner|bullfrog|hosts POLICY...
                                        the policy as a CI runner firewall's allow-list

Exit status: 0 success; 1 ``docs --check`` found the page out of date, or ``check`` found
documented destinations no test exercised; 2 usage errors, invalid policies, or a
missing/invalid report, or reports that cannot be merged. Errors are single lines
(``file:line: message``), never tracebacks.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pytest_outbound._docs import (
    DEFAULT_TITLE,
    docs_diff,
    evidence_from_records,
    render_docs,
)
from pytest_outbound._errors import PolicyError
from pytest_outbound._policy import Policy
from pytest_outbound._report import (
    ReportError,
    destination_from_json,
    dumps_report,
    load_report,
    request_from_json,
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
        print(
            f"{PROG}: error: choose a command: docs, check, merge, report, init, export or sandbox",
            file=sys.stderr,
        )
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
        help="render the documentation page from policy files or a report",
        description=(
            "Render the Markdown page of the documented destinations (no tests run). With"
            " --report, the page a full run would write: the report's evidence of which tests"
            " exercised each destination (a merged report's too); the destinations are the"
            " report's unless POLICY files are named. Without it, the page says it holds the"
            " policy alone."
        ),
    )
    docs.add_argument("policies", nargs="*", metavar="POLICY", help="TOML policy file(s)")
    docs.add_argument("--report", metavar="R", help="a run's (or a merged) JSON report")
    docs.add_argument("-o", "--output", metavar="OUT", help="write the page here (atomically)")
    docs.add_argument("--title", default=DEFAULT_TITLE, help=f'page title ("{DEFAULT_TITLE}")')
    docs.add_argument(
        "--check",
        nargs="?",
        const="",
        metavar="PAGE",
        help="do not write: exit 1 with a diff if PAGE (or OUT) is not the page rendered",
    )
    docs.set_defaults(run=_docs)

    check = sub.add_parser(
        "check",
        help="validate policy files; judge coverage on a report",
        description=(
            "Validate policy files; print every error as file:line: message. With --report"
            " and --require-coverage, fail when a documented destination was exercised by no"
            " test of that (merged) report."
        ),
    )
    check.add_argument("policies", nargs="*", metavar="POLICY", help="TOML policy file(s)")
    check.add_argument("--report", metavar="R", help="a run's (or a merged) JSON report")
    check.add_argument(
        "--require-coverage",
        action="store_true",
        help="exit 1 when a documented destination of the report was exercised by no test",
    )
    check.set_defaults(run=_check)

    merge = sub.add_parser(
        "merge",
        help="combine the reports of several runs (CI shards) into one",
        description=(
            "One report from many, as one run with all their tests would have written it."
            " Refuses reports of another schema version, another policy (policy_digest) or"
            " mode, and broken files, naming the file."
        ),
    )
    merge.add_argument("reports", nargs="+", metavar="REPORT", help="JSON reports to merge")
    merge.add_argument(
        "-o", "--output", metavar="OUT", required=True, help="the merged report (atomically)"
    )
    merge.set_defaults(run=_merge)

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

    init = sub.add_parser(
        "init",
        help="draft a policy from a run's report (adds only what is missing)",
        description=(
            "Draft a policy from a report written by --outbound-report (best from an audit"
            " run): one destination per service the run contacted undocumented, as"
            " pytest --outbound-learn writes it. With -o POLICY, append to that file only what"
            " it does not allow yet (created if missing); without, print the draft."
        ),
    )
    init.add_argument("--from-report", required=True, metavar="R", help="a run's JSON report")
    init.add_argument("-o", "--output", metavar="POLICY", help="the policy file to write or extend")
    init.set_defaults(run=_init)

    export = sub.add_parser(
        "export",
        help="print the policy as a CI runner firewall's allow-list",
        description=(
            "Print the allowed hosts of POLICY files, one per line, as a CI runner firewall"
            " takes them: harden-runner (allowed-endpoints, host:port), bullfrog"
            " (allowed-domains) or hosts (one host pattern per line). What a format cannot"
            " take is said on stderr, as # comments."
        ),
    )
    export.add_argument("policies", nargs="+", metavar="POLICY", help="TOML policy file(s)")
    export.add_argument("--format", required=True, choices=("harden-runner", "bullfrog", "hosts"))
    export.set_defaults(run=_export)

    sandbox = sub.add_parser(
        "sandbox",
        help="run a command in the sandbox (Linux) and print the summary",
        description=(
            "Run COMMAND, and everything it starts, in a private network namespace (Linux user"
            " namespaces) whose only road out is pytest-outbound's gateway (HTTP CONNECT, HTTP"
            " proxy, SOCKS5; the proxy variables point to it) and DNS responder, which judge"
            " every request and lookup by the policy and record the program that made it."
            " Then print the summary. Exit status: the command's; 1 when it succeeded but"
            " something was blocked (--mode enforce); 2 for a usage error; 127 when the"
            " command cannot start."
        ),
    )
    sandbox.add_argument(
        "--policy", action="append", default=[], metavar="P", help="a TOML policy file; repeatable"
    )
    sandbox.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="PATTERN",
        help="also allow this host pattern; repeatable",
    )
    sandbox.add_argument(
        "--mode",
        choices=("audit", "enforce"),
        default="audit",
        help="audit (record, let through: default) or enforce (refuse what is not allowed)",
    )
    sandbox.add_argument("--report", metavar="PATH", help="write the JSON report here")
    sandbox.add_argument(
        "--offline", action="store_true", help="refuse every connection, documented or not"
    )
    sandbox.add_argument(
        "--no-machine-values",
        dest="machine_values",
        action="store_false",
        help="do not scan for this machine's hostname, user and addresses (finding them asks"
        " the resolver for this machine's own name)",
    )
    sandbox.add_argument("command", nargs=argparse.REMAINDER, metavar="-- COMMAND...")
    sandbox.set_defaults(run=_sandbox)
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
    if not args.policies and not args.report:
        print(f"{PROG} check: error: name POLICY files, or --report R", file=sys.stderr)
        return 2
    if args.require_coverage and not args.report:
        print(f"{PROG} check: error: --require-coverage needs --report R", file=sys.stderr)
        return 2
    loaded, errors = _load(args.policies)
    for path, policy in loaded:
        n = len(policy.destinations)
        print(f"ok: {n} destination{'' if n == 1 else 's'} in {path}")
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 2
    if not args.report:
        return 0
    report = _load_report(args.report)
    if report is None:
        return 2
    unexercised = [d["name"] for d in report["destinations"] if not d["contacted"]]
    documented = len(report["destinations"])
    print(
        f"{args.report}: {documented - len(unexercised)} of {documented} documented"
        f" destination{'' if documented == 1 else 's'} exercised"
    )
    if args.require_coverage and unexercised:
        print(
            f"{args.report}: {len(unexercised)} documented destination(s) were exercised by no"
            f" test: {', '.join(unexercised)}",
            file=sys.stderr,
        )
        return 1
    return 0


def _load_report(path: str) -> dict[str, Any] | None:
    """The report at ``path``, or None after saying on stderr what is wrong with it."""
    try:
        return load_report(path)
    except ReportError as exc:
        print(f"error: {exc if exc.path else f'{path}: {exc}'}", file=sys.stderr)
        return None


def _merge(args: argparse.Namespace) -> int:
    from pytest_outbound._merge import merge_reports

    loaded = []
    for path in args.reports:
        report = _load_report(path)
        if report is None:
            return 2
        loaded.append((path, report))
    try:
        merged = merge_reports(loaded)
    except ReportError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        write_text_atomic(args.output, dumps_report(merged))
    except OSError as exc:
        print(f"{args.output}: cannot write: {exc.strerror or exc}", file=sys.stderr)
        return 2
    n = len(loaded)
    print(
        f"wrote {args.output}: {n} report{'' if n == 1 else 's'},"
        f" {len(merged['requests'])} request(s), {len(merged['shards'])} shard(s)"
    )
    return 0


def _docs(args: argparse.Namespace) -> int:
    if not args.policies and not args.report:
        print(f"{PROG} docs: error: name POLICY files, or --report R", file=sys.stderr)
        return 2
    loaded, errors = _load(args.policies)
    if errors:
        for error in errors:
            print(error, file=sys.stderr)
        return 2
    policy = Policy()
    for _, one in loaded:
        policy = policy.merge(one)
    destinations = list(policy.destinations)
    evidence = None
    if args.report:
        report = _load_report(args.report)
        if report is None:
            return 2
        try:
            if not args.policies:
                destinations = [destination_from_json(d) for d in report["destinations"]]
            evidence = evidence_from_records([request_from_json(r) for r in report["requests"]])
        except ReportError as exc:
            print(f"error: {args.report}: {exc}", file=sys.stderr)
            return 2
    page = render_docs(destinations, evidence, title=args.title)
    if args.check is not None:
        target = args.check or args.output
        if not target:
            print(
                f"{PROG} docs: error: --check needs the page to check (--check PAGE or -o OUT)",
                file=sys.stderr,
            )
            return 2
        try:
            current = Path(target).read_text(encoding="utf-8")
        except FileNotFoundError:
            current = ""
        except (OSError, UnicodeDecodeError) as exc:
            print(f"{target}: cannot read: {exc}", file=sys.stderr)
            return 2
        diff = docs_diff(page, current, target)
        if diff:
            sys.stdout.write(diff)
            sources = " ".join(
                [*args.policies, *(["--report", args.report] if args.report else [])]
            )
            print(
                f"{target} is out of date; regenerate it with: {PROG} docs {sources} -o {target}",
                file=sys.stderr,
            )
            return 1
        print(f"ok: {target} is up to date")
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


def _init(args: argparse.Namespace) -> int:
    from pytest_outbound._learn import LearnError, draft, learn_into, summary_lines

    report = _load_report(args.from_report)
    if report is None:
        return 2
    try:
        if not args.output:
            learned = draft(report)
            sys.stdout.write(learned.text)
        else:
            learned = learn_into(args.output, report)
    except LearnError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    lines = summary_lines(args.output or args.from_report, learned)
    if args.output:
        print(lines[0].removeprefix("learned: "))
    elif not learned.added:
        print(f"nothing to draft: every request of {args.from_report} was allowed", file=sys.stderr)
    for line in lines[1:]:
        print(line.replace("learned: ", "note: ", 1), file=sys.stderr)
    return 0


def _export(args: argparse.Namespace) -> int:
    from pytest_outbound._export import export, render

    loaded, errors = _load(args.policies)
    for error in errors:
        print(error, file=sys.stderr)
    if errors:
        return 2
    policy = Policy()
    for _, one in loaded:
        policy = policy.merge(one)
    out, comments = render(export(policy, args.format))
    sys.stdout.write(out)
    sys.stderr.write(comments)
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


def _sandbox(args: argparse.Namespace) -> int:
    from pytest_outbound._sandbox._run import run_command

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    return run_command(
        command,
        policies=args.policy,
        allow=args.allow,
        mode=args.mode,
        report=args.report,
        offline=args.offline,
        machine_values=args.machine_values,
    )


if __name__ == "__main__":
    raise SystemExit(main())
