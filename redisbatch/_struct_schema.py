"""``Schema.from_struct``: a msgspec Struct's fields read as schema Fields."""

from __future__ import annotations

import math
from typing import Any

import msgspec
from msgspec import inspect as mi

from ._field import MISSING, Field

__all__ = ["fields_of"]


def _optional(info: mi.Type) -> tuple[mi.Type, bool]:
    """(the type without None, whether None was allowed)."""
    if isinstance(info, mi.UnionType):
        others = [t for t in info.types if not isinstance(t, mi.NoneType)]
        if len(others) < len(info.types):
            return (others[0] if len(others) == 1 else mi.UnionType(tuple(others))), True
    return info, False


def _int_bounds(info: Any) -> dict[str, Any]:
    low = info.ge if info.ge is not None else (None if info.gt is None else info.gt + 1)
    high = info.le if info.le is not None else (None if info.lt is None else info.lt - 1)
    return {"min": low, "max": high}


def _float_bounds(info: Any) -> dict[str, Any]:
    low = (
        info.ge
        if info.ge is not None
        else (None if info.gt is None else math.nextafter(info.gt, math.inf))
    )
    high = (
        info.le
        if info.le is not None
        else (None if info.lt is None else math.nextafter(info.lt, -math.inf))
    )
    return {"min": low, "max": high}


def _declaration(info: mi.Type) -> dict[str, Any]:
    """Field options for one (non-optional) msgspec type."""
    if isinstance(info, mi.StrType):
        return {
            "type": "string",
            "pattern": info.pattern,
            "min_length": info.min_length,
            "max_length": info.max_length,
        }
    if isinstance(info, mi.BoolType):
        return {"type": "boolean"}
    if isinstance(info, mi.IntType):
        return {"type": "integer", **_int_bounds(info)}
    if isinstance(info, mi.FloatType):
        return {"type": "number", **_float_bounds(info)}
    if isinstance(info, mi.DateType):
        return {"type": "date"}
    if isinstance(info, mi.DateTimeType):
        return {"type": "datetime"}
    if isinstance(info, mi.ListType) and isinstance(info.item_type, mi.StrType):
        return {"type": "array", "min_length": info.min_length, "max_length": info.max_length}
    if isinstance(info, mi.LiteralType):
        values = tuple(info.values)
        if all(isinstance(v, str) for v in values):
            return {"type": "string", "choices": values}
        if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return {"type": "integer", "choices": values}
    return {"type": "custom"}


def fields_of(struct_type: type[msgspec.Struct]) -> list[Field]:
    info = mi.type_info(struct_type)
    if not isinstance(info, mi.StructType):
        raise TypeError(f"from_struct takes a msgspec.Struct class, got {struct_type!r}")
    fields = []
    for f in info.fields:
        inner, optional = _optional(f.type)
        options = {k: v for k, v in _declaration(inner).items() if v is not None}
        default: Any = MISSING
        if f.default is not msgspec.NODEFAULT:
            default = f.default
        elif f.default_factory is not msgspec.NODEFAULT:
            default = f.default_factory()
        if default is not MISSING and default is not None:
            options["default"] = default
        fields.append(Field(f.encode_name, required=f.required and not optional, **options))
    return fields
