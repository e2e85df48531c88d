"""Web hardening of the review UI: who may talk to it, how much, and what it leaves behind.

- :class:`RequestGuard` (ASGI middleware, added by :func:`harden_launch_options`) answers 403 to
  every HTTP request or websocket whose ``Host`` header names anything but this server: the
  loopback names (``localhost``, ``127.0.0.1``, ``::1``) and the address given with ``--host``
  (for ``0.0.0.0`` the machine's host names, their addresses and its outgoing IPv4/IPv6
  addresses), plus ``ECHOMEASURE_ALLOWED_HOSTS`` (comma-separated ``name`` or ``name:port``,
  e.g. a reverse proxy) and, on a Hugging Face Space, ``SPACE_HOST``.  The ``Host`` port is not
  checked (a port mapping or proxy in front of the server may forward another port).
- An ``Origin`` header, when there is one, must name this server at the port the request was
  sent to (the ``Host`` port; without one, the default port of the Origin's scheme), or a
  configured name at its port (without one: 80 for ``http``, 443 for ``https``).  A page on
  another site, one reached through DNS rebinding, or one served from another port of this
  machine (``http://localhost:9999``) therefore cannot drive the API.  ``Origin: null``
  (sandboxed frames, local files) is refused too.
- Request bodies are limited to :data:`API_BODY_LIMIT_BYTES` (413) except on Gradio's upload
  route, which keeps the app's own upload limit.  A body announced too large is refused before
  it is read; any other body is read only up to the limit, whatever its ``Content-Length``
  (a chunked body may come with a small one).
- An upload must announce its length (``Content-Length``; browsers always do): one request
  holds at most the app's upload limit (``max_file_size``) plus the multipart framing (Gradio
  applies its limit to each file, and takes 1,000 files a request), and it is refused (507)
  when the uploads waiting in the upload folder would pass :data:`UPLOAD_FOLDER_QUOTA_BYTES`.
- Failed logins (``--auth``) are counted per client address: after
  :data:`LOGIN_FAILURES_ALLOWED` within :data:`LOGIN_FAILURE_WINDOW_S` seconds, that address
  gets 429 on the login route until the oldest failure leaves the window (Gradio itself answers
  every guess at once, hundreds a second).  Behind a reverse proxy every client shares the
  proxy's address: a stream of wrong passwords then also delays the right one.
- :func:`private_upload_dir` gives Gradio a private temporary folder (mode 0700) for uploads and
  downloads; :func:`discard_upload` removes an upload once it was processed, and the whole
  folder goes at shutdown (:func:`remove_private_upload_dir`, also registered with ``atexit``);
  folders of servers that were killed are removed when the next one starts.
- :func:`received_upload` is the one rule for a path a client names as its upload: a regular
  file inside Gradio's upload folder (:func:`upload_folder`), symlinks and ``..`` resolved
  first, and not one of the app's own downloads.  Anything else (a stored frame in the served
  image folder, a file in the working directory) is never opened and never removed.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import shutil
import socket
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
#: The port a URL of each scheme means when it names none.
DEFAULT_PORTS = {"http": 80, "https": 443}
#: A configured name without a port: the ports a reverse proxy in front of the server uses.
PROXY_PORTS = frozenset(DEFAULT_PORTS.values())
#: Longest piece of a client's value (path, header) written to the log.
LOGGED_VALUE_CHARS = 200
WILDCARD_HOSTS = frozenset({"0.0.0.0", "::", ""})
#: Largest request body accepted outside the upload route (JSON API calls are a few kB).
API_BODY_LIMIT_BYTES = 1_000_000
#: Routes that receive files; Gradio applies the app's ``max_file_size`` there.
UPLOAD_PATHS = ("/gradio_api/upload", "/upload")
ALLOWED_HOSTS_ENV = "ECHOMEASURE_ALLOWED_HOSTS"
#: Multipart framing allowed beside the file in one upload request (boundaries, headers, name).
UPLOAD_FRAMING_BYTES = 64 * 1024
#: Most the upload folder may hold (uploads waiting to be opened, CSV downloads) before uploads are refused.
UPLOAD_FOLDER_QUOTA_BYTES = 2 * 1024**3
#: Gradio's login route (``/login`` or ``/login/``, under any root path).
LOGIN_PATH = "/login"
#: Failed logins one client address may make within :data:`LOGIN_FAILURE_WINDOW_S`.
LOGIN_FAILURES_ALLOWED = 10
LOGIN_FAILURE_WINDOW_S = 300.0
#: Client addresses whose failures are remembered before expired ones are forgotten.
_LOGIN_ADDRESSES_KEPT = 1024
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


def _normal(name: str) -> str:
    """A host name as compared: no brackets, lower case, without the one trailing dot of a
    fully qualified name (``localhost.``); ``localhost..`` is no name and stays unequal."""
    name = name.strip().strip("[]").lower()
    return name[:-1] if name.endswith(".") else name


def _configured(extra: Iterable[str] = ()) -> list[str]:
    """The configured entries: ``extra``, ``ECHOMEASURE_ALLOWED_HOSTS`` and a Space's ``SPACE_HOST``."""
    entries = [*extra, *os.environ.get(ALLOWED_HOSTS_ENV, "").split(",")]
    if os.environ.get("SPACE_HOST"):  # a Hugging Face Space: the public name its proxy forwards
        entries.append(os.environ["SPACE_HOST"])
    return [e.strip() for e in entries if e.strip()]


def _entry(value: str) -> tuple[str, int | None] | None:
    """``(name, port or None)`` of a configured ``name``, ``name:port``, ``[v6]:port`` or bare IPv6."""
    value = value.strip()
    if value.count(":") > 1 and not value.startswith("["):
        return _normal(value), None  # a bare IPv6 address
    return authority_of_host_header(value)


def allowed_hosts(bound_host: str | None, extra: Iterable[str] = ()) -> frozenset[str]:
    """Host names a request may name for a server bound to ``bound_host`` (any port)."""
    names = set(LOOPBACK_NAMES)
    host = _normal(bound_host or "127.0.0.1")
    if host in WILDCARD_HOSTS:
        for name in (socket.gethostname(), socket.getfqdn()):
            names.add(_normal(name))
            with contextlib.suppress(OSError):
                names.update(_normal(str(info[4][0])) for info in socket.getaddrinfo(name, None))
        names.update(_primary_addresses())
    else:
        names.add(host)
    names.update(entry[0] for entry in map(_entry, _configured(extra)) if entry is not None)
    names.discard("")
    return frozenset(names)


def trusted_origins(extra: Iterable[str] = ()) -> frozenset[tuple[str, int | None]]:
    """The configured ``(name, port)`` pages may come from whatever port a request was sent to.

    A port of None means the scheme's default port (a reverse proxy on 80 or 443).
    """
    return frozenset(entry for entry in map(_entry, _configured(extra)) if entry is not None and entry[0])


def _primary_addresses() -> set[str]:
    """This machine's outgoing IPv4/IPv6 addresses (a UDP connect sends nothing)."""
    found = set()
    for family, probe in ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1")):
        with contextlib.suppress(OSError), socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.connect((probe, 9))
            found.add(_normal(str(sock.getsockname()[0])))
    return found


def authority_of_host_header(value: str) -> tuple[str, int | None] | None:
    """``("example.org", 7860)`` of ``example.org:7860``; port None when absent; None when malformed.

    Only ``name[:port]`` is a host: a value with a path, query, fragment or user part (which
    browsers never send) is malformed, whatever name it holds.
    """
    value = value.strip()
    try:
        parts = urlsplit("//" + value)
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.netloc != value or "@" in value:
        return None
    return (_normal(host), port) if host else None


def host_of_host_header(value: str) -> str | None:
    """``example.org`` of ``example.org:7860``; ``::1`` of ``[::1]:7860``; None when malformed."""
    authority = authority_of_host_header(value)
    return authority[0] if authority else None


def origin_of(value: str) -> tuple[str, str, int] | None:
    """``(scheme, host, port)`` of an ``Origin`` header, the port implied by the scheme when absent;
    None for ``null`` or anything malformed."""
    try:
        parts = urlsplit(value.strip())
        host, port = parts.hostname, parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not host:
        return None
    return parts.scheme, _normal(host), port if port is not None else DEFAULT_PORTS[parts.scheme]


def host_of_origin(value: str) -> str | None:
    """The host of an ``Origin`` header; None for ``null`` or anything malformed."""
    origin = origin_of(value)
    return origin[1] if origin else None


def origin_allowed(
    origin: str, host_header: str, allowed: frozenset[str], trusted: frozenset[tuple[str, int | None]] = frozenset()
) -> bool:
    """Whether a page at ``origin`` may call the server a request with ``host_header`` was sent to.

    Yes when the Origin names this server (a name of ``allowed``) at the port the request went
    to (the Host port, or the scheme's default when the Host names none), or a ``trusted``
    configured name at its port (None: the scheme's default port).  Another port of an allowed
    name is another web site (any local program may serve pages there).
    """
    parsed, sent_to = origin_of(origin), authority_of_host_header(host_header)
    if parsed is None or sent_to is None:
        return False
    scheme, host, port = parsed
    if any(host == name and port == (wanted or DEFAULT_PORTS[scheme]) for name, wanted in trusted):
        return True
    return host in allowed and port == (sent_to[1] or DEFAULT_PORTS[scheme])


def refusal(
    headers: Any, allowed: frozenset[str], trusted: frozenset[tuple[str, int | None]] = frozenset()
) -> str | None:
    """Why a request with these headers is refused (None: allowed)."""
    host_header = headers.get("host")
    if host_header is None or host_of_host_header(host_header) not in allowed:
        return "the Host header does not name this server"
    origin = headers.get("origin")
    if origin is not None and not origin_allowed(origin, host_header, allowed, trusted):
        return "the request comes from another site (Origin: another host or port)"
    return None


def shorten(value: object, limit: int = LOGGED_VALUE_CHARS) -> str:
    """``value`` as text for the log, cut to ``limit`` characters (a client's value can be 1 MB)."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} chars)"


class RequestGuard:
    """ASGI middleware: Host/Origin check (403) and request body limit (413).

    Parameters
    ----------
    app
        The wrapped ASGI app.
    allowed
        Host names accepted (:func:`allowed_hosts`).
    trusted
        Configured ``(name, port)`` origins accepted whatever the Host (:func:`trusted_origins`).
    body_limit_bytes
        Largest body outside ``upload_paths``.
    upload_paths
        Path suffixes of the upload routes (they keep their own limit).
    clock
        Seconds (monotonic) for the failed-login window.
    upload_limit_bytes
        Largest upload request (None: no limit but the folder quota).
    upload_quota_bytes
        Most the upload folder (:func:`upload_folder`) may hold with the upload in it.
    """

    def __init__(
        self,
        app: Any,
        allowed: frozenset[str],
        body_limit_bytes: int = API_BODY_LIMIT_BYTES,
        upload_paths: tuple[str, ...] = UPLOAD_PATHS,
        trusted: frozenset[tuple[str, int | None]] = frozenset(),
        clock: Callable[[], float] = time.monotonic,
        upload_limit_bytes: int | None = None,
        upload_quota_bytes: int = UPLOAD_FOLDER_QUOTA_BYTES,
    ) -> None:
        self.app = app
        self.allowed = allowed
        self.trusted = trusted
        self.body_limit_bytes = body_limit_bytes
        self.upload_paths = upload_paths
        self.clock = clock
        self.upload_limit_bytes = upload_limit_bytes
        self.upload_quota_bytes = upload_quota_bytes
        self.login_failures: dict[str, deque[float]] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.datastructures import Headers

        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        reason = refusal(headers, self.allowed, self.trusted)
        if reason is not None:
            log.warning("refused %s %s: %s", scope.get("method", "WEBSOCKET"), shorten(scope.get("path", "")), reason)
            if scope["type"] == "websocket":
                await send({"type": "websocket.close", "code": 1008})
                return
            await _json_response(send, 403, f"forbidden: {reason}")
            return
        if scope["type"] == "http" and _is_framework_docs(scope):
            # FastAPI's own schema and docs pages: not part of the app, and served without login
            await _json_response(send, 404, "not found")
            return
        if scope["type"] == "http" and scope.get("method") == "POST" and _is_login(scope):
            wait_s = self._login_wait_s(_client_address(scope))
            if wait_s > 0:
                log.warning("refused a login from %s: too many failed logins", shorten(_client_address(scope)))
                await _json_response(send, 429, f"too many failed logins from this address; try again in {wait_s:.0f} s")
                return
            send = self._counting_login_failures(_client_address(scope), send)
        if scope["type"] == "http" and scope.get("method") in _BODY_METHODS and self._is_upload(scope):
            upload_refusal = self._upload_refusal(headers)
            if upload_refusal is not None:
                log.warning("refused an upload: %s", upload_refusal[1])
                await _json_response(send, *upload_refusal)
                return
        if scope["type"] == "http" and scope.get("method") in _BODY_METHODS and not self._is_upload(scope):
            length = headers.get("content-length")
            if length is not None and (not length.strip().isdigit() or int(length) > self.body_limit_bytes):
                await _json_response(send, 413, f"request body over {self.body_limit_bytes} bytes")
                return
            # The body is counted as it arrives whatever the headers say: with both Content-Length
            # and Transfer-Encoding the server reads the chunked body, however long, and a small
            # Content-Length beside it proves nothing.
            replay = await self._read_limited(receive)
            if replay is None:
                await _json_response(send, 413, f"request body over {self.body_limit_bytes} bytes")
                return
            receive = replay
        await self.app(scope, receive, send)

    def _upload_refusal(self, headers: Any) -> tuple[int, str] | None:
        """``(status, reason)`` when an upload request is refused before its body is read."""
        length = headers.get("content-length")
        if length is None or "transfer-encoding" in headers:
            return 411, "an upload must give its length (Content-Length, not chunked)"
        if not length.strip().isdigit():
            return 400, "the upload's Content-Length is not a number"
        size = int(length)
        if self.upload_limit_bytes is not None and size > self.upload_limit_bytes:
            return 413, f"upload over {self.upload_limit_bytes} bytes"
        if folder_bytes(upload_folder()) + size > self.upload_quota_bytes:
            return 507, "the uploads waiting to be opened fill the server's upload space; open them or try again later"
        return None

    def _recent_login_failures(self, address: str) -> deque[float]:
        """The failed logins of ``address`` still inside the window (older ones are dropped)."""
        now = self.clock()
        if len(self.login_failures) > _LOGIN_ADDRESSES_KEPT:
            for other in list(self.login_failures):
                times = self.login_failures[other]
                if not times or now - times[-1] >= LOGIN_FAILURE_WINDOW_S:
                    del self.login_failures[other]
        failures = self.login_failures.setdefault(address, deque())
        while failures and now - failures[0] >= LOGIN_FAILURE_WINDOW_S:
            failures.popleft()
        return failures

    def _login_wait_s(self, address: str) -> float:
        """Seconds ``address`` must wait before its next login (0: it may try now)."""
        failures = self._recent_login_failures(address)
        if len(failures) < LOGIN_FAILURES_ALLOWED:
            return 0.0
        return max(failures[-LOGIN_FAILURES_ALLOWED] + LOGIN_FAILURE_WINDOW_S - self.clock(), 1.0)

    def _counting_login_failures(self, address: str, send: Any) -> Any:
        """``send`` that records a failed login (a 4xx answer) of ``address``."""

        async def counting(message: Any) -> None:
            if message["type"] == "http.response.start" and 400 <= message["status"] < 500:
                self._recent_login_failures(address).append(self.clock())
            await send(message)

        return counting

    def _is_upload(self, scope: Any) -> bool:
        path = scope.get("path", "")
        return any(path == p or path.endswith(p) for p in self.upload_paths)

    async def _read_limited(self, receive: Any) -> Any:
        """Read a chunked body up to the limit; a replaying ``receive``, or None when over it."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.body_limit_bytes:
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Any:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return replay


#: FastAPI's default schema and documentation routes (answered 200 without login under --auth).
FRAMEWORK_DOCS_PATHS = ("/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc")


def _is_framework_docs(scope: Any) -> bool:
    """A request for one of :data:`FRAMEWORK_DOCS_PATHS` (under any root path)."""
    path = scope.get("path", "").rstrip("/")
    return any(path == p or path.endswith(p) for p in FRAMEWORK_DOCS_PATHS)


def _is_login(scope: Any) -> bool:
    path = scope.get("path", "").rstrip("/")
    return path == LOGIN_PATH or path.endswith(LOGIN_PATH)


def _client_address(scope: Any) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


async def _json_response(send: Any, status: int, message: str) -> None:
    import json

    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


# --------------------------------------------------------------------------- launching


def harden_launch_options(options: dict[str, Any]) -> dict[str, Any]:
    """``gr.Blocks.launch`` options with :class:`RequestGuard` added for the bound host.

    Gradio adds its own middleware (CORS, compression) after creating the app, which would put
    them in front of the guard; a lifespan hook moves the guard to the front before the first
    request, so even a CORS preflight from a foreign origin gets the 403.
    """
    from starlette.middleware import Middleware

    host = options.get("server_name") or os.environ.get("GRADIO_SERVER_NAME") or "127.0.0.1"
    out = dict(options)
    app_kwargs = dict(out.get("app_kwargs") or {})
    max_file_bytes = size_in_bytes(options.get("max_file_size"))
    guard = Middleware(
        RequestGuard, allowed=allowed_hosts(host), trusted=trusted_origins(),
        upload_limit_bytes=None if max_file_bytes is None else max_file_bytes + UPLOAD_FRAMING_BYTES,
    )
    app_kwargs["middleware"] = [*app_kwargs.get("middleware", []), guard]
    app_kwargs["lifespan"] = _guard_first(app_kwargs.get("lifespan"))
    out["app_kwargs"] = app_kwargs
    return out


_SIZE_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4}


def size_in_bytes(size: str | int | None) -> int | None:
    """Bytes of a size as Gradio's ``max_file_size`` takes it (``200mb``: 1024-based units)."""
    if size is None or isinstance(size, int):
        return size
    text = size.replace(" ", "").upper()
    digits = len(text) - len(text.lstrip("0123456789"))
    if not digits or text[digits:] not in _SIZE_UNITS:
        raise ValueError(f"not a file size: {size!r}")
    return int(text[:digits]) * _SIZE_UNITS[text[digits:]]


def _guard_first(user_lifespan: Any) -> Any:
    """A lifespan that makes :class:`RequestGuard` the outermost middleware, then runs ``user_lifespan``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> Any:
        middleware = list(getattr(app, "user_middleware", []))
        guards = [m for m in middleware if getattr(m, "cls", None) is RequestGuard]
        if guards and middleware[: len(guards)] != guards:
            app.user_middleware[:] = guards + [m for m in middleware if m not in guards]
            app.middleware_stack = app.build_middleware_stack()
        if user_lifespan is None:
            yield None
        else:
            async with user_lifespan(app) as state:
                yield state

    return lifespan


# --------------------------------------------------------------------------- temporary files

UPLOAD_DIR_PREFIX = "echomeasure-uploads-"
#: Folders of the app's own downloads (CSV exports) inside the upload folder: never an upload.
DOWNLOAD_DIR_PREFIX = "echomeasure-export-"
_private_dir: Path | None = None


def private_upload_dir() -> Path:
    """This process's private folder for Gradio uploads and downloads (created once, mode 0700).

    Sets ``GRADIO_TEMP_DIR`` (read by Gradio when components and the server are created), unless
    the user set it, in which case that folder is used and left in place at exit.
    """
    global _private_dir
    if _private_dir is not None and _private_dir.is_dir():
        return _private_dir
    chosen = os.environ.get("GRADIO_TEMP_DIR")
    if chosen and _private_dir is None:
        return Path(chosen)
    remove_stale_upload_dirs()
    _private_dir = Path(tempfile.mkdtemp(prefix=f"{UPLOAD_DIR_PREFIX}{os.getpid()}-"))
    os.environ["GRADIO_TEMP_DIR"] = str(_private_dir)
    atexit.register(remove_private_upload_dir)
    return _private_dir


def remove_stale_upload_dirs(folder: str | os.PathLike[str] | None = None) -> list[Path]:
    """Remove upload folders left by echomeasure servers that were killed (their process is gone)."""
    removed = []
    for path in Path(folder or tempfile.gettempdir()).glob(f"{UPLOAD_DIR_PREFIX}*-*"):
        pid_text = path.name[len(UPLOAD_DIR_PREFIX):].split("-", 1)[0]
        if not pid_text.isdigit() or not path.is_dir() or path.is_symlink():
            continue
        try:
            os.kill(int(pid_text), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
        except OSError:
            pass  # alive (owned by someone else): leave it
    return removed


def remove_private_upload_dir() -> None:
    """Remove the private upload folder and everything in it (at shutdown)."""
    global _private_dir
    folder, _private_dir = _private_dir, None
    if folder is not None:
        shutil.rmtree(folder, ignore_errors=True)
        if os.environ.get("GRADIO_TEMP_DIR") == str(folder):
            del os.environ["GRADIO_TEMP_DIR"]


def folder_bytes(folder: Path) -> int:
    """Bytes of the regular files under ``folder`` (0 when it does not exist)."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):  # removed meanwhile
                total += os.lstat(os.path.join(root, name)).st_size
    return total


def upload_folder() -> Path:
    """The folder Gradio saves uploads in, resolved (Gradio's rule: ``GRADIO_TEMP_DIR``, else ``<tmp>/gradio``).

    :func:`private_upload_dir` sets ``GRADIO_TEMP_DIR`` before the app is built, so for the
    review UI this is its private folder.
    """
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio").resolve()


def received_upload(path: str | os.PathLike[str]) -> Path | None:
    """The file at ``path``, resolved, when it is one Gradio received as an upload; None otherwise.

    An upload is a regular file inside :func:`upload_folder` once symlinks and ``..`` are
    resolved, and not in one of the app's download folders (:data:`DOWNLOAD_DIR_PREFIX`).  A
    client names its upload by path (``{"path": ...}`` in an API call), and Gradio lets any path
    of the served static folders through, so a stored frame or any other file must be refused
    here before it is opened or removed.
    """
    try:
        root = upload_folder()
        file = Path(path).resolve()  # symlinks and ".." as the system follows them
    except (OSError, ValueError, RuntimeError):  # unreadable, NUL byte, symlink loop
        return None
    if root not in file.parents or not file.is_file():
        return None
    if any(folder.name.startswith(DOWNLOAD_DIR_PREFIX) for folder in file.relative_to(root).parents):
        return None
    return file


def discard_upload(path: str | os.PathLike[str]) -> None:
    """Delete a processed upload and its now-empty per-upload folder.

    Only what :func:`received_upload` accepts is removed: any other path is left alone (logged).
    """
    file = received_upload(path)
    if file is None:
        log.warning("not removed (not an upload of this app): %s", shorten(path))
        return
    try:
        file.unlink(missing_ok=True)
    except OSError:
        log.warning("could not remove the uploaded original %s", shorten(file.name))
        return
    parent = file.parent
    if parent != upload_folder():
        with contextlib.suppress(OSError):  # not empty: another upload of the same content is there
            parent.rmdir()


__all__ = [
    "API_BODY_LIMIT_BYTES",
    "DOWNLOAD_DIR_PREFIX",
    "LOGIN_FAILURES_ALLOWED",
    "LOGIN_FAILURE_WINDOW_S",
    "LOOPBACK_NAMES",
    "UPLOAD_FOLDER_QUOTA_BYTES",
    "UPLOAD_FRAMING_BYTES",
    "RequestGuard",
    "allowed_hosts",
    "authority_of_host_header",
    "discard_upload",
    "folder_bytes",
    "harden_launch_options",
    "host_of_host_header",
    "host_of_origin",
    "origin_allowed",
    "origin_of",
    "private_upload_dir",
    "received_upload",
    "refusal",
    "shorten",
    "size_in_bytes",
    "trusted_origins",
    "upload_folder",
]
