"""Errors a user can cause. The CLI turns them into one line on stderr and exit status 2."""


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
