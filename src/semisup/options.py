"""Options that check themselves. An option is declared once, as a dataclass field with its
default, its one-line meaning and the constraint its values meet:

    threshold: float = option(0.95, "confidence above which ...", check=SHARE)

as scikit-learn declares `_parameter_constraints` beside its parameters. `check_values` tests
values against those declarations and raises one `UserError` line that names the option, so the
command line, a --config file and Python calls all get the same message. The vocabulary is
small: `Interval` (a number in a range, `int` or `float`), `Choice`, `Bool` and `File`; a
field whose default is None also takes None (not given). Rules between options live with the
config (`config.check_config`) or with the method that owns them (`Method.check`)."""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path

from .errors import UserError


def flag(name: str) -> str:
    """The command-line spelling of an option: lambda_u -> --lambda-u."""
    return "--" + name.replace("_", "-")


def option(default, help: str, check: Constraint | None = None):
    """A dataclass field: the default (a paper's, for a method), a one-line meaning (for --help
    and `semisup methods --verbose`) and the constraint every value meets."""
    return field(default=default, metadata={"help": help, "check": check})


class Constraint:
    """What a value must be. `problem(value)` is None for a good value, else the end of the
    message `--name value: <problem>`. `type` is what the command line parses the text as."""

    type: type = str

    def problem(self, value) -> str | None:
        raise NotImplementedError


def _number(v, kind: type) -> bool:
    """An int (not a bool) for int; an int or a float for float."""
    return not isinstance(v, bool) and isinstance(v, int if kind is int else (int, float))


def _yaml_text_number(s: str) -> bool:
    """A number in exponent form without a decimal point (1e-3), which YAML 1.1 reads as text."""
    try:
        float(s)
    except ValueError:
        return False
    return s.lower().count("e") == 1 and "." not in s


class Interval(Constraint):
    """A number of `type` (int or float) between `low` and `high` (None: unbounded); `closed`
    says which ends belong: both, left, right or neither. `unit` names what an int counts
    ("pixels"), for the message."""

    def __init__(self, type: type, low=None, high=None, closed: str = "both", unit: str = ""):
        if type not in (int, float) or closed not in ("both", "left", "right", "neither"):
            raise ValueError(f"Interval({type!r}, closed={closed!r}): int or float; both, left, right or neither")
        self.type, self.low, self.high, self.closed, self.unit = type, low, high, closed, unit
        self.low_in, self.high_in = closed in ("both", "left"), closed in ("both", "right")

    def contains(self, v) -> bool:
        if not _number(v, self.type) or v != v:  # NaN is in no interval
            return False
        if self.low is not None and (v < self.low or (v == self.low and not self.low_in)):
            return False
        return self.high is None or v < self.high or (v == self.high and self.high_in)

    def rule(self) -> str:
        """The range in words: 'in [0, 1)', '> 0', 'at least 0', 'at most 1', '< 1'."""
        if self.low is not None and self.high is not None:
            return f"in {'[' if self.low_in else '('}{self.low}, {self.high}{']' if self.high_in else ')'}"
        if self.low is not None:
            return f"at least {self.low}" if self.low_in else f"> {self.low}"
        if self.high is not None:
            return f"at most {self.high}" if self.high_in else f"< {self.high}"
        return ""

    def problem(self, v):
        if self.contains(v):
            return None
        if self.type is int:
            lowest = None if self.low is None else self.low if self.low_in else self.low + 1
            if self.high is None and lowest is not None:  # "a whole number of at least 1"
                return f"must be a whole number of {self.unit + ', ' if self.unit else ''}at least {lowest}"
            return f"must be a whole number{' of ' + self.unit if self.unit else ''} {self.rule()}".rstrip()
        rule = self.rule()
        if _number(v, float):
            return f"must be {rule}"
        joined = f"a number {rule}" if rule.startswith(("in", "<", ">")) else f"a number, {rule}"
        if isinstance(v, str) and _yaml_text_number(v):
            mantissa, exponent = v.lower().split("e")
            return f"must be {joined} (YAML reads {v} as text; write {mantissa}.0e{exponent})"
        return f"must be {joined}"


class Choice(Constraint):
    """One of the listed values."""

    def __init__(self, *values):
        self.values = values
        self.type = type(values[0])

    def problem(self, v):
        if v in self.values and type(v) is self.type:
            return None
        words = [str(x) for x in self.values]
        return f"choose {', '.join(words[:-1])} or {words[-1]}" if len(words) > 1 else f"must be {words[0]}"


class Bool(Constraint):
    """True or False (a YAML true/false; on the command line also yes/no, on/off, 1/0)."""

    type = bool

    def problem(self, v):
        return None if isinstance(v, bool) else "must be true or false"


class File(Constraint):
    """The path of an existing file; `hint` says what to give instead."""

    def __init__(self, hint: str = ""):
        self.hint = hint

    def problem(self, v):
        if isinstance(v, (str, Path)) and Path(v).is_file():
            return None
        return f"no such file{'; ' + self.hint if self.hint else ''}"


# the constraints most options take
COUNT = Interval(int, 1)  # steps, sizes, counts
WEIGHT = Interval(float, 0)  # loss weights, noise levels
POSITIVE = Interval(float, 0, closed="neither")  # learning rates, temperatures
SHARE = Interval(float, 0, 1)  # confidence thresholds, probabilities, shares of the run
DECAY = Interval(float, 0, 1, closed="left")  # EMA decays and momenta (1 would never move)
BOOL = Bool()


def check_of(f) -> Constraint | None:
    """The constraint declared on a dataclass field (None where it has none)."""
    return f.metadata.get("check")


def check_values(declared, values: dict) -> None:
    """Check each of `values` that the dataclass `declared` constrains; raise
    UserError, one line, at the first value outside its constraint. None passes where the
    field's default is None (the option not given)."""
    for f in fields(declared):
        c = check_of(f)
        if c is None or f.name not in values:
            continue
        v = values[f.name]
        if v is None and f.default is None:
            continue
        why = c.problem(v)
        if why is not None:
            raise UserError(f"{flag(f.name)} {v}: {why}")


@dataclass
class Checked:
    """A dataclass of options whose constructor checks them (a method's Hyper, TrainOptions),
    so that code that builds one directly gets the same message as the command line."""

    def __post_init__(self):
        check_values(type(self), vars(self))
