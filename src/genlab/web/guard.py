"""What the lab refuses at the door, and how it says so: one line that says what to do, never the input back.

`Guard` is a plain ASGI middleware in front of every request and WebSocket:
  - Host must be one of the names the lab serves on. A page on evil.example whose name an attacker re-points at
    127.0.0.1 (DNS rebinding) reaches the lab with Host and Origin both evil.example, so comparing the two proves
    nothing; comparing them with the lab's own names does. 400 otherwise.
  - Origin, when a browser sends one, must be one of the same names: a page elsewhere cannot drive the lab. 403.
  - A request body is at most MAX_BODY bytes, checked on Content-Length before anything is read and again while a
    chunked body streams in. 413 otherwise.
`parse_json` is the one JSON reader for request bodies and WebSocket messages (run in a worker thread, so a large
body never stalls the event loop); `describe` turns a ValueError or a pydantic error list into the one line.
"""

from __future__ import annotations

import json
import math
import re
import socket
from collections.abc import Collection
from urllib.parse import urlsplit

MAX_BODY = 1_000_000  # bytes; the lab's largest body (a run request, a latent vector) is under 2 KB
MAX_JSON_VALUES = 10_000  # numbers, strings, lists and objects in one document: 2,000 drawn points take 6,001
MAX_JSON_DEPTH = 32  # the lab's own messages nest 3 deep
LOOPBACK = ("127.0.0.1", "localhost", "[::1]")
FIELD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,39}$")  # a client's key worth naming in a message


# --- who may talk to the lab -----------------------------------------------------------------------


def _bracket(host: str) -> str:
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def served_hosts(host: str, port: int) -> tuple[str, ...]:
    """The Host values (name:port) of a lab listening on host:port: the loopback names and the address it is bound
    to (the one `genlab lab` prints, 0.0.0.0 included: browsers send Origin when another page points at it). Off
    loopback (a LAN address, or 0.0.0.0 / :: for every interface), also this machine's names and the addresses
    they resolve to, so other machines can open http://NAME:PORT/. An address that is none of these (another
    interface's IP) is refused: bind that address with --host."""
    names = {*LOOPBACK, host} if host else set(LOOPBACK)
    if host not in ("127.0.0.1", "localhost", "::1"):
        machine = {socket.gethostname(), socket.getfqdn()}
        names |= machine
        for name in machine:
            try:
                names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
            except OSError:  # a name the resolver does not know: it cannot be used in a URL either
                continue
    return tuple(sorted({f"{_bracket(name.lower())}:{port}" for name in names}))


def _host_port(netloc: str) -> str:
    """'Host:Port' as compared with the allow-list: lower case, the HTTP port written out."""
    netloc = netloc.lower()
    host, _, port = netloc.rpartition(":") if not netloc.endswith("]") else (netloc, "", "")
    if not host or not port.isdigit():
        return f"{netloc}:80"
    return netloc


def host_allowed(netloc: str, allowed: Collection[str]) -> bool:
    """An allowed entry is name:port, or a bare name that allows every port (create_app's loopback default)."""
    with_port = _host_port(netloc)
    return with_port in allowed or with_port.rpartition(":")[0] in allowed


def origin_allowed(origin: str, allowed: Collection[str]) -> bool:
    parts = urlsplit(origin)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and host_allowed(parts.netloc, allowed)


class Guard:
    """ASGI middleware: the Host and Origin checks for every request and WebSocket, and the body cap."""

    def __init__(self, app, *, allowed_hosts: Collection[str], max_body: int = MAX_BODY):
        self.app = app
        self.allowed = {entry.lower() for entry in allowed_hosts}
        self.max_body = max_body

    async def __call__(self, scope, receive, send):
        if scope["type"] not in ("http", "websocket"):
            return await self.app(scope, receive, send)
        headers = {key.decode("latin-1"): value.decode("latin-1") for key, value in scope["headers"]}
        if not host_allowed(headers.get("host", ""), self.allowed):
            return await refuse(scope, send, 400, "this lab answers only to the address `genlab lab` printed "
                                "(or localhost): open it by that address")
        origin = headers.get("origin")
        if origin is not None and not origin_allowed(origin, self.allowed):
            return await refuse(scope, send, 403, "cross-origin request refused: use the lab's own pages")
        if scope["type"] == "websocket" or not ("content-length" in headers or "transfer-encoding" in headers):
            return await self.app(scope, receive, send)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body):
            return await refuse(scope, send, 413, f"request body over {self.max_body:,} bytes: the lab's requests "
                                "are small; send less")
        body = await self._read_body(receive)
        if body is None:
            return await refuse(scope, send, 413, f"request body over {self.max_body:,} bytes: the lab's requests "
                                "are small; send less")
        replayed = False

        async def replay():
            nonlocal replayed
            if replayed:
                return await receive()  # http.disconnect, for responses that watch for it
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)

    async def _read_body(self, receive) -> bytes | None:
        """The whole body, or None as soon as it passes the cap (a chunked body has no Content-Length)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"".join(chunks)
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)


async def refuse(scope, send, status: int, message: str) -> None:
    """A one-line JSON refusal; for a WebSocket, as the HTTP answer to its handshake where the server can send
    one (uvicorn can), else by closing it with that line as the reason."""
    body = json.dumps({"detail": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1008, "reason": message[:120]})


# --- reading JSON ----------------------------------------------------------------------------------


def _refuse_constant(name: str):
    raise json.JSONDecodeError(f"{name} is not a number JSON has: send finite numbers", "", 0)


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e999 reads as infinity
        raise json.JSONDecodeError("a number is too large to be finite: send finite numbers", "", 0)
    return value


def parse_json(raw: bytes | str):
    """A JSON document as the lab reads it: UTF-8, finite numbers only, at most MAX_JSON_VALUES values nested at
    most MAX_JSON_DEPTH deep; json.JSONDecodeError (a ValueError) with what is wrong otherwise."""
    try:
        text = raw.decode() if isinstance(raw, bytes) else raw
        value = json.loads(text, parse_constant=_refuse_constant, parse_float=_finite)
    except UnicodeDecodeError:
        raise json.JSONDecodeError("the body is not UTF-8 text", "", 0) from None
    except RecursionError:
        raise json.JSONDecodeError(f"nested more than {MAX_JSON_DEPTH} deep: send the lab's flat messages",
                                   "", 0) from None
    count, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        count += 1
        if count > MAX_JSON_VALUES or depth > MAX_JSON_DEPTH:
            raise json.JSONDecodeError(f"more than {MAX_JSON_VALUES:,} values or nested more than {MAX_JSON_DEPTH} "
                                       "deep: send the lab's small messages", "", 0)
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item)
    return value


# --- one line ------------------------------------------------------------------------------------------


def describe_errors(errors: list[dict]) -> str:
    """pydantic's error list -> 'field: what is allowed', the first error only (and how many more). A client's
    own key is named only when it looks like a field name; the input value is never repeated."""
    first = errors[0]
    where = ".".join(str(part) if isinstance(part, int) or FIELD.match(str(part)) else "(a key)"
                     for part in first["loc"] if part not in ("body", "query", "path", "[key]"))
    if first["type"] == "json_invalid":
        line = f"the body is not JSON the lab reads: {first.get('ctx', {}).get('error', 'malformed')}"
    elif first["type"] == "extra_forbidden":
        line = f"{where}: not a field of this request: remove it"
    elif first["type"] == "missing" and not where:
        line = "send a JSON body"
    else:
        line = f"{where or 'body'}: {first['msg']}"
    return line if len(errors) == 1 else f"{line} (and {len(errors) - 1} more)"


def describe(error: ValueError) -> str:
    """One line from a ValueError, or from pydantic's ValidationError (a ValueError with a list of errors)."""
    if hasattr(error, "errors"):
        return describe_errors(error.errors())
    return str(error)
