"""Reading YAML that a user (or an attacker) wrote: bounded, unique keys, one-line errors.

`yaml.safe_load` constructs only plain data, but it still lets a 600-byte document expand to
gigabytes through anchors and aliases (the "billion laughs": each alias is a reference to the
whole anchored node, and every consumer that walks or copies the document pays for it in full),
and it resolves a duplicated mapping key silently (the last one wins), although YAML 1.1 and 1.2
both require keys to be unique. `load_yaml` adds three bounds to `yaml.SafeLoader`:

- the file's size (`MAX_BYTES`), checked before parsing;
- the document's *expanded* size (`MAX_EXPANDED`): every node counts 1 plus, for a scalar, its
  length in characters, and an alias counts as the full size of the node it refers to, so the
  figure is what a fully copied document would hold (computed on the composed node graph, in
  time linear in the distinct nodes, before anything is constructed);
- recursive aliases (`&a [*a]`), which no configuration needs, are refused.

Every failure is a `ConfigError` whose one-line message starts with `FILE:LINE:COLUMN` where the
parser knows the place.
"""

from __future__ import annotations

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

    def compose_document(self) -> Any:  # noqa: D102 - PyYAML hook
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
                        None, None,
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

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:  # noqa: D102
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
                        "while constructing a mapping", node.start_mark,
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
