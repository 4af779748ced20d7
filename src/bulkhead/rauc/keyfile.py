"""GLib key-file parsing as RAUC applies it: groups, keys, escapes and lists, with line numbers."""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import ManifestError

__all__ = ["Entry", "Group", "escape_value", "parse_keyfile", "split_list"]

_ESCAPES = {"s": " ", "n": "\n", "t": "\t", "r": "\r", "\\": "\\"}


@dataclass
class Entry:
    """One `key=value` line (value still escaped, as lists need the raw text)."""

    key: str
    raw: str
    line: int


@dataclass
class Group:
    """One `[group]`, its keys in file order (a repeated key keeps the last value)."""

    name: str
    line: int
    entries: dict[str, Entry] = field(default_factory=dict)


def _unescape(raw: str, line: int, list_sep: str | None = None) -> list[str]:
    """Undo GLib escapes; with list_sep, split on unescaped separators too."""
    items: list[str] = []
    cur: list[str] = []
    i = 0
    while i < len(raw):
        ch = raw[i]
        if ch == "\\":
            if i + 1 >= len(raw):
                raise ManifestError("value ends with a lone backslash", line)
            nxt = raw[i + 1]
            if nxt in _ESCAPES:
                cur.append(_ESCAPES[nxt])
            elif list_sep is not None and nxt == list_sep:
                cur.append(list_sep)
            else:
                raise ManifestError(f"invalid escape sequence '\\{nxt}' in value", line)
            i += 2
            continue
        if list_sep is not None and ch == list_sep:
            items.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
        i += 1
    if list_sep is None or cur:
        items.append("".join(cur))
    return items


def parse_keyfile(text: bytes | str) -> list[Group]:
    """Parse key-file text into groups; errors name the line."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"not valid UTF-8 at byte {exc.start}") from exc
    groups: dict[str, Group] = {}
    order: list[Group] = []
    current: Group | None = None
    for lineno, line in enumerate(text.split("\n"), start=1):
        stripped = line.lstrip(" \t\r")
        if not stripped or stripped.startswith("#"):
            continue
        stripped = stripped.rstrip("\r")
        if stripped.startswith("["):
            end = stripped.find("]")
            if end < 0 or stripped[end + 1 :].strip():
                raise ManifestError(f"malformed group header {stripped!r}", lineno)
            name = stripped[1:end]
            if not name or any(c in name for c in "[]") or any(ord(c) < 32 for c in name):
                raise ManifestError(f"invalid group name {name!r}", lineno)
            if name in groups:
                current = groups[name]
            else:
                current = Group(name, lineno)
                groups[name] = current
                order.append(current)
            continue
        if "=" not in stripped:
            raise ManifestError(f"line is neither a group, a key=value pair nor a comment: {stripped!r}", lineno)
        if current is None:
            raise ManifestError("key-value pair before the first [group]", lineno)
        key, raw = stripped.split("=", 1)
        key = key.rstrip(" \t")
        if not key:
            raise ManifestError("empty key name", lineno)
        current.entries[key] = Entry(key, raw.lstrip(" \t"), lineno)
    return order


def get_string(entry: Entry) -> str:
    """The value of `entry` as a string (GLib `g_key_file_get_string`)."""
    return _unescape(entry.raw, entry.line)[0]


def split_list(entry: Entry) -> list[str]:
    """The value of `entry` as a `;`-separated list; a trailing `;` is allowed."""
    return _unescape(entry.raw, entry.line, ";")


def escape_value(value: str) -> str:
    """Escape a string the way GLib writes it."""
    out = value.replace("\\", "\\\\").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    if out.startswith(" "):
        out = "\\s" + out[1:]
    return out
