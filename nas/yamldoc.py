"""Reading YAML at the edge: `read_yaml` and `Doc`, typed field access whose errors name file and field.

A leaf module (it imports only `nas.errors`): the loaders of search spaces, hardware profiles and
anything else read from YAML share it, so every bad value is reported the same way.

YAML is read with `BoundedLoader`, `yaml.SafeLoader` plus what `safe_load` lacks: it still lets a
600-byte document expand to gigabytes through anchors and aliases (the "billion laughs": each alias
is a reference to the whole anchored node, and every consumer that walks or copies the document pays
for it in full), and it resolves a duplicated mapping key silently (the last one wins), although YAML
requires keys to be unique. The bounds:

- the file's size (`MAX_BYTES`), checked before parsing;
- the document's *expanded* size (`MAX_EXPANDED`): every node counts 1 plus, for a scalar, its
  length in characters, and an alias counts as the full size of the node it refers to, so the
  figure is what a fully copied document would hold (computed on the composed node graph, in
  time linear in the distinct nodes, before anything is constructed);
- recursive aliases (`&a [*a]`), which no configuration needs, are refused;
- a mapping key given twice is refused.

Every failure is a `ConfigError` whose one-line message starts with `FILE:LINE:COLUMN` where the
parser knows the place.
"""

from __future__ import annotations

import math
import re
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from nas.errors import ConfigError

MAX_BYTES = 1 << 20  # 1 MiB: the shipped spaces and profiles are 1-6 KB
MAX_EXPANDED = 1_000_000  # nodes + scalar characters after alias expansion (shipped files: < 10,000)


def _where(path: str, node_or_mark: Any) -> str:
    mark = getattr(node_or_mark, "start_mark", node_or_mark)
    line = getattr(mark, "line", None)
    return f"{path}:{line + 1}:{mark.column + 1}" if line is not None else path


class BoundedLoader(yaml.SafeLoader):
    """`yaml.SafeLoader` that refuses duplicate keys, recursive aliases and oversized expansions.

    `max_expanded` bounds nodes + scalar characters with every alias expanded (see the module
    docstring). Errors are raised as `yaml.YAMLError` subclasses with a `problem_mark`, so callers
    handle them like any other malformed YAML.
    """

    max_expanded = MAX_EXPANDED

    def compose_document(self) -> Any:
        """PyYAML's hook: compose the node graph, then check its expanded size and aliases."""
        node = super().compose_document()
        if node is not None:
            self._check_expansion(node)
        return node

    def _check_expansion(self, root: yaml.Node) -> None:
        sizes: dict[int, int] = {}
        on_path: set[int] = set()
        # iterative post-order walk (a deeply nested document must not hit Python's recursion limit)
        stack: list[tuple[yaml.Node, bool]] = [(root, False)]
        while stack:
            node, done = stack.pop()
            key = id(node)
            if done:
                on_path.discard(key)
                if isinstance(node, yaml.ScalarNode):
                    size = 1 + len(node.value)
                elif isinstance(node, yaml.SequenceNode):
                    size = 1 + sum(sizes[id(c)] for c in node.value)
                else:
                    size = 1 + sum(sizes[id(k)] + sizes[id(v)] for k, v in node.value)
                if size > self.max_expanded:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"the document expands to more than {self.max_expanded:,} nodes and characters "
                        "(anchors and aliases repeat what they refer to)",
                        node.start_mark,
                    )
                sizes[key] = size
                continue
            if key in sizes:
                continue
            if key in on_path:
                raise yaml.constructor.ConstructorError(
                    None, None, "recursive alias (a node that contains itself)", node.start_mark
                )
            on_path.add(key)
            stack.append((node, True))
            if isinstance(node, yaml.SequenceNode):
                children = list(node.value)
            elif isinstance(node, yaml.MappingNode):
                children = [c for pair in node.value for c in pair]
            else:
                children = []
            for child in reversed(children):
                if id(child) in on_path:
                    raise yaml.constructor.ConstructorError(
                        None, None, "recursive alias (a node that contains itself)", child.start_mark
                    )
                if id(child) not in sizes:
                    stack.append((child, False))

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        """PyYAML's hook: refuse a key given twice in one mapping (merge keys `<<` may be overridden)."""
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, yaml.Node] = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node, yaml.ScalarNode):
                    continue  # merge keys may be overridden; unhashable keys fail in the base class
                key = self.construct_object(key_node, deep=False)
                try:
                    first = seen.get(key)
                except TypeError:
                    continue
                if first is not None:
                    raise yaml.constructor.ConstructorError(
                        "while constructing a mapping",
                        node.start_mark,
                        f"duplicate key {str(key)[:60]!r} (first at line {first.start_mark.line + 1}; "
                        "YAML keys must be unique)",
                        key_node.start_mark,
                    )
                seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | Path, max_bytes: int = MAX_BYTES) -> Any:
    """Parse the YAML file `path` with `BoundedLoader`.

    Returns plain data (dict, list, str, int, float, bool, None, date). Raises `ConfigError`
    with one line naming the file (and line:column where known) for a missing or unreadable
    file, a file over `max_bytes`, malformed YAML, a duplicate key, a recursive alias, or a
    document that expands beyond `BoundedLoader.max_expanded`.
    """
    path = Path(path)
    shown = _line(str(path))
    try:
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except FileNotFoundError:
        raise ConfigError(f"{shown}: file not found") from None
    except IsADirectoryError:
        raise ConfigError(f"{shown}: is a folder, not a YAML file") from None
    except OSError as e:
        raise ConfigError(f"{shown}: cannot read file ({e.__class__.__name__}: {e.strerror or e})") from None
    if len(raw) > max_bytes:
        raise ConfigError(f"{shown}: file is larger than {max_bytes:,} bytes; not a search space or profile")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{shown}: cannot read file (not UTF-8 text: byte {e.start})") from None
    return parse_yaml(text, shown)


def parse_yaml(text: str, shown: str) -> Any:
    """Parse YAML `text` (from the file named `shown` in errors) with `BoundedLoader`."""
    try:
        return yaml.load(text, Loader=BoundedLoader)  # noqa: S506 - BoundedLoader is a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = _where(shown, mark) if mark else shown
        problem = getattr(e, "problem", None) or (str(e).splitlines() or [""])[0]
        raise ConfigError(f"{where}: malformed YAML: {_line(problem)}") from None
    except RecursionError:
        raise ConfigError(f"{shown}: malformed YAML: nested too deeply") from None
    except (ValueError, TypeError, OverflowError) as e:
        # PyYAML's constructors raise these for values it cannot build: `!!float x`,
        # `2020-13-45` as a date, an integer beyond Python's digit limit
        problem = (str(e).splitlines() or [""])[0][:120]
        raise ConfigError(
            f"{shown}: malformed YAML: a value cannot be read ({e.__class__.__name__}: {problem})"
        ) from None


def _line(text: str) -> str:
    """`text` on one line: control characters (a newline in a file name) escaped."""
    return text if text.isprintable() else text.encode("unicode_escape").decode("ascii")


def read_yaml(path: Path) -> Any:
    """Parse a YAML file with `load_yaml` (safe, bounded, unique keys); one-line ConfigError."""
    return load_yaml(path)


MAX_INT = 2**31 - 1  # counts, sizes and indexes beyond this are typos, and overflow downstream
MAX_TEXT = 2000  # characters in a free-text field (a description, a source): a paragraph, not a book
MAX_NUMBER = 1e30  # profile coefficients are bounded so that their products stay finite (float max 1.8e308)
MIN_POSITIVE = 1e-30  # ... and so that dividing by them does too


def _finite(value: Any) -> float | None:
    """`value` as a finite float, or None when it is not a number or not finite."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        f = float(value)
    except OverflowError:  # an int beyond the float range
        return None
    return f if math.isfinite(f) else None


def show_value(value: Any) -> str:
    """A short, one-line repr for error messages, whatever the value (huge, nested, aliased)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        return f"an integer of {value.bit_length()} bits"
    short = reprlib.Repr()  # keyword arguments only from Python 3.12
    short.maxlevel, short.maxdict, short.maxlist, short.maxtuple, short.maxset = 2, 4, 4, 4, 4
    short.maxstring, short.maxother, short.maxlong = 60, 60, 40
    try:
        text = short.repr(value)
    except Exception:  # a value whose repr itself fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def field_name(key: Any) -> str:
    """A field name fit for a one-line message: control characters escaped, long names cut."""
    text = str(key)
    if not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if len(text) <= 40 else text[:37] + "..."


_FLOAT_RE = re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)$")


def _yaml11_float(value: Any) -> Any:
    """YAML 1.1 reads `1e-12` (no dot) as a string; take it as the number the author meant."""
    if isinstance(value, str) and _FLOAT_RE.match(value.strip()):
        return float(value)
    return value


class Doc:
    """A mapping read from one file, with typed getters whose errors name file and field."""

    def __init__(self, data: Any, file: str, path: str = "") -> None:
        self.file, self.path = file, path
        if not isinstance(data, Mapping):
            raise self.error("expected a mapping", data)
        self.data = data

    def field(self, key: str) -> str:
        """The dotted field name of `key` in this document (e.g. `device.precisions`)."""
        return f"{self.path}.{field_name(key)}" if self.path else field_name(key)

    def error(self, expected: str, got: Any = None, key: str | None = None) -> ConfigError:
        """A ConfigError naming the file and field, what was `expected` and (if given) what was `got`."""
        where = self.field(key) if key is not None else (self.path or "(top level)")
        shown = f", got {show_value(got)}" if got is not None else ""
        return ConfigError(f"{self.file}: field '{where}': {expected}{shown}")

    def has(self, key: str) -> bool:
        """Whether the mapping holds `key`."""
        return key in self.data

    def raw(self, key: str, default: Any = ...) -> Any:
        """The value of `key` as read; `default` when absent, or ConfigError "is required" without one."""
        if key not in self.data:
            if default is ...:
                raise self.error("is required", key=key)
            return default
        return self.data[key]

    def sub(self, key: str, default: Any = ...) -> Doc:
        """The mapping under `key` as a Doc (its errors name the nested field); ConfigError if not a mapping."""
        value = self.raw(key, default)
        return Doc(value, self.file, self.field(key))

    def str(self, key: str, default: Any = ...) -> str:
        """A non-empty string (or a None `default`); ConfigError otherwise."""
        value = self.raw(key, default)
        if not isinstance(value, str) or not value.strip():
            if value is default and default is None:
                return value
            raise self.error("expected a non-empty string", value, key)
        return self.check_text(value, key)

    def text(self, key: str, default: str = "") -> str:
        """A free-text field: a string (possibly empty) of at most MAX_TEXT characters."""
        value = self.raw(key, default)
        if not isinstance(value, str):
            raise self.error("expected a string", value, key)
        return self.check_text(value, key)

    def check_text(self, value: str, key: str) -> str:
        """`value`, or ConfigError naming `key` if it is longer than MAX_TEXT characters."""
        if len(value) > MAX_TEXT:
            raise self.error(f"expected at most {MAX_TEXT} characters", f"{len(value)} characters", key)
        return value

    def int(self, key: str, default: Any = ..., low: int | None = None) -> int:
        """An integer (not a bool), at least `low` if given and at most MAX_INT in size; ConfigError otherwise."""
        value = self.raw(key, default)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self.error("expected an integer", value, key)
        if low is not None and value < low:
            raise self.error(f"expected an integer >= {low}", value, key)
        if abs(value) > MAX_INT:
            raise self.error(f"expected an integer of at most {MAX_INT}", value, key)
        return value

    def number(self, key: str, default: Any = ..., positive: bool = False) -> float:
        """A finite number >= 0 (> 0 with `positive`) as float; `1e-12` written without a dot counts.

        Raises ConfigError otherwise.
        """
        value = _finite(_yaml11_float(self.raw(key, default)))
        if value is None:
            raise self.error("expected a finite number", self.raw(key, default), key)
        if positive and value <= 0:
            raise self.error("expected a number > 0", value, key)
        if value < 0:
            raise self.error("expected a number >= 0", value, key)
        if value > MAX_NUMBER or 0 < value < MIN_POSITIVE:
            raise self.error(f"expected 0 or a number in [{MIN_POSITIVE:g}, {MAX_NUMBER:g}]", value, key)
        return float(value)

    def real(self, key: str) -> float:
        """Any finite number, negative included."""
        value = _finite(_yaml11_float(self.raw(key)))
        if value is None:
            raise self.error("expected a finite number", self.raw(key), key)
        if abs(value) > MAX_NUMBER:
            raise self.error(f"expected a number of magnitude at most {MAX_NUMBER:g}", value, key)
        return value

    def check_keys(self, allowed: set[str] | frozenset[str]) -> None:
        """Raise ConfigError for the first key not in `allowed`, listing the valid ones."""
        for key in self.data:
            if key not in allowed:
                raise self.error(f"unknown field (valid: {', '.join(sorted(allowed))})", key=str(key))


__all__ = ["MAX_INT", "Doc", "field_name", "read_yaml", "show_value"]
