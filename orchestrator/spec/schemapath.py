"""The sweep schema walked by dotted path: ``layer.sigma_pattern`` -> its annotation, loc tuples -> dotted keys.

Pure functions of the pydantic models of ``orchestrator.spec.schema``; ``orchestrator.spec.load`` uses them to name
the key of an error, check profile and ``--set`` paths, and suggest the path a typo meant.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Sequence
from typing import Any

from pydantic import BaseModel

__all__ = ["dotted_key", "schema_annotation"]


def _members(ann: Any) -> list[Any]:
    """The alternatives of an annotation (``X | Y | None`` -> [X, Y]), Annotated stripped."""
    if typing.get_origin(ann) is typing.Annotated:
        return _members(typing.get_args(ann)[0])
    if typing.get_origin(ann) in (typing.Union, types.UnionType):
        return [m for a in typing.get_args(ann) if a is not type(None) for m in _members(a)]
    return [ann]


def _model_of(ann: Any) -> type[BaseModel] | None:
    for m in _members(ann):
        if isinstance(m, type) and issubclass(m, BaseModel):
            return m
    return None


def _child(ann: Any, part: str | int) -> tuple[bool, Any]:
    """(found, annotation of ``part`` inside ``ann``)."""
    for m in _members(ann):
        origin, args = typing.get_origin(m), typing.get_args(m)
        if isinstance(m, type) and issubclass(m, BaseModel) and isinstance(part, str) and part in m.model_fields:
            return True, m.model_fields[part].annotation
        if origin is dict and isinstance(part, str):
            return True, args[1] if args else Any
        if origin in (list, tuple) and isinstance(part, int):
            if origin is tuple and args and args[-1] is not Ellipsis:
                return True, args[part] if part < len(args) else Any
            return True, args[0] if args else Any
    return False, None


def schema_annotation(root: type[BaseModel], path: str) -> tuple[bool, Any]:
    """Whether a dotted path names a field below ``root`` (e.g. ``layer.sigma_pattern`` in TrainBase), and its type."""
    ann: Any = root
    for part in path.split("."):
        if _model_of(ann) is None:
            return False, None
        found, ann = _child(ann, part)
        if not found:
            return False, None
    return True, ann


def dotted_key(parts: Sequence[str | int]) -> str:
    """``("zip", 0, "layer.sa")`` -> ``zip[0].layer.sa``: list indices in brackets, names joined by dots."""
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _dotted_paths(model: type[BaseModel], prefix: str = "") -> list[str]:
    out = []
    for name, field in model.model_fields.items():
        out.append(prefix + name)
        sub = _model_of(field.annotation)
        if sub is not None:
            out += _dotted_paths(sub, f"{prefix}{name}.")
    return out
