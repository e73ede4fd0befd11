"""Errors a user can cause. The CLI turns them into one line on stderr and exit status 2."""
import errno


class UserError(Exception):
    """Bad input from the user: a path, a file, an option. The message says what to do."""


class Problems:
    """Collects data problems. In strict mode (training) the first problem is an error;
    in report mode (`semisup data`) all of them are listed."""

    def __init__(self, strict: bool = True):
        self.strict = strict
        self.items: list[str] = []

    def add(self, msg: str) -> None:
        if self.strict:
            raise UserError(msg)
        self.items.append(msg)


class Stopped(Exception):
    """Training stopped on request (SIGTERM, Ctrl-C). The message says what was saved and how to go on;
    the CLI prints it as one line and exits with `status` (128 + the signal: 143, 130)."""

    def __init__(self, msg: str, status: int):
        super().__init__(msg)
        self.status = status


def first_line(e: BaseException) -> str:
    """An exception's message cut to its first line (its type's name when it has none), for a one-line error."""
    return (str(e).strip().splitlines() or [type(e).__name__])[0]


def out_of_memory(e: BaseException) -> bool:
    """CUDA's OutOfMemoryError, the CPU allocator's RuntimeError, or Python's MemoryError."""
    return isinstance(e, MemoryError) or (isinstance(e, RuntimeError) and any(
        s in str(e) for s in ("out of memory", "not enough memory", "can't allocate memory")))


def disk_error(e: OSError, path=None) -> UserError | None:
    """A full disk, a read-only file system or a permission refused, as one line naming the file and
    what to do; None for other OS errors."""
    where = e.filename or path
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return UserError(f"{where}: no space left on the disk; free some space or choose a folder on another disk")
    if e.errno == errno.EROFS:
        return UserError(f"{where}: on a read-only file system; choose a folder you can write")
    if e.errno in (errno.EACCES, errno.EPERM):
        return UserError(f"{where}: permission denied; choose a folder you can write")
    return None
