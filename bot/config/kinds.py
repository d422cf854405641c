"""The kinds of variable (whole number, number, choice, URL, secret, id list, …) and the reader that applies them.

Each kind knows how to turn a variable's text into a value and what to say when it cannot: one line,
`NAME: expected …, got '…'`, or `NAME: expected …` alone for a secret, whose value is never repeated.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from urllib.parse import urlsplit

from bot.access.policy import PolicyError, parse_id_list

T = TypeVar("T")
_INTEGER = re.compile(r"[+-]?\d+")
_LOOPBACK = {"127.0.0.1", "localhost", "::1"}


class ConfigError(Exception):
    """One line naming the variable and what it must be; never contains a secret."""


class Invalid(ValueError):
    """A value's own explanation, said after the variable's name instead of `expected …, got …`."""


class Secret:
    """A string that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


class Group(enum.Enum):
    """Which settings group a variable belongs to; `SLACK` and `ACCESS` are read only by the Slack entry points."""

    DEFENDER = "defender"
    CACHE = "cache"
    BUDGET = "budget"
    STATE = "state"
    WATCH = "watch"
    LOGGING = "logging"
    SLACK = "slack"
    ACCESS = "access"


@dataclass(frozen=True, kw_only=True)
class Variable(Generic[T]):
    """One environment variable: its name, what it means, its default and how its text becomes a value."""

    name: str
    group: Group
    meaning: str  # the README's "meaning" column
    default: T | None = None  # None: unset means "not configured" (or a default decided by a rule)
    shown: str | None = None  # the README's "default" column, when the default value alone does not say it
    secret: bool = False  # never repeated in errors, logs or `repr`

    def expected(self) -> str:
        return "a value"

    def convert(self, text: str) -> T:
        """The value of `text`; `ValueError` (or `Invalid`, with its own explanation) when it is not one."""
        raise NotImplementedError

    def show(self, value: T) -> str:
        return str(value)

    def echo(self, text: str) -> str | None:
        """How a refused value is quoted in the error; None for a secret."""
        return None if self.secret else repr(text)

    @property
    def documented_default(self) -> str:
        if self.shown is not None:
            return self.shown
        return "—" if self.default is None else f"`{self.show(self.default)}`"


@dataclass(frozen=True, kw_only=True)
class Integer(Variable[int]):
    minimum: int
    maximum: int

    def expected(self) -> str:
        return f"a whole number from {self.minimum} to {self.maximum}"

    def convert(self, text: str) -> int:
        if not _INTEGER.fullmatch(text) or not self.minimum <= int(text) <= self.maximum:
            raise ValueError
        return int(text)


@dataclass(frozen=True, kw_only=True)
class Number(Variable[float]):
    minimum: float
    maximum: float

    def expected(self) -> str:
        return f"a number from {self.minimum:g} to {self.maximum:g}"

    def convert(self, text: str) -> float:
        number = float(text)
        if not self.minimum <= number <= self.maximum:  # also refuses nan
            raise ValueError
        return number

    def show(self, value: float) -> str:
        return f"{value:g}"


@dataclass(frozen=True, kw_only=True)
class Choice(Variable[str]):
    """One of a few words, in any case; the value is the lower-case word."""

    options: tuple[str, ...]

    def expected(self) -> str:
        return " | ".join(self.options)

    def convert(self, text: str) -> str:
        if text.lower() not in self.options:
            raise ValueError
        return text.lower()


@dataclass(frozen=True, kw_only=True)
class Flag(Variable[bool]):
    def expected(self) -> str:
        return "true | false"

    def convert(self, text: str) -> bool:
        if text.lower() not in ("true", "false"):
            raise ValueError
        return text.lower() == "true"

    def show(self, value: bool) -> str:
        return str(value).lower()


@dataclass(frozen=True, kw_only=True)
class Url(Variable[str]):
    """An https:// URL without query or fragment (http:// only on this machine); no trailing slash."""

    def expected(self) -> str:
        return "an https:// URL without query (http:// only for localhost)"

    def convert(self, text: str) -> str:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - raises ValueError for a port out of range
        secure = parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK)
        if not secure or not parts.hostname or parts.query or parts.fragment:
            raise ValueError
        return text.rstrip("/")


@dataclass(frozen=True, kw_only=True)
class Text(Variable[str]):
    """Free text, such as a file path or a name; checked, if at all, by the rule that uses it."""

    def convert(self, text: str) -> str:
        return text


@dataclass(frozen=True, kw_only=True)
class SecretText(Variable[Secret]):
    """A secret; `prefixes`, when given, are what it must start with (`expected` says so)."""

    secret: bool = True
    prefixes: tuple[str, ...] = ()
    description: str = "a secret"

    def expected(self) -> str:
        return self.description

    def convert(self, text: str) -> Secret:
        if self.prefixes and not text.startswith(self.prefixes):
            raise ValueError
        return Secret(text)


@dataclass(frozen=True, kw_only=True)
class IdList(Variable[frozenset[str]]):
    """Comma-separated Slack ids of one kind: 'channel', 'user' or 'usergroup'."""

    kind: str

    def expected(self) -> str:
        return f"comma-separated {self.kind} ids"

    def convert(self, text: str) -> frozenset[str]:
        try:
            return parse_id_list(text, self.kind)
        except PolicyError as exc:
            raise Invalid(f"{exc} (expected {self.expected()})") from None


@dataclass(frozen=True, kw_only=True)
class Parsed(Variable[T]):
    """A value with its own parser: `ValueError` is said as `expected <description>`, `Invalid` as itself."""

    parser: Callable[[str], T]
    description: str
    redact: Callable[[str], str] | None = None  # how a refused value is quoted, when it may hold a password

    def expected(self) -> str:
        return self.description

    def convert(self, text: str) -> T:
        return self.parser(text)

    def echo(self, text: str) -> str | None:
        return repr(self.redact(text)) if self.redact is not None and not self.secret else super().echo(text)


@dataclass(frozen=True, kw_only=True)
class External(Variable[str]):
    """Read by a library (httpx, requests), not by the bot: listed so that the documentation covers it."""

    def convert(self, text: str) -> str:
        raise TypeError(f"{self.name} is read by a library, not by the configuration")


class Reader:
    """Reads variables from one merged mapping (see `environment.read_environment`); blank counts as unset."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self.env = env

    def raw(self, variable: Variable[Any] | str) -> str | None:
        name = variable if isinstance(variable, str) else variable.name
        value = self.env.get(name)
        return value.strip() if value is not None and value.strip() else None

    def get(self, variable: Variable[T]) -> T | None:
        """The variable's value, its default when unset (None when it has none); `ConfigError` when invalid."""
        text = self.raw(variable)
        if text is None:
            return variable.default
        try:
            return variable.convert(text)
        except Invalid as exc:
            raise ConfigError(f"{variable.name}: {exc}") from None
        except ValueError:
            echoed = variable.echo(text)
            got = "" if echoed is None else f", got {echoed}"
            raise ConfigError(f"{variable.name}: expected {variable.expected()}{got}") from None

    def value(self, variable: Variable[T]) -> T:
        """`get` for a variable that has a default, or that a rule has already found set."""
        found = self.get(variable)
        if found is None:
            raise TypeError(f"{variable.name} has no default: use Reader.get")
        return found
