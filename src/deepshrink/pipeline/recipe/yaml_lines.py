"""YAML text -> plain data (dicts, lists, scalars), with the line of every key path.

A recipe is a small, hand-written file, so the reader refuses what only a hostile or broken
file needs: anchors and aliases (``&name``/``*name``, which expand into "billion laughs" and
recursive structures), nesting deeper than :data:`MAX_DEPTH`, more than :data:`MAX_NODES` nodes
and more than :data:`MAX_RECIPE_BYTES` of text. Each is one :class:`UserError` before the
structure is built, so memory and time stay bounded.
"""

from __future__ import annotations

from typing import Any

import yaml

from deepshrink.errors import UserError

MAX_RECIPE_BYTES = 1 << 20
MAX_DEPTH = 32
MAX_NODES = 10_000


class _Refused(yaml.YAMLError):
    """A structure the recipe reader does not accept, at ``mark``."""

    def __init__(self, problem: str, mark: yaml.Mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _BoundedLoader(yaml.SafeLoader):
    """A ``SafeLoader`` that refuses anchors and aliases and bounds nesting depth and node count."""

    def __init__(self, text: str):
        super().__init__(text)
        self._depth = 0
        self._nodes = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        event = self.peek_event()
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Refused("anchors and aliases (&name, *name) are not allowed in a recipe; write the values out",
                           event.start_mark)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise _Refused(f"more than {MAX_NODES} values; a recipe is a short file", event.start_mark)
        if self._depth >= MAX_DEPTH:
            raise _Refused(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def compose(text: str, source: str) -> tuple[Any, dict[str, int]]:
    """Parse ``text`` into plain data and the line of every key path; :class:`UserError` if it is not a recipe's YAML."""
    if len(text) > MAX_RECIPE_BYTES:
        raise UserError(f"{source}: the recipe is larger than {MAX_RECIPE_BYTES // (1 << 20)} MB")
    loader = None
    try:
        loader = _BoundedLoader(text)  # the reader rejects non-printable characters right here
        root = loader.get_single_node()
        if root is None:
            raise UserError(f"{source}: the recipe is empty")
        lines: dict[str, int] = {}
        return _plain(root, "", lines, loader, source), lines
    except _Refused as exc:
        raise UserError(f"{source} line {exc.problem_mark.line + 1}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise UserError(f"{source}{where}: not valid YAML: {problem}") from None
    finally:
        if loader is not None:
            loader.dispose()


def _plain(node: yaml.Node, path: str, lines: dict[str, int], loader: yaml.SafeLoader, source: str) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        loader.flatten_mapping(node)
        result = {}
        for key_node, value_node in node.value:
            key = loader.construct_object(key_node, deep=True)
            child = f"{path}.{key}" if path else str(key)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                raise UserError(f"{source} line {line}: {path or 'recipe'}: keys must be strings, got {key!r}")
            if key in result:
                raise UserError(f"{source} line {line}: {child}: duplicate key")
            lines[child] = line
            result[key] = _plain(value_node, child, lines, loader, source)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_plain(item, f"{path}[{i}]", lines, loader, source) for i, item in enumerate(node.value)]
    return loader.construct_object(node, deep=True)
