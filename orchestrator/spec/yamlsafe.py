"""Reading a sweep file's YAML with limits: ``yaml.safe_load``'s types, nothing that hangs or explodes.

A sweep file comes from a user; a mistake (or a file meant to hurt) must end in one line, fast:
- aliases are allowed (a grid reused across profiles is handy), but the document they expand to is bounded:
  at most ``MAX_NODES`` nodes counted as expanded (a 572-byte "billion laughs" file expands to 10^9) and at
  most ``MAX_DEPTH`` levels of nesting, checked on the composed node graph before anything is copied;
- an alias that contains itself (``seeds: &s [0, *s]``) is an error, not a recursive list;
- a key written twice in one mapping is an error naming both lines (YAML says keys are unique; PyYAML
  keeps the last silently);
- the file must be a regular file of UTF-8 text, under ``MAX_BYTES`` (a named pipe would block forever).
Each problem is a ``YamlProblem`` (where, what, allowed), turned into the loader's one-line error.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

__all__ = ["MAX_BYTES", "MAX_DEPTH", "MAX_NODES", "YamlProblem", "read_text", "load_bounded"]

MAX_NODES = 1_000_000
MAX_DEPTH = 100
MAX_BYTES = 10 * 2**20


@dataclass(frozen=True)
class YamlProblem(Exception):
    where: str  # a dotted key, or "line L, column C", or "(file)"
    problem: str
    allowed: str | None = None


def read_text(path: Path) -> str:
    """The file's text, refusing what is not a regular UTF-8 file of at most ``MAX_BYTES``."""
    try:
        info = os.stat(path)
    except OSError as exc:
        raise YamlProblem("(file)", f"cannot read the sweep file: {exc.strerror}") from None
    if not stat.S_ISREG(info.st_mode):
        kind = "a directory" if stat.S_ISDIR(info.st_mode) else "a named pipe" if stat.S_ISFIFO(info.st_mode) \
            else "not a regular file"
        raise YamlProblem("(file)", f"is {kind}, not a sweep file", "a YAML file")
    if info.st_size > MAX_BYTES:
        raise YamlProblem("(file)", f"is {info.st_size:,} bytes, more than a sweep file may be",
                          f"at most {MAX_BYTES:,} bytes")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise YamlProblem("(file)", f"cannot read the sweep file: {exc.strerror}") from None
    if raw[:2] in (b"\xff\xfe", b"\xfe\xff"):
        raise YamlProblem("(file)", "is UTF-16 text", "UTF-8 text: re-save the file as UTF-8")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise YamlProblem("(file)", f"is not UTF-8 text (byte {raw[exc.start]:#04x} at offset {exc.start})",
                          "a YAML file in UTF-8") from None


class _DepthLimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer stops at ``MAX_DEPTH`` instead of recursing until Python's limit."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise YamlProblem(f"line {mark.line + 1}, column {mark.column + 1}",
                                  f"nested more than {MAX_DEPTH} levels deep", f"at most {MAX_DEPTH} levels")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _key_text(node: Node) -> str:
    return str(node.value) if isinstance(node, ScalarNode) else f"<{node.tag.rsplit(':', 1)[-1]}>"


def _check_graph(root: Node) -> None:
    """Expanded size, depth, self-containing aliases and duplicate keys, without expanding anything.

    Iterative post-order walk with memoised sizes: an alias is a shared node, so its size is counted as
    often as it is referenced without being walked again.
    """
    size: dict[int, int] = {}
    depth: dict[int, int] = {}
    on_path: set[int] = set()
    stack: list[tuple[Node, str, bool]] = [(root, "", False)]
    while stack:
        node, where, done = stack.pop()
        nid = id(node)
        if done:
            on_path.discard(nid)
            children = _children(node)
            size[nid] = 1 + sum(size[id(c)] for c, _ in children)
            depth[nid] = 1 + max((depth[id(c)] for c, _ in children), default=0)
            if size[nid] > MAX_NODES:
                # blame the section: a node deep inside an alias chain is found by a path nobody wrote
                raise YamlProblem(where.split(".")[0] or "(top level)", f"expands to more than {MAX_NODES:,} values "
                                  "(aliases repeat what they name)", f"at most {MAX_NODES:,}")
            if depth[nid] > MAX_DEPTH:
                raise YamlProblem(where or "(top level)", f"nested more than {MAX_DEPTH} levels deep",
                                  f"at most {MAX_DEPTH} levels")
            continue
        if nid in size:
            continue
        if nid in on_path:
            raise YamlProblem(where or "(top level)", "an alias contains itself (a recursive value)",
                              "aliases to finished values")
        on_path.add(nid)
        stack.append((node, where, True))
        if isinstance(node, MappingNode):
            _check_duplicates(node, where)
        for child, part in _children(node):
            if id(child) in on_path:
                raise YamlProblem(f"{where}.{part}".lstrip("."), "an alias contains itself (a recursive value)",
                                  "aliases to finished values")
            if id(child) not in size:
                stack.append((child, f"{where}.{part}".lstrip("."), False))


def _children(node: Node) -> list[tuple[Node, str]]:
    if isinstance(node, SequenceNode):
        return [(c, str(i)) for i, c in enumerate(node.value)]
    if isinstance(node, MappingNode):
        out = []
        for k, v in node.value:
            out += [(k, _key_text(k)), (v, _key_text(k))]
        return out
    return []


def _check_duplicates(node: MappingNode, where: str) -> None:
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if not isinstance(key, ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
            continue
        line = key.start_mark.line + 1
        if key.value in seen:
            raise YamlProblem(f"{where}.{key.value}".lstrip("."),
                              f"written twice in one mapping (lines {seen[key.value]} and {line})",
                              "each key once")
        seen[key.value] = line


def load_bounded(text: str) -> Any:
    """``yaml.safe_load(text)`` within the limits above; raises ``YamlProblem`` or ``yaml.YAMLError``."""
    loader = _DepthLimitedLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_graph(node)
        return loader.construct_document(node)
    finally:
        loader.dispose()
