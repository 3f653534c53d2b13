"""`direct-uploads`: upload, verify, list, download, delete and abort files from the command line.

The server and credentials come from the environment or the options:

  DIRECT_UPLOADS_SERVER    base URL, e.g. http://127.0.0.1:8000 (or --server)
  DIRECT_UPLOADS_TOKEN     a JWT access token (from POST /v1/auth/token/pair)
  DIRECT_UPLOADS_USERNAME  or --username: sign in instead of a token; the password comes from
  DIRECT_UPLOADS_PASSWORD  or, when unset, a prompt
  XDG_CACHE_HOME           where the resume state lives (direct-uploads/uploads.json)

Exit codes (stable: scripts may rely on them):

  0    success
  1    usage: bad arguments, a local file that cannot be read, values the server refused (400/422)
  2    authentication: no or wrong credentials, token refused (401), access denied (403)
  3    not found (404): no such file, or not yours
  4    conflict or verification: wrong state (409), verification failed, too large or over quota
       (413), type not allowed (415), the file changed while it was sent
  5    network or storage unavailable: no answer, or 5xx/429 after every retry
  6    partial failure: some files of a multi-file upload failed, the others were uploaded
  7    differs: `verify` found that the local file is not the stored one
  130  interrupted (Ctrl-C); run the same upload again to resume it
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, NoReturn

from uploads.units import format_bytes

from .client import Client
from .errors import ETAG_MISSING, FILE_CHANGED, NOT_VERIFIABLE, ClientError
from .retry import RetryPolicy
from .state import default_state_path

EXIT_OK = 0
EXIT_USAGE = 1
EXIT_AUTH = 2
EXIT_NOT_FOUND = 3
EXIT_CONFLICT = 4
EXIT_UNAVAILABLE = 5
EXIT_PARTIAL = 6
EXIT_DIFFERS = 7
EXIT_INTERRUPTED = 130

_CONFLICT_CODES = frozenset(
    {
        "verification_failed",
        "checksum_mismatch",
        "parts_mismatch",
        FILE_CHANGED,
        ETAG_MISSING,
        NOT_VERIFIABLE,
    }
)
_SIZE = re.compile(r"^\s*(\d+)\s*([kmgt]?)(i?b)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


def exit_code(error: ClientError) -> int:
    """The exit code for a failed request (see the module docstring)."""
    if error.code in _CONFLICT_CODES:
        return EXIT_CONFLICT
    if error.status in (401, 403):
        return EXIT_AUTH
    if error.status == 404:
        return EXIT_NOT_FOUND
    if error.status in (409, 412, 413, 415):
        return EXIT_CONFLICT
    if error.status == 0 or error.status == 429 or error.status >= 500:
        return EXIT_UNAVAILABLE
    return EXIT_USAGE


def parse_size(text: str) -> int:
    """Bytes from `8388608`, `8M`, `8MiB`, `64k`: units are binary (1M = 1 MiB)."""
    match = _SIZE.match(text)
    if not match:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (try 8MiB or 8388608)")
    return int(match.group(1)) * _UNITS[match.group(2).lower()]


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number ≥ 1: {text!r}")
    return value


class _Parser(argparse.ArgumentParser):
    # argparse exits with 2 on a usage error; 2 means authentication here.
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    common = _Parser(add_help=False)
    common.add_argument("--server", help="server URL (default: $DIRECT_UPLOADS_SERVER)")
    common.add_argument(
        "--username",
        help="sign in as this user (password: $DIRECT_UPLOADS_PASSWORD or a prompt); "
        "default: $DIRECT_UPLOADS_TOKEN, else $DIRECT_UPLOADS_USERNAME",
    )
    common.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    common.add_argument(
        "--retries",
        type=int,
        default=RetryPolicy().attempts - 1,
        help="times a failed request is tried again, with backoff (default: %(default)s)",
    )

    parser = _Parser(
        prog="direct-uploads",
        description="Upload very large files to a Direct Uploads server, straight to its store.",
        epilog=__doc__.split("\n\n", 1)[1] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    upload = commands.add_parser("upload", parents=[common], help="upload files (resumable)")
    upload.add_argument("files", nargs="+", metavar="FILE")
    upload.add_argument(
        "--part-size", type=parse_size, help="bytes per part, e.g. 64MiB (default: automatic)"
    )
    upload.add_argument(
        "--concurrency", type=_positive, default=8, help="parts sent at once (default: 8)"
    )
    upload.add_argument(
        "--no-resume", action="store_true", help="start over even if an earlier run was cut short"
    )
    upload.add_argument(
        "--no-checksums",
        action="store_true",
        help="send no per-part SHA-256 (for a store that does not support them)",
    )
    upload.add_argument("--name", help="display name (one FILE only)")
    upload.add_argument("--description", help="description of every uploaded file")

    verify = commands.add_parser(
        "verify",
        parents=[common],
        help="check that a local file is the stored one, without downloading it",
    )
    verify.add_argument("path", metavar="PATH")
    verify.add_argument("id", metavar="FILE_ID")

    listing = commands.add_parser("list", parents=[common], help="list your files")
    listing.add_argument(
        "--status",
        help="completed (default), pending, uploading, aborted, failed or all",
    )

    download = commands.add_parser("download", parents=[common], help="download a file")
    download.add_argument("id", metavar="ID")
    download.add_argument("dest", metavar="DEST", help="a file path, or a directory")

    delete = commands.add_parser("delete", parents=[common], help="delete a file's record")
    delete.add_argument("id", metavar="ID")

    abort = commands.add_parser("abort", parents=[common], help="abort an unfinished upload")
    abort.add_argument("id", metavar="ID")
    return parser


class _Usage(Exception):
    """A usage problem found after parsing (missing server, --name with several files)."""


class _Output:
    """Human lines or one JSON document on stdout; messages and progress bars on stderr."""

    def __init__(self, as_json: bool, stdout: IO[str], stderr: IO[str]) -> None:
        self.as_json = as_json
        self.stdout = stdout
        self.stderr = stderr
        # While progress bars are drawn, text for the terminal goes above them through rich:
        # written straight to the terminal it would tear the bars apart.
        self.above_bars: Callable[[str], None] | None = None

    def line(self, text: str) -> None:
        if self.as_json:
            return
        if self.above_bars is not None and self.stdout.isatty():
            self.above_bars(text)
        else:
            print(text, file=self.stdout)

    def document(self, body: Any) -> None:
        if self.as_json:
            json.dump(body, self.stdout, indent=2, default=str)
            self.stdout.write("\n")

    def error(self, text: str) -> None:
        if self.above_bars is not None:
            self.above_bars(f"direct-uploads: {text}")
        else:
            print(f"direct-uploads: {text}", file=self.stderr)

    def bars_enabled(self) -> bool:
        # Progress only for a person watching: never with --json, never into a pipe or a log.
        return not self.as_json and self.stderr.isatty()


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, or a usage error (_Parser.error)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    out = _Output(args.json, sys.stdout, sys.stderr)
    try:
        with _client(args) as client:
            return int(COMMANDS[args.command](client, args, out))
    except _Usage as exc:
        out.error(str(exc))
        return EXIT_USAGE
    except ClientError as exc:
        out.error(f"{exc.detail} ({exc.code})")
        out.document({"error": exc.to_json()})
        return exit_code(exc)
    except OSError as exc:
        out.error(str(exc))
        out.document({"error": {"status": 0, "code": "os_error", "detail": str(exc)}})
        return EXIT_USAGE
    except KeyboardInterrupt:
        out.error("interrupted; run the same command again to resume an upload")
        return EXIT_INTERRUPTED


@contextmanager
def _client(args: argparse.Namespace) -> Iterator[Client]:
    server = args.server or os.environ.get("DIRECT_UPLOADS_SERVER")
    if not server:
        raise _Usage("no server: pass --server or set DIRECT_UPLOADS_SERVER")
    username = args.username
    token = None if username else os.environ.get("DIRECT_UPLOADS_TOKEN")
    if not username and not token:
        username = os.environ.get("DIRECT_UPLOADS_USERNAME")
    password = None
    if username:
        password = os.environ.get("DIRECT_UPLOADS_PASSWORD")
        if password is None:
            try:
                password = getpass.getpass(f"Password for {username}: ")
            except EOFError:  # no terminal, and nothing on standard input
                raise _Usage(
                    f"no password for {username}: set DIRECT_UPLOADS_PASSWORD "
                    "(or DIRECT_UPLOADS_TOKEN), or run in a terminal to be asked"
                ) from None
    elif not token:
        raise ClientError(
            401,
            "not_authenticated",
            "no credentials: set DIRECT_UPLOADS_TOKEN, or pass --username",
        )
    with Client(
        server,
        token=token,
        username=username,
        password=password,
        retry=RetryPolicy(attempts=max(0, args.retries) + 1),
        state_path=default_state_path(),
    ) as client:
        yield client


@contextmanager
def _bars(out: _Output) -> Iterator[Callable[[str], Callable[[int, int], None]] | None]:
    """A rich progress display with one bar per file (bytes, speed, time left), or None."""
    if not out.bars_enabled():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TaskID,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(binary_units=True),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(file=out.stderr),
    ) as progress:

        def bar(label: str) -> Callable[[int, int], None]:
            # Added on the first report: a file that fails before sending gets no empty bar.
            tasks: list[TaskID] = []

            def update(done: int, total: int) -> None:
                if not tasks:
                    tasks.append(progress.add_task(label, total=total))
                progress.update(tasks[0], completed=done, total=total)

            return update

        out.above_bars = lambda text: progress.console.print(text, markup=False, highlight=False)
        try:
            yield bar
        finally:
            out.above_bars = None


def _upload(client: Client, args: argparse.Namespace, out: _Output) -> int:
    if args.name and len(args.files) > 1:
        raise _Usage("--name applies to one FILE; give it one file at a time")
    results: list[dict[str, Any]] = []
    failures: list[int] = []
    with _bars(out) as bar:
        for path in args.files:
            try:
                result = client.upload(
                    path,
                    part_size=args.part_size,
                    concurrency=args.concurrency,
                    resume=not args.no_resume,
                    checksums=not args.no_checksums,
                    name=args.name,
                    description=args.description,
                    progress=bar(os.path.basename(path)) if bar else None,
                )
            except ClientError as exc:
                failures.append(exit_code(exc))
                results.append({"path": path, "ok": False, "error": exc.to_json()})
                out.error(f"{path}: {exc.detail} ({exc.code})")
                continue
            except OSError as exc:
                failures.append(EXIT_USAGE)
                error = {"status": 0, "code": "os_error", "detail": str(exc)}
                results.append({"path": path, "ok": False, "error": error})
                out.error(f"{path}: {exc}")
                continue
            results.append({"ok": True, **result.to_json()})
            resumed = ""
            if result.resumed:
                resumed = f", resumed with {result.parts_reused} parts stored"
            if result.parts_replaced:
                resumed += (
                    f" ({result.parts_replaced} stored parts were not this file's: sent again)"
                )
            out.line(
                f"{result.file.id}  {path}  {format_bytes(result.file.file_size)}  "
                f"{result.file.upload_status}{resumed}"
            )
    out.document({"files": results})
    if not failures:
        return EXIT_OK
    # Some made it: say so with one code, so a script knows to look at the per-file results.
    return EXIT_PARTIAL if len(failures) < len(args.files) else failures[0]


def _verify(client: Client, args: argparse.Namespace, out: _Output) -> int:
    result = client.verify(args.path, args.id)
    out.document(result.to_json())
    if result.matches:
        out.line(f"{args.path} matches {args.id} ({result.method} {result.stored})")
        return EXIT_OK
    out.line(
        f"{args.path} DIFFERS from {args.id}: {result.method} {result.local} != {result.stored}"
    )
    return EXIT_DIFFERS


def _list(client: Client, args: argparse.Namespace, out: _Output) -> int:
    files = list(client.list(status=args.status))
    out.document([dict(f.raw) for f in files])
    for f in files:
        out.line(
            f"{f.id}  {f.upload_status:<9}  {format_bytes(f.file_size):>10}  {f.created[:19]}  "
            f"{f.name or f.file_name}"
        )
    return EXIT_OK


def _download(client: Client, args: argparse.Namespace, out: _Output) -> int:
    with _bars(out) as bar:
        path = client.download(args.id, args.dest, progress=bar(args.id) if bar else None)
    size = path.stat().st_size
    out.document({"id": args.id, "path": str(path), "bytes": size})
    out.line(f"{path}  {format_bytes(size)}")
    return EXIT_OK


def _delete(client: Client, args: argparse.Namespace, out: _Output) -> int:
    client.delete(args.id)
    out.document({"id": args.id, "deleted": True})
    out.line(f"deleted {args.id}")
    return EXIT_OK


def _abort(client: Client, args: argparse.Namespace, out: _Output) -> int:
    client.abort(args.id)
    out.document({"id": args.id, "aborted": True})
    out.line(f"aborted {args.id}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Client, argparse.Namespace, _Output], int]] = {
    "upload": _upload,
    "verify": _verify,
    "list": _list,
    "download": _download,
    "delete": _delete,
    "abort": _abort,
}


if __name__ == "__main__":
    sys.exit(main())
