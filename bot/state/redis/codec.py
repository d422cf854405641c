"""A compact codec for the frozen dataclasses the alert cache holds (`Alert`, `Machine`): JSON arrays + zlib.

Each dataclass becomes a positional array in field order: enums by member name, datetimes as ISO text,
tuples as arrays, nested dataclasses as arrays again. A version derived from the field names and types
travels with every payload, so a process running other code (a rolling deploy) reads a payload it cannot
decode as a cache miss rather than as wrong data.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
import types
import typing
import zlib
from collections.abc import Callable
from datetime import datetime
from typing import Any, Generic, TypeVar

_T = TypeVar("_T")

Encode = Callable[[Any], Any]
Decode = Callable[[Any], Any]


class CodecError(ValueError):
    """A payload from another version of the code, or damaged."""


def _optional(encode: Encode, decode: Decode) -> tuple[Encode, Decode]:
    return (lambda v: None if v is None else encode(v)), (lambda v: None if v is None else decode(v))


def _converters(hint: Any) -> tuple[Encode, Decode, str]:
    """(encode, decode, signature) for one field type."""
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        if len(inner) != 1:
            raise TypeError(f"unsupported union {hint!r}")
        encode, decode, signature = _converters(inner[0])
        wrapped = _optional(encode, decode)
        return wrapped[0], wrapped[1], f"{signature}?"
    if origin is tuple and len(args) == 2 and args[1] is Ellipsis:
        encode, decode, signature = _converters(args[0])
        return (lambda v: [encode(x) for x in v]), (lambda v: tuple(decode(x) for x in v)), f"[{signature}]"
    if hint is datetime:
        return (lambda v: v.isoformat()), datetime.fromisoformat, "datetime"
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        enum_type = hint
        names = ",".join(enum_type.__members__)
        return (lambda v: v.name), (lambda v: enum_type[v]), f"{enum_type.__name__}({names})"
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        nested = DataclassCodec(hint)
        return nested.to_array, nested.from_array, f"{hint.__name__}{{{nested.signature}}}"
    if hint in (str, int, float, bool):
        kind = hint
        return (lambda v: v), (lambda v: kind(v)), kind.__name__
    raise TypeError(f"unsupported field type {hint!r}")


class DataclassCodec(Generic[_T]):
    """Positional arrays for one dataclass type."""

    def __init__(self, cls: type[_T]) -> None:
        if not dataclasses.is_dataclass(cls):
            raise TypeError(f"{cls!r} is not a dataclass")
        self.cls = cls
        hints = typing.get_type_hints(cls)
        fields = [f for f in dataclasses.fields(cls) if f.init]
        converters = [_converters(hints[f.name]) for f in fields]
        self._names = [f.name for f in fields]
        self._encoders = [c[0] for c in converters]
        self._decoders = [c[1] for c in converters]
        self.signature = ";".join(f"{f.name}:{c[2]}" for f, c in zip(fields, converters, strict=True))

    def to_array(self, value: _T) -> list[Any]:
        return [encode(getattr(value, name)) for encode, name in zip(self._encoders, self._names, strict=True)]

    def from_array(self, array: Any) -> _T:
        if not isinstance(array, list) or len(array) != len(self._decoders):
            raise CodecError(f"expected {len(self._decoders)} fields for {self.cls.__name__}")
        return self.cls(*(decode(item) for decode, item in zip(self._decoders, array, strict=True)))


class Packer(Generic[_T]):
    """`(items, stamp)` ↔ bytes: JSON arrays, zlib-compressed, with the codec's version."""

    def __init__(self, cls: type[_T]) -> None:
        self.codec = DataclassCodec(cls)
        self.version = hashlib.sha256(self.codec.signature.encode()).hexdigest()[:12]

    def pack(self, items: list[_T | None], stamp: str = "") -> bytes:
        body = [self.version, stamp, [None if item is None else self.codec.to_array(item) for item in items]]
        return zlib.compress(json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode(), 6)

    def unpack(self, data: bytes) -> tuple[list[_T | None], str]:
        try:
            version, stamp, items = json.loads(zlib.decompress(data))
        except (zlib.error, ValueError, TypeError) as exc:
            raise CodecError(f"undecodable payload: {type(exc).__name__}") from None
        if version != self.version:
            raise CodecError("payload written by another version of the code")
        try:
            return [None if item is None else self.codec.from_array(item) for item in items], str(stamp)
        except (KeyError, TypeError, ValueError) as exc:
            raise CodecError(f"undecodable payload: {type(exc).__name__}") from None
