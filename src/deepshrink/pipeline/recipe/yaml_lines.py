"""YAML text -> plain data (dicts, lists, scalars), with the line of every key path."""

from __future__ import annotations

from typing import Any

import yaml

from deepshrink.errors import UserError


def compose(text: str, source: str) -> tuple[Any, dict[str, int]]:
    loader = None
    try:
        loader = yaml.SafeLoader(text)  # the reader rejects non-printable characters right here
        root = loader.get_single_node()
        if root is None:
            raise UserError(f"{source}: the recipe is empty")
        lines: dict[str, int] = {}
        return _plain(root, "", lines, loader, source), lines
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
