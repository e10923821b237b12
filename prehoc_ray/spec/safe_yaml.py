"""YAML for files a stranger may have written: bounded, strict, and quiet about their contents.

`yaml.safe_load` constructs no Python objects, but it still lets a file
  * expand without bound through aliases (a "billion laughs": ten nested lists of ten aliases
    are 10^9 nodes once anything walks them, e.g. pydantic or json.dumps of cluster.runtime_env),
  * refer to itself (`&a [*a]`), which every later walk turns into a RecursionError,
  * nest 20,000 brackets deep (a RecursionError inside the composer),
  * repeat a key (the last one silently wins),
  * hold bytes that are not UTF-8, or an integer of 5,000 digits (a ValueError, not a YAMLError).

`load_yaml` refuses each of these with a YAMLInputError (a ValueError) whose message names the
line and the problem, and never the file's text beyond a (truncated) key: error messages end up
in terminals, CI logs and issue trackers, and the file may not be the one the user meant
(`prehoc-ray validate ~/.aws/credentials`).

Aliases stay allowed (`<<: *defaults` is common in configs); what they expand to is counted.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1 << 20  # a job spec is a few KiB; 1 MiB leaves room for long explicit candidate lists
MAX_DEPTH = 64  # nesting of collections, aliases expanded
MAX_NODES = 200_000  # scalars + collections, every alias counted where it is used
KEY_CHARS = 40  # the most of a key a message shows

_MERGE = "tag:yaml.org,2002:merge"


class YAMLInputError(ValueError):
    """A YAML file that is refused; `line` is 1-based (None when no line applies)."""

    def __init__(self, problem: str, line: int | None = None) -> None:
        self.problem = problem
        self.line = line
        super().__init__(problem if line is None else f"line {line}: {problem}")


def show_key(key: object, limit: int = KEY_CHARS) -> str:
    """A key (or a name) as a message may show it: one line, printable, at most `limit` chars."""
    text = str(key)
    text = "".join(
        c if c.isprintable() else f"\\x{ord(c):02x}" if ord(c) < 256 else f"\\u{ord(c):04x}" for c in text[: limit + 1]
    )
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _line(mark: Any) -> int | None:
    return None if mark is None else int(mark.line) + 1


class _Loader(yaml.SafeLoader):
    """SafeLoader with a depth cap while composing and duplicate keys refused while constructing."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Node | None, index: Any) -> Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise YAMLInputError(f"nested more than {MAX_DEPTH} levels deep", _line(self.peek_event().start_mark))
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: Node, deep: bool = False) -> Any:
        try:
            return super().construct_object(node, deep=deep)
        except (yaml.YAMLError, YAMLInputError):
            raise
        except (ValueError, TypeError, OverflowError) as exc:  # int('9' * 5000), a timestamp of month 13
            raise YAMLInputError(f"cannot read this {_kind(node)} ({_short(exc)})", _line(node.start_mark)) from None

    def construct_mapping(self, node: Node, deep: bool = False) -> Any:
        if isinstance(node, MappingNode):
            seen: dict[Any, int | None] = {}
            for key_node, _ in node.value:
                if key_node.tag == _MERGE:
                    continue
                key = self.construct_object(key_node, deep=True)
                try:
                    first = seen.get(key, 0)
                except TypeError:
                    continue  # unhashable: the base class says so, with its line
                if first != 0:
                    where = f" (first on line {first})" if first else ""
                    raise YAMLInputError(f"duplicate key {show_key(key)!r}{where}", _line(key_node.start_mark))
                seen[key] = _line(key_node.start_mark)
        return super().construct_mapping(node, deep=deep)


def _kind(node: Node) -> str:
    return "value" if isinstance(node, ScalarNode) else "collection"


def _short(exc: BaseException, limit: int = 120) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _children(node: Node) -> list[Node]:
    if isinstance(node, SequenceNode):
        return list(node.value)
    if isinstance(node, MappingNode):
        return [n for pair in node.value for n in pair]
    return []


def check_expansion(root: Node) -> None:
    """Refuse a node graph that refers to itself, or that expands (aliases followed) past
    MAX_NODES nodes or MAX_DEPTH levels. Iterative, each distinct node visited once."""
    memo: dict[int, tuple[int, int]] = {}  # id(node) -> (expanded nodes, expanded depth)
    on_path: set[int] = {id(root)}
    frames = [(root, iter(_children(root)))]
    while frames:
        node, kids = frames[-1]
        for kid in kids:
            if id(kid) in memo:
                continue
            if id(kid) in on_path:
                raise YAMLInputError(
                    "an alias refers to the collection that contains it (infinite expansion)", _line(kid.start_mark)
                )
            on_path.add(id(kid))
            frames.append((kid, iter(_children(kid))))
            break
        else:
            frames.pop()
            on_path.discard(id(node))
            sub = [memo[id(k)] for k in _children(node)]
            count = 1 + sum(c for c, _ in sub)
            depth = 1 + max((d for _, d in sub), default=0)
            if count > MAX_NODES:
                raise YAMLInputError(
                    f"expands to more than {MAX_NODES:,} values (YAML aliases counted where they are used)",
                    _line(node.start_mark),
                )
            if depth > MAX_DEPTH:
                raise YAMLInputError(
                    f"nested more than {MAX_DEPTH} levels deep (aliases expanded)", _line(node.start_mark)
                )
            memo[id(node)] = (count, depth)


def _yaml_problem(exc: yaml.YAMLError, text: str) -> YAMLInputError:
    """PyYAML's own errors without the snippet of the file they print under the message."""
    problem = getattr(exc, "problem", None) or getattr(exc, "context", None)
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    if isinstance(exc, yaml.reader.ReaderError):
        char = f"character #x{exc.character:04x}" if isinstance(exc.character, int) else "a character"
        line = text.count("\n", 0, exc.position) + 1
        return YAMLInputError(f"not valid YAML: {char} is not allowed in YAML (offset {exc.position})", line)
    return YAMLInputError(f"not valid YAML: {_short(problem or type(exc).__name__)}", _line(mark))


def parse_yaml(text: str) -> tuple[Any, Node | None]:
    """(data, root node) of one YAML document under the limits above; (None, None) when empty."""
    loader = None
    try:
        loader = _Loader(text)  # the reader refuses control characters here already
        node = loader.get_single_node()
        if node is None:
            return None, None
        check_expansion(node)
        return loader.construct_document(node), node
    except yaml.YAMLError as exc:
        raise _yaml_problem(exc, text) from None
    except RecursionError:  # not expected under MAX_DEPTH; never a 1,000-line traceback
        raise YAMLInputError(f"nested more than {MAX_DEPTH} levels deep") from None
    finally:
        if loader is not None:
            loader.dispose()


def read_text(path: Path, *, what: str = "file", max_bytes: int = MAX_BYTES) -> str:
    """A small UTF-8 text file, or YAMLInputError/OSError saying why not (never its bytes)."""
    if path.is_dir():
        raise IsADirectoryError(f"is a directory, expected a {what}")
    with open(path, "rb") as fh:
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise YAMLInputError(f"larger than {max_bytes:,} bytes; a {what} is a few KiB")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise YAMLInputError(f"not UTF-8 text (byte 0x{data[exc.start]:02x} at offset {exc.start})", line) from None


def load_yaml(path: str | Path, *, what: str = "file") -> tuple[Any, Node | None]:
    """Read and parse `path`: (data, root node). Raises YAMLInputError or OSError."""
    return parse_yaml(read_text(Path(path), what=what))


def line_of(root: Node | None, loc: tuple[Any, ...]) -> int | None:
    """The line of the deepest node along `loc` (mapping keys / sequence indices) that exists:
    the key itself for a mapping entry, so `budget.probe_secs` points at `probe_secs:`."""
    if root is None:
        return None
    node: Node = root
    line = _line(node.start_mark)
    for part in loc:
        if isinstance(node, MappingNode):
            for key_node, value_node in node.value:
                if isinstance(key_node, ScalarNode) and key_node.value == str(part):
                    line = _line(key_node.start_mark)
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
            line = _line(node.start_mark)
        else:
            return line
    return line
