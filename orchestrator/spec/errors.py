"""Sweep-file errors: ``Problem`` (one problem at one dotted key), ``ConfigError`` (the one line the user sees),
pydantic's validation errors translated into Problems, and the did-you-mean hint every name check uses.

Every check of ``orchestrator.spec`` (and ``orchestrator.run.preflight``) reports through these, so an error
reads the same whoever found it: ``<file>: <dotted.key>: <problem> (got <value!r>; allowed: <...>)``.
"""

from __future__ import annotations

import difflib
import os
import typing
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from orchestrator.spec.schemapath import _child, _members, _model_of, dotted_key

__all__ = ["ConfigError", "Problem", "did_you_mean", "translate_validation_error"]

class _Missing:
    """No value to show (a missing key); pickles as the module's singleton."""

    def __repr__(self) -> str:
        return "<missing>"

    def __reduce__(self) -> str:
        return "_MISSING"


_MISSING = _Missing()
_MAX_SHOWN = 5
_UNION_PROBLEM = "not an accepted form"


@dataclass(frozen=True, eq=False)
class Problem:
    """One problem at one key: the parts of a ConfigError line. Equal when their lines are equal."""

    key: str
    problem: str
    value: Any = _MISSING
    allowed: str | None = None

    def text(self) -> str:
        extras = []
        if self.value is not _MISSING:
            shown = repr(self.value)
            extras.append("got " + (shown if len(shown) <= 120 else shown[:117] + "..."))
        if self.allowed:
            extras.append(f"allowed: {self.allowed}")
        line = f"{self.key or '(top level)'}: {self.problem}" + (f" ({'; '.join(extras)})" if extras else "")
        return " ".join(line.split())  # one line, whatever the parts held

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Problem) and self.text() == other.text()

    def __hash__(self) -> int:
        return hash(self.text())


class ConfigError(ValueError):
    """A sweep-file error; ``str()`` is one line naming the file, the dotted key, the value and what is allowed."""

    def __init__(self, problems: Problem | Sequence[Problem], file: str | os.PathLike[str] | None = None) -> None:
        self.problems: list[Problem] = list(dict.fromkeys([problems] if isinstance(problems, Problem) else problems))
        self.file = None if file is None else str(file)
        super().__init__(self._line())

    def _line(self) -> str:
        shown = "; ".join(p.text() for p in self.problems[:_MAX_SHOWN])
        if len(self.problems) > _MAX_SHOWN:
            shown += f"; and {len(self.problems) - _MAX_SHOWN} more"
        return f"{self.file}: {shown}" if self.file else shown

    def __reduce__(self) -> tuple[Any, ...]:  # crosses process boundaries (Ray, submitit) intact
        return ConfigError, (self.problems, self.file)

    def with_file(self, file: str | os.PathLike[str]) -> ConfigError:
        return ConfigError(self.problems, file)

    @property
    def key(self) -> str:
        return self.problems[0].key


# -- pydantic errors as Problems ----------------------------------------------------------------------------
def _allowed_for(ann: Any) -> str | None:
    literals = [v for m in _members(ann) if typing.get_origin(m) is typing.Literal for v in typing.get_args(m)]
    if literals:
        return ", ".join(str(v) for v in literals)
    model = _model_of(ann)
    return ", ".join(model.model_fields) if model is not None else None


def translate_validation_error(
    exc: ValidationError,
    root: type[BaseModel],
    key_for: Callable[[list[str | int]], str] | None = None,
) -> list[Problem]:
    """Pydantic errors as Problems with clean dotted keys; ``key_for(parts)`` may rename a key (trial -> grid)."""
    problems: list[Problem] = []
    seen: set[str] = set()
    for err in exc.errors(include_url=False):
        ann: Any = root
        parent: Any = None
        parts: list[str | int] = []
        for el in err["loc"]:
            found, child = _child(ann, el)
            if found:
                parent, ann = ann, child
                parts.append(el)
            elif len(_members(ann)) > 1 and isinstance(el, str):
                continue  # pydantic's tag for one member of a union, not a key
            else:
                parent, ann = ann, None
                parts.append(el)
        key = key_for(parts) if key_for else dotted_key(parts)
        if key in seen:  # a union reports once per member: the first says enough
            continue
        seen.add(key)
        problems.append(_problem(err, key, ann, parent))
    # a union's vague "not an accepted form" gives way to a precise error inside one of its forms
    return [p for p in problems if not (p.problem == _UNION_PROBLEM and any(
        q.key.startswith((p.key + "[", p.key + ".")) for q in problems))]


def _problem(err: dict[str, Any], key: str, ann: Any, parent: Any) -> Problem:
    kind, ctx, value = err["type"], err.get("ctx", {}), err.get("input", _MISSING)
    if kind == "extra_forbidden":
        name = str(err["loc"][-1])
        valid = list(_model_of(parent).model_fields) if _model_of(parent) else []
        close = difflib.get_close_matches(name, valid, n=1)
        hint = f"unknown key{f', did you mean {close[0]!r}?' if close else ''}"
        return Problem(key, hint, name, ", ".join(valid))
    if kind == "missing":
        return Problem(key, "required key is missing", allowed=_allowed_for(ann))
    if kind == "literal_error":
        return Problem(key, "not an allowed value", value, _allowed_for(ann) or ctx.get("expected"))
    if kind in ("model_type", "model_attributes_type", "dict_type"):
        return Problem(key, "must be a mapping", value, _allowed_for(ann) and f"keys {_allowed_for(ann)}")
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        op = bounds[kind]
        limit = next(iter(ctx.values()))
        return Problem(key, f"must be {op} {limit}", value, f"{op} {limit}")
    if kind == "too_short":
        return Problem(key, f"must have at least {ctx.get('min_length')} item(s)", value)
    if kind == "string_pattern_mismatch":
        return Problem(key, "does not match the pattern", value, f"/{ctx.get('pattern')}/")
    if kind == "value_error":
        return Problem(key, str(ctx.get("error", err["msg"])))
    msg = err["msg"]
    if len(_members(ann)) > 1:  # a union: say every form it accepts, not just the first one pydantic tried
        return Problem(key, _UNION_PROBLEM, value, " or ".join(_describe(m) for m in _members(ann)))
    allowed = next((v for k, v in _EXPECTED.items() if kind.startswith(k)), None)
    return Problem(key, msg[0].lower() + msg[1:], value, allowed)


_EXPECTED = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string",
             "list": "a list", "tuple": "a list", "dict": "a mapping"}


def _describe(ann: Any) -> str:
    ann = _members(ann)[0]
    origin, args = typing.get_origin(ann), typing.get_args(ann)
    if origin is tuple and args and args[-1] is not Ellipsis:
        return f"a list of {len(args)} ({', '.join(_describe(a) for a in args)})"
    name = getattr(origin or ann, "__name__", str(ann))
    return _EXPECTED.get(name, name)


def did_you_mean(name: str, allowed: Iterable[str]) -> str:
    """", did you mean 'x'?" for the closest allowed name, or nothing."""
    close = difflib.get_close_matches(name, list(allowed), n=1)
    return f", did you mean {close[0]!r}?" if close else ""
