"""The ``redisbatch`` command line: one function per
command over the facade.

Exit statuses: 0 success; 1 a job that ended FAILED or ABORTED, invalid data
(``validate``), or a control command that changed nothing; 2 usage errors,
an unknown job, an unreachable Redis, a bad schema file, a processor that
cannot be imported — each as one line on stderr, without a traceback.
``--json`` prints one JSON document on stdout. Progress goes to stderr: live
on a terminal, a plain line every few seconds otherwise.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

import msgspec

__all__ = ["main"]

DEFAULT_URL: Final = "redis://localhost:6379/0"
FINAL_STATUS: Final = {"COMPLETED": 0, "FAILED": 1, "ABORTED": 1}


class CliError(Exception):
    """A one-line message and the exit status it ends the command with."""

    def __init__(self, message: str, status: int = 2) -> None:
        super().__init__(message)
        self.status = status


# ---------------------------------------------------------------- helpers


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError("must be a non-negative number of seconds")
    return value


def _version() -> str:
    import redisbatch

    version = getattr(redisbatch, "__version__", None)
    if isinstance(version, str):
        return version
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("redisbatch")
    except PackageNotFoundError:
        return "unknown"


def _say(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def _client(args: argparse.Namespace) -> Any:
    import redis

    return redis.Redis.from_url(args.url, socket_connect_timeout=5)


def _facade(args: argparse.Namespace, schema: Any = None, **options: Any) -> Any:
    from ._facade import DistributedImport

    return DistributedImport(_client(args), schema, namespace=args.namespace, **options)


def _status_or_fail(di: Any, args: argparse.Namespace) -> Any:
    status = di.status(args.job_id)
    if status is None:
        raise CliError(f"no job {args.job_id!r} in namespace {args.namespace!r}")
    return status


def _json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value).decode() + "\n")


def _when(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _ago(epoch: float) -> str:
    from ._progress import describe_eta

    return describe_eta(time.time() - epoch) + " ago"


def _final_status(status: Any) -> int:
    return FINAL_STATUS.get(status.state, 1) if status is not None else 1


def _progress(mode: str) -> Any:
    from ._progress import Progress

    return Progress(mode)


# ---------------------------------------------------------------- commands


def cmd_demo(args: argparse.Namespace) -> int:
    from ._demo import run_demo

    try:
        return run_demo(records=args.records, workers=args.workers, csv_path=args.csv)
    except Exception as exc:  # a one-line message, no traceback
        raise CliError(f"{type(exc).__name__}: {exc}") from None


def cmd_validate(args: argparse.Namespace) -> int:
    from ._dryrun import dry_run
    from ._schema_file import load_schema
    from ._source_spec import source_and_parser

    schema = load_schema(args.schema)
    source, parser = source_and_parser(
        args.source, args.format, delimiter=args.delimiter, record_tag=args.record_tag
    )
    report = dry_run(schema, source, parser, first_errors=args.show)
    if args.json:
        _json(report)
    else:
        print(
            f"{report.source}: {report.total_records:,} records, "
            f"{report.valid_records:,} valid, {report.invalid_records:,} invalid "
            f"({report.elapsed:.2f}s)"
        )
        for code, count in report.errors_by_code.items():
            print(f"  {code:<20} {count:,}")
        shown = len(report.first_errors)
        if shown:
            print("first error:" if shown == 1 else f"first {shown} errors:")
        for e in report.first_errors:
            value = "" if e.value is None else f" (value {e.value!r})"
            print(f"  row {e.row}: {e.field}: {e.message}{value}")
    return 1 if report.invalid_records else 0


def cmd_prepare(args: argparse.Namespace) -> int:
    from ._exceptions import SourceError
    from ._keys import check_job_id
    from ._schema_file import load_schema
    from ._source_spec import source_and_parser

    schema = load_schema(args.schema)
    source, parser = source_and_parser(
        args.source, args.format, delimiter=args.delimiter, record_tag=args.record_tag
    )
    if args.resume and not args.job_id:
        raise CliError("--resume needs the --job-id of the interrupted prepare")
    job_id = check_job_id(args.job_id or uuid.uuid4().hex)
    di = _facade(
        args,
        schema,
        batch_size=args.batch_size,
        tolerated_failure_count=args.tolerated_failure_count,
        tolerated_failure_percentage=args.tolerated_failure_percentage,
    )
    di.redis.ping()
    from ._progress import following

    progress = _progress("prepare")
    started = time.monotonic()
    try:
        with following(progress, lambda: di.status(job_id)):
            result = di.prepare(source, parser, job_id=job_id, resume=args.resume)
    except SourceError as exc:
        status = di.status(job_id)
        if status is None:  # nothing was created: a usage error
            raise
        raise CliError(f"{exc} (job {job_id} is {status.state})", 1) from None
    except KeyboardInterrupt:
        progress.clear()
        _say(f"interrupted; continue with: redisbatch prepare ... --job-id {job_id} --resume")
        return 130
    progress.clear()
    status = di.status(job_id)
    print(result.job_id, flush=True)
    _say(
        f"prepared {result.total_records:,} records in {result.total_batches:,} "
        f"batch{'' if result.total_batches == 1 else 'es'} "
        f"({time.monotonic() - started:.2f}s); job {status.state if status else 'deleted'}"
    )
    if status is not None and status.state in ("FAILED", "ABORTED"):
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from ._supervise import WorkerSpec, run_here, run_processes, wait_for_job

    spec = WorkerSpec(
        url=args.url,
        namespace=args.namespace,
        job_id=args.job_id,
        processor=args.processor,
        schema=args.schema,
        concurrency=args.concurrency,
        stale_timeout=args.stale_timeout,
    )
    spec.load()  # a missing module or a bad schema: exit 2 before any process starts
    di = _facade(args)
    if wait_for_job(lambda: di.status(args.job_id), args.wait_for_job) is None:
        _status_or_fail(di, args)
    if args.schema is None:
        _say("no --schema: records reach the processor as read, without validation")
    started = time.monotonic()
    progress = _progress("worker")
    if args.processes == 1:
        stopped = run_here(spec, progress)
        codes = [stopped]
        stopped = stopped if stopped >= 128 else 0
    else:
        signum, codes = run_processes(
            spec, args.processes, lambda: di.status(args.job_id), progress
        )
        stopped = 128 + signum if signum is not None else 0
    status = di.status(args.job_id)
    if status is not None:
        progress.update(status, final=True)
    elapsed = time.monotonic() - started
    if status is None:
        raise CliError(f"job {args.job_id} was deleted while the workers ran", 1)
    _say(
        f"{status.state}: {status.processed_records:,} processed, "
        f"{status.failed_records:,} failed, {args.processes} process"
        f"{'es' if args.processes > 1 else ''}, {elapsed:.1f}s"
    )
    if status.is_complete:
        return _final_status(status)
    if stopped:
        _say(f"stopped; job {args.job_id} is {status.state}: start workers again to finish it")
        return stopped
    crashed = [code for code in codes if code]
    return max(crashed) if crashed else 1


def cmd_status(args: argparse.Namespace) -> int:
    from ._progress import describe_eta, settled

    status = _status_or_fail(_facade(args), args)
    if args.json:
        _json(status)
        return 0
    total = status.total_records
    done = settled(status)
    share = f" ({done / total:.1%} done)" if total else ""
    lines = [
        ("job", status.job_id),
        ("state", status.state),
        (
            "records",
            f"{total:,} total, {status.processed_records:,} processed, "
            f"{status.failed_records:,} failed{share}",
        ),
        (
            "batches",
            f"{status.total_batches:,} total: {status.pending_batches:,} pending, "
            f"{status.processing_batches:,} processing, {status.completed_batches:,} completed, "
            f"{status.failed_batches:,} failed",
        ),
    ]
    lines += [("attempt", str(status.attempt)), ("workers", str(status.workers))]
    if status.rate is not None:
        lines.append(("rate", f"{status.rate:,.0f} records/s"))
    if not status.is_complete:
        lines.append(("eta", describe_eta(status.eta)))
    lines += [("created", _when(status.created_at)), ("started", _when(status.started_at))]
    if status.completed_at is not None:
        took = status.completed_at - (status.started_at or status.created_at)
        lines.append(("finished", f"{_when(status.completed_at)} (took {took:.2f}s)"))
    if status.error:
        lines.append(("error", status.error))
    for name, value in lines:
        print(f"{name:<9}{value}")
    return 0


def cmd_jobs(args: argparse.Namespace) -> int:
    from ._progress import describe_eta, settled

    jobs = _facade(args).jobs()
    if args.json:
        _json(jobs)
        return 0
    if not jobs:
        _say(f"no jobs in namespace {args.namespace!r}")
        return 0
    width = max(len("JOB"), *(len(j.job_id) for j in jobs))
    print(
        f"{'JOB':<{width}}  {'STATE':<10} {'DONE':>21} {'FAILED':>9} {'RATE/S':>8} "
        f"{'ETA':>7} {'WORKERS':>7} {'ATTEMPT':>7}  CREATED"
    )
    for j in jobs:
        done = f"{settled(j):,}/{j.total_records:,}"
        rate = "-" if j.rate is None else f"{j.rate:,.0f}"
        eta = "-" if j.is_complete else describe_eta(j.eta)
        print(
            f"{j.job_id:<{width}}  {j.state:<10} {done:>21} {j.failed_records:>9,} {rate:>8} "
            f"{eta:>7} {j.workers:>7} {j.attempt:>7}  {_ago(j.created_at)}"
        )
    return 0


def cmd_watch(args: argparse.Namespace) -> int:
    from ._exceptions import JobNotFoundError

    di = _facade(args)
    progress = _progress("watch")
    last = None
    try:
        for status in di.watch(args.job_id, interval=args.interval):
            last = status
            progress.update(status, final=status.is_complete)
    except JobNotFoundError:
        progress.clear()
        _status_or_fail(di, args)  # unknown: exit 2 with the usual line
        raise CliError(f"job {args.job_id} was deleted while watched", 1) from None
    return _final_status(last)


def cmd_retry_failed(args: argparse.Namespace) -> int:
    from ._exceptions import ConfigurationError

    di = _facade(args)
    _status_or_fail(di, args)
    try:
        count = di.retry_failed(args.job_id, include_invalid=args.include_invalid)
    except ConfigurationError as exc:
        raise CliError(str(exc), 1) from None
    if not count:
        what = "failed or invalid" if args.include_invalid else "failed"
        _say(f"job {args.job_id}: no {what} records to retry; nothing changed")
        return 1
    status = _status_or_fail(di, args)
    print(
        f"redriving {count:,} record{'' if count == 1 else 's'} of job {args.job_id} "
        f"(attempt {status.attempt}); start workers to run them"
    )
    return 0


def cmd_failed(args: argparse.Namespace) -> int:
    di = _facade(args)
    _status_or_fail(di, args)
    if args.output in (None, "-"):
        count = di.export_failed(args.job_id, sys.stdout, format=args.format)
        sys.stdout.flush()
    else:
        count = di.export_failed(args.job_id, args.output, format=args.format)
        _say(f"wrote {count:,} failed records to {args.output}")
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from ._dashboard import serve

    try:
        import starlette  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs the web extra: pip install 'redisbatch[web]' ({exc.name} missing)"
        ) from None
    _client(args).ping()  # an unreachable Redis: exit 2 before serving
    serve(
        args.url,
        args.namespace,
        host=args.host,
        port=args.port,
        allow_actions=args.allow_actions,
        interval=args.interval,
    )
    return 0


def _control(verb: str, done: str) -> Callable[[argparse.Namespace], int]:
    def command(args: argparse.Namespace) -> int:
        di = _facade(args)
        status = _status_or_fail(di, args)
        if getattr(di, verb)(args.job_id):
            print(f"{done} job {args.job_id}")
            return 0
        _say(f"job {args.job_id} is {status.state}: not {done}")
        return 1

    command.__name__ = f"cmd_{verb}"
    return command


cmd_pause = _control("pause", "paused")
cmd_resume = _control("resume", "resumed")
cmd_abort = _control("abort", "aborted")
cmd_delete = _control("delete", "deleted")


# ---------------------------------------------------------------- parser


def _source_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("source", help="a file path or an http(s) URL")
    command.add_argument(
        "--schema", required=True, help="a .json/.toml schema file, or MODULE:ATTR"
    )
    command.add_argument(
        "--format",
        choices=("csv", "json", "ndjson", "xml"),
        help="the source's format (default: from its extension)",
    )
    command.add_argument("--delimiter", help="CSV delimiter: one character, tab or auto")
    command.add_argument("--record-tag", help="XML element holding one record")


def _prepare_options(prepare: argparse.ArgumentParser) -> None:
    _source_options(prepare)
    prepare.add_argument(
        "--batch-size", type=_positive, default=500, help="records per batch (default %(default)s)"
    )
    prepare.add_argument("--job-id", help="the job id (default: a new uuid4 hex)")
    prepare.add_argument(
        "--resume", action="store_true", help="continue an interrupted prepare of --job-id"
    )
    prepare.add_argument(
        "--tolerated-failure-count",
        type=int,
        metavar="N",
        help="end the job FAILED once more than N records failed (every worker enforces it)",
    )
    prepare.add_argument(
        "--tolerated-failure-percentage",
        type=float,
        metavar="P",
        help="end the job FAILED once more than P%% of its records failed",
    )


def _worker_options(worker: argparse.ArgumentParser) -> None:
    worker.add_argument("job_id", help="the job to work on (as prepare printed it)")
    worker.add_argument("--processor", required=True, help="MODULE:FUNC")
    worker.add_argument("--schema", help="a .json/.toml schema file, or MODULE:ATTR")
    worker.add_argument("--processes", type=_positive, default=1, help="worker processes")
    worker.add_argument(
        "--concurrency",
        type=_positive,
        help="records of a batch in the processor at once (asyncio; async def processors)",
    )
    worker.add_argument(
        "--stale-timeout", type=_seconds, help="seconds before a silent worker's batch is taken"
    )
    worker.add_argument(
        "--wait-for-job", type=_seconds, default=0.0, help="seconds to wait for the job to appear"
    )


def _dashboard_options(dashboard: argparse.ArgumentParser) -> None:
    dashboard.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    dashboard.add_argument("--port", type=int, default=8765, help="port (%(default)s; 0: any free)")
    dashboard.add_argument(
        "--allow-actions",
        action="store_true",
        help="offer pause/resume/abort/retry failed, with the token printed at start-up "
        "(or $REDISBATCH_DASHBOARD_TOKEN)",
    )
    dashboard.add_argument(
        "--interval", type=_seconds, default=1.0, help="seconds between refreshes (1.0)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="redisbatch", description="Distributed batch imports on Redis."
    )
    parser.add_argument("--version", action="version", version=f"redisbatch {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    redis_options = argparse.ArgumentParser(add_help=False)
    redis_options.add_argument(
        "--url",
        default=os.environ.get("REDIS_URL") or DEFAULT_URL,
        help="Redis URL (default: $REDIS_URL, else %(default)s)",
    )
    redis_options.add_argument(
        "--namespace",
        default=os.environ.get("REDISBATCH_NAMESPACE") or "redisbatch",
        help="key prefix (default: $REDISBATCH_NAMESPACE, else %(default)s)",
    )

    def add(name: str, help: str, *, redis: bool = True) -> argparse.ArgumentParser:
        return commands.add_parser(
            name, help=help, description=help, parents=[redis_options] if redis else []
        )

    demo = add(
        "demo", "generate a users CSV, import it with several workers, print a summary",
        redis=False,
    )  # fmt: skip
    demo.add_argument("--records", type=_positive, default=100_000, help="users to generate")
    demo.add_argument("--workers", type=_positive, default=4, help="worker processes")
    demo.add_argument("--csv", help="where to write the generated CSV (default: a file it names)")

    # --url/--namespace are accepted (every command takes them) but never used.
    validate = add("validate", "check a whole source against a schema, without Redis")
    _source_options(validate)
    validate.add_argument("--json", action="store_true", help="one JSON document on stdout")
    validate.add_argument("--show", type=int, default=20, help="errors to list (default 20)")

    _prepare_options(add("prepare", "store a source as a job's batches; prints the job id"))
    _worker_options(add("worker", "process a job's batches until it is done"))

    for name, help in (
        ("status", "a job's state and counts"),
        ("watch", "a job's live progress until it ends"),
        ("failed", "export a job's failed and invalid records"),
        ("pause", "stop handing out a job's batches"),
        ("resume", "hand out a paused job's batches again"),
        ("abort", "end a job as ABORTED"),
        ("delete", "remove every key of a job"),
    ):
        command = add(name, help)
        command.add_argument("job_id", help="the job's id")
        if name == "status":
            command.add_argument("--json", action="store_true", help="one JSON document")
        elif name == "watch":
            command.add_argument(
                "--interval", type=_seconds, default=1.0, help="seconds between refreshes (1.0)"
            )
        elif name == "failed":
            command.add_argument(
                "--format",
                choices=("csv", "jsonl"),
                default="csv",
                help="csv or jsonl, ready to fix and import again (default %(default)s)",
            )
            command.add_argument("-o", "--output", help="file to write (default: stdout)")
    retry = add("retry-failed", "run a finished job's failed records again (a new attempt)")
    retry.add_argument("job_id", help="the job's id")
    retry.add_argument(
        "--include-invalid",
        action="store_true",
        help="also invalid records (not duplicates or unreadable rows): after a schema fix",
    )
    jobs = add("jobs", "the namespace's jobs, newest first")
    jobs.add_argument("--json", action="store_true", help="one JSON document")
    _dashboard_options(add("dashboard", "a live web page of the namespace's jobs, and /metrics"))
    return parser


COMMANDS: Final[dict[str, Callable[[argparse.Namespace], int]]] = {
    "demo": cmd_demo,
    "validate": cmd_validate,
    "prepare": cmd_prepare,
    "worker": cmd_worker,
    "status": cmd_status,
    "jobs": cmd_jobs,
    "watch": cmd_watch,
    "failed": cmd_failed,
    "retry-failed": cmd_retry_failed,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "abort": cmd_abort,
    "delete": cmd_delete,
    "dashboard": cmd_dashboard,
}


def _fail(message: str, status: int) -> int:
    print(f"redisbatch: {message}", file=sys.stderr, flush=True)
    return status


def _broken_pipe() -> NoReturn:
    # The reader went away (`redisbatch failed JOB | head`): stop quietly.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    import redis.exceptions

    from ._exceptions import RedisBatchError
    from ._sources import redact

    try:
        return COMMANDS[args.command](args)
    except CliError as exc:
        return _fail(str(exc), exc.status)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _broken_pipe()
    except (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError) as exc:
        where = redact(getattr(args, "url", "") or "")
        return _fail(f"cannot reach Redis at {where}: {exc}", 2)
    except redis.exceptions.RedisError as exc:
        return _fail(f"Redis error: {type(exc).__name__}: {exc}", 2)
    except (RedisBatchError, LookupError, ValueError, TypeError) as exc:
        return _fail(
            str(exc) if isinstance(exc, RedisBatchError) else f"{type(exc).__name__}: {exc}", 2
        )
    except OSError as exc:
        return _fail(f"{exc.strerror or exc}: {exc.filename or ''}".rstrip(": "), 2)


if __name__ == "__main__":
    sys.exit(main())
