"""YAML from users' files, read strictly: safe types only, no duplicate keys, no alias bombs, text only.

A plain ``yaml.safe_load`` keeps the last of two equal keys without a word (hiding a
setting or a measurement), and a few lines of nested aliases stand for billions of
values, which the first reader that walks them (a check, an error message's repr)
pays for. Every YAML file hwlab reads comes through here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

MAX_NODES = 2_000_000  # values once aliases are expanded: far above any real file, far below an alias bomb
MAX_BYTES = 64 * 1024 * 1024


class YamlProblem(ValueError):
    """What is wrong with a YAML text, and where (the caller adds the file and the fix)."""


class _StrictLoader(yaml.SafeLoader):
    """A safe loader that refuses duplicate keys."""


def _expanded_size(node: yaml.Node, memo: dict[int, int]) -> int:
    """How many values ``node`` stands for once every alias is expanded (each shared node counted once
    per use, computed once): what a reader walking the result (a repr, a check of every value) pays."""
    if id(node) in memo:
        return memo[id(node)]
    memo[id(node)] = 1  # a node that refers to itself (a recursive alias) counts as one here
    if isinstance(node, yaml.SequenceNode):
        size = 1 + sum(_expanded_size(child, memo) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size = 1 + sum(_expanded_size(k, memo) + _expanded_size(v, memo) for k, v in node.value)
    else:
        size = 1
    memo[id(node)] = size
    return size


def _mapping_without_duplicates(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node)
        try:
            duplicate = key in seen
        except TypeError:  # an unhashable key (a list or mapping used as a key)
            raise YamlProblem(f"a key at line {key_node.start_mark.line + 1} is not a plain value") from None
        if duplicate:
            raise YamlProblem(f"key {key!r} appears twice (line {key_node.start_mark.line + 1})")
        seen.add(key)
    return loader.construct_mapping(node)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_without_duplicates)


def parse_yaml(raw: bytes) -> Any:
    """The document in ``raw``; :class:`YamlProblem` for text that is not UTF-8 YAML or breaks the rules above."""
    if len(raw) > MAX_BYTES:
        raise YamlProblem(f"is {len(raw):,} bytes, more than any inventory or lookup table ({MAX_BYTES:,})")
    if b"\0" in raw:
        raise YamlProblem("is binary, not YAML text")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise YamlProblem(f"is not UTF-8 text (byte {err.start}): save it as UTF-8") from None
    loader = _StrictLoader(text)  # a SafeLoader subclass: no arbitrary objects
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_NODES:
            raise YamlProblem(f"expands to more than {MAX_NODES:,} values through its aliases: refused as a bomb")
        return loader.construct_document(node)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise YamlProblem(f"is not valid YAML{where}: {getattr(err, 'problem', None) or err}") from None
    except RecursionError:
        raise YamlProblem("nests too deeply to be an inventory or a lookup table") from None
    finally:
        loader.dispose()


def read_yaml(path: Path) -> tuple[Any, bytes]:
    """The document of ``path`` and its raw bytes; OSError as raised by the read."""
    raw = Path(path).read_bytes()
    return parse_yaml(raw), raw
