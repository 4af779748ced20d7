"""Request bodies bounded before anything parses them: a size limit per route, and JSON that is safe to parse.

Upload routes (bundles, delta bundles, SBOMs) stream their body to disk and bound it themselves; here only their
declared Content-Length is checked. Every other body is read here, counting while it arrives (so a chunked body
without Content-Length is bounded too), and refused with 413 as soon as it passes the route's limit. A JSON body is
then checked once before the application parses it: nesting depth, NaN/Infinity, numbers that overflow a 64-bit
integer or a float, lone surrogates and NUL characters (which no database column stores) are a 400, and so is a
NUL character in the URL's path or query.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, MutableMapping
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from .asgi import Receive, Scope, Send, send_error
from .ids import MAX_INT64

__all__ = ["MAX_JSON_DEPTH", "SAME", "BodyLimits", "BodyRule", "JsonRefused", "json_problem", "parse_json_members", "text_digest"]

MAX_JSON_DEPTH = 32
_NO_BODY_METHODS = ("GET", "HEAD", "OPTIONS", "DELETE")


@dataclass(frozen=True)
class BodyRule:
    """Bodies of `method` requests whose path matches `path` may be `limit` bytes; `streamed`: the route bounds it."""

    method: str
    path: re.Pattern[str]
    limit: int
    streamed: bool = False
    setting: str | None = None  # the environment variable that sets `limit`, named in the 413 message


class _Refused(Exception):
    def __init__(self, status: int, code: str, message: str, unread: bool = False) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.unread = unread  # the client may still be sending its body


# After a 413, the rest of a body is read and dropped up to this much (or for this long), so that a client still
# sending it gets the answer instead of a connection reset; a larger body is cut off (the connection closes).
_DRAIN_BYTES = 8 * 1024 * 1024
_DRAIN_SECONDS = 2.0


async def _drain(receive: Receive) -> None:
    left = _DRAIN_BYTES
    while left > 0:
        message = await receive()
        if message["type"] != "http.request":
            return
        left -= len(message.get("body", b""))
        if not message.get("more_body", False):
            return


class _Unsafe(Exception):
    """A JSON value the server does not accept (raised from json.loads hooks; not a ValueError on purpose)."""


def _constant(name: str) -> Any:
    raise _Unsafe(f"{name} is not a JSON number; send a finite number")


def _float(text: str) -> float:
    value = float(text)
    if value in (float("inf"), float("-inf")):
        raise _Unsafe(f"the number {text[:40]} is out of range")
    return value


def _int(text: str) -> int:
    if len(text) > 20:
        raise _Unsafe(f"the integer {text[:40]}… is out of range (at most {MAX_INT64})")
    value = int(text)
    if not -MAX_INT64 <= value <= MAX_INT64:
        raise _Unsafe(f"the integer {text} is out of range (at most {MAX_INT64})")
    return value


_SUSPECT_ESCAPE = re.compile(rb"\\u(?:[dD][89a-fA-F]|0000)")
_BRACKET_DEPTH = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(c for c in range(256) if c not in _BRACKET_DEPTH)


def _depth(body: bytes, limit: int) -> bool:
    """Whether the JSON text nests deeper than `limit` (brackets inside strings do not count).

    In C-speed steps (a regular expression over every string took milliseconds for a 24 KB inventory): escaped
    backslashes, then escaped quotes, are dropped, so every quote left opens or closes a string; the text between
    every other pair of quotes is outside strings; only its brackets count.
    """
    unescaped = body.replace(b"\\\\", b"").replace(b'\\"', b"")
    brackets = b"".join(unescaped.split(b'"')[::2]).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= limit:
        return False
    return max(accumulate(map(_BRACKET_DEPTH.__getitem__, brackets))) > limit


def _bad_text(value: Any) -> str | None:
    """A string (or key) in the parsed value that holds a lone surrogate or a NUL character, if any."""
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, str):
            if "\x00" in v:
                return "a NUL character (\\u0000)"
            try:
                v.encode("utf-8")
            except UnicodeEncodeError:
                return "a lone surrogate (a \\uD800-\\uDFFF escape that is not half of a pair)"
    return None


def json_problem(body: bytes, max_depth: int = MAX_JSON_DEPTH) -> str | None:
    """Why `body` is not acceptable JSON, or None when it is."""
    if _depth(body, max_depth):
        return f"the JSON nests deeper than {max_depth} levels"
    try:
        value = json.loads(body, parse_constant=_constant, parse_float=_float, parse_int=_int)
    except _Unsafe as exc:
        return str(exc)
    except (ValueError, RecursionError) as exc:
        return f"the body is not valid JSON ({str(exc)[:120]})"
    if _SUSPECT_ESCAPE.search(body):
        bad = _bad_text(value)
        if bad is not None:
            return f"a string holds {bad}; send valid Unicode text"
    return None


class JsonRefused(Exception):
    """A body that json_problem refuses; the message says why."""


class _Same:
    def __repr__(self) -> str:
        return "SAME"


SAME: Any = _Same()  # the value of a member whose text was checked before (parse_json_members' `known`)


_STRICT = json.JSONDecoder(parse_constant=_constant, parse_float=_float, parse_int=_int)
_SPACE = re.compile(r"[ \t\n\r]*")


def text_digest(text: str) -> str:
    """The sha256 of a JSON text, as `parse_json_members` recognises a member it has seen."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def parse_json_members(
    body: bytes, max_depth: int = MAX_JSON_DEPTH, known: Mapping[str, tuple[int, str]] | None = None
) -> tuple[Any, dict[str, str]]:
    """`body` parsed once and checked as json_problem checks it, with the raw text of each top-level object member.

    The raw text lets a route fingerprint one member (a device's inventory) without serializing it again; a body
    that is not an object has no members. `known` names members whose text was checked before, by its length and
    `text_digest`: when the body holds that same text again, it is neither parsed nor checked again, and its value
    is SAME. Raises JsonRefused.
    """
    try:
        text = body.decode(json.detect_encoding(body), "surrogatepass")
        value, raw = _members(text, known or {})
    except _Unsafe as exc:
        raise JsonRefused(str(exc)) from None
    except (ValueError, RecursionError) as exc:
        raise JsonRefused(f"the body is not valid JSON ({str(exc)[:120]})") from None
    # The depth after the parse (json's scanner bounds its own recursion), member by member: a member seen before
    # is not measured again.
    if raw:
        deep = any(_depth(t.encode("utf-8", "surrogatepass"), max_depth - 1) for k, t in raw.items() if value[k] is not SAME)
    else:
        deep = _depth(body, max_depth)
    if deep:
        raise JsonRefused(f"the JSON nests deeper than {max_depth} levels")
    if _SUSPECT_ESCAPE.search(body):
        bad = _bad_text(value)
        if bad is not None:
            raise JsonRefused(f"a string holds {bad}; send valid Unicode text")
    return value, raw


def _members(text: str, known: Mapping[str, tuple[int, str]]) -> tuple[Any, dict[str, str]]:
    """The parsed document and, when it is an object, each member's text (json's own scanner, one value at a time)."""
    space = _SPACE.match
    i = space(text, 0).end()  # type: ignore[union-attr]  # the pattern matches the empty string
    if text[i : i + 1] != "{":
        return _STRICT.decode(text), {}
    obj: dict[str, Any] = {}
    raw: dict[str, str] = {}
    i = space(text, i + 1).end()  # type: ignore[union-attr]
    if text[i : i + 1] == "}":
        i += 1
    else:
        while True:
            if text[i : i + 1] != '"':
                raise ValueError(f"expecting a member name in double quotes at char {i}")
            key, i = _STRICT.raw_decode(text, i)
            i = space(text, i).end()  # type: ignore[union-attr]
            if text[i : i + 1] != ":":
                raise ValueError(f"expecting ':' delimiter at char {i}")
            start = space(text, i + 1).end()  # type: ignore[union-attr]
            seen = known.get(key)
            if seen is not None and text_digest(text[start : start + seen[0]]) == seen[1]:
                obj[key], i = SAME, start + seen[0]
            else:
                obj[key], i = _STRICT.raw_decode(text, start)
            raw[key] = text[start:i]
            i = space(text, i).end()  # type: ignore[union-attr]
            delimiter, i = text[i : i + 1], i + 1
            if delimiter == "}":
                break
            if delimiter != ",":
                raise ValueError(f"expecting ',' delimiter at char {i - 1}")
            i = space(text, i).end()  # type: ignore[union-attr]
    if space(text, i).end() != len(text):  # type: ignore[union-attr]
        raise ValueError(f"extra data at char {i}")
    return obj, raw


def _header(scope: Scope, name: bytes) -> str | None:
    for k, v in scope["headers"]:
        if k == name:
            return str(v.decode("latin-1"))
    return None


class BodyLimits:
    """ASGI middleware: bounds and checks request bodies per `rules` (first match), else `default_limit`."""

    def __init__(
        self,
        app: Any,
        rules: Iterable[BodyRule],
        default_limit: int,
        max_depth: int = MAX_JSON_DEPTH,
        default_setting: str | None = None,
    ) -> None:
        self.app, self.rules, self.max_depth = app, tuple(rules), max_depth
        self.default = BodyRule("*", re.compile(".*"), default_limit, setting=default_setting)

    def _rule(self, method: str, path: str) -> BodyRule:
        for rule in self.rules:
            if rule.method == method and rule.path.fullmatch(path):
                return rule
        return self.default

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            replay = await self._check(scope, receive)
        except _Refused as exc:
            # A body left unread (past the drain below) ends the connection: say so, so a client opens a new one for
            # its next request instead of reusing one the server is about to close.
            close = [(b"connection", b"close")] if exc.unread else None
            await send_error(send, exc.status, exc.code, exc.message, close)
            if exc.unread:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(_drain(receive), _DRAIN_SECONDS)
            return
        if replay is None:
            await self.app(scope, receive, send)
            return
        sent = False

        async def receive_again() -> MutableMapping[str, Any]:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": replay, "more_body": False}
            return await receive()

        await self.app(scope, receive_again, send)

    async def _check(self, scope: Scope, receive: Receive) -> bytes | None:
        """The body to replay to the application (None: pass the request through untouched)."""
        method, path = scope["method"], scope["path"]
        if "\x00" in path or b"%00" in scope.get("query_string", b""):
            raise _Refused(400, "invalid", "the URL holds a NUL character (%00); no name or value may contain one")
        rule = self._rule(method, path)
        declared = _header(scope, b"content-length")
        chunked = _header(scope, b"transfer-encoding") is not None
        if declared is not None:
            if not declared.isascii() or not declared.isdigit() or len(declared) > 19:
                raise _Refused(400, "invalid", "Content-Length must be a decimal number of bytes")
            if int(declared) > rule.limit:
                raise _Refused(413, "too_large", self._too_large(rule), unread=True)
        if rule.streamed or (method in _NO_BODY_METHODS and not chunked and not int(declared or 0)):
            return None
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _Refused(400, "invalid", "the client went away before the body was complete")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > rule.limit:
                raise _Refused(413, "too_large", self._too_large(rule), unread=bool(message.get("more_body", False)))
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if body.strip():  # every such body is JSON here (the DDI routes parse it whatever its Content-Type)
            problem = json_problem(body, self.max_depth)
            if problem is not None:
                raise _Refused(400, "invalid", problem)
        return body

    @staticmethod
    def _too_large(rule: BodyRule) -> str:
        where = f" (set by {rule.setting})" if rule.setting else ""
        return f"the request body is larger than this route's limit of {rule.limit} bytes{where}; send less"
