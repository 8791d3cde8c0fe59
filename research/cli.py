"""How every command-line entry point ends. A problem the user can fix (a bad config, unusable data, a missing or
unwritable path, a full disk, a broken config or sweep file) prints `error: <what>. Fix: <how>` and exits 2, with
no traceback unless `--debug` is given; a signal exits 130."""

from __future__ import annotations

import argparse
import errno
import functools
import sys
from collections.abc import Callable

from research.config import ConfigError

EXIT_ERROR, EXIT_INTERRUPTED = 2, 130

_OS_FIXES = {
    errno.ENOENT: ("no such file or directory", "check the path"),
    errno.EACCES: ("permission denied", "choose a path you may read and write, or fix its permissions"),
    errno.EPERM: ("operation not permitted", "choose a path you may read and write, or fix its permissions"),
    errno.EROFS: ("read-only file system", "write the outputs to a writable directory (--workdir / --out)"),
    errno.ENOSPC: ("no space left on device", "free space or write to another disk; the last verified "
                   "checkpoint is kept and the run resumes from it"),
    errno.EDQUOT: ("disk quota exceeded", "free space or write to another disk"),
    errno.EISDIR: ("is a directory, not a file", "give the path of a file"),
    errno.ENOTDIR: ("a file is in the way where a directory is needed", "give a directory path, or move the file"),
    errno.EEXIST: ("a file is in the way where a directory is needed", "give a directory path, or move the file"),
}


def describe_os_error(e: OSError) -> str:
    problem, fix = _OS_FIXES.get(e.errno, (e.strerror or str(e), "check the path and the disk"))
    where = e.filename if e.filename is not None else "a file"
    return f"{where}: {problem}. Fix: {fix}."


def add_debug_flag(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    return parser


def entry_point(main: Callable[[list[str] | None], int]) -> Callable[[list[str] | None], int]:
    """Decorate a `main(argv) -> exit code`: user-fixable errors become one `error:` line and exit 2 (with
    `--debug` in argv they are raised as they are); Ctrl-C exits 130."""

    @functools.wraps(main)
    def guarded(argv: list[str] | None = None) -> int:
        debug = "--debug" in (sys.argv[1:] if argv is None else argv)
        try:
            return main(argv)
        except KeyboardInterrupt as e:
            print(f"interrupted{': ' + str(e) if str(e) else ''}", file=sys.stderr)
            return EXIT_INTERRUPTED
        except (ConfigError, OSError, SyntaxError) as e:
            if debug:
                raise
            print(f"error: {message(e)}", file=sys.stderr)
            return EXIT_ERROR

    return guarded


def message(e: BaseException) -> str:
    if isinstance(e, SyntaxError):  # a config or sweep file that is not valid Python
        return f"{e.filename}:{e.lineno}: {e.msg}. Fix: correct the Python syntax there."
    if isinstance(e, OSError):
        return describe_os_error(e)
    return str(e)
