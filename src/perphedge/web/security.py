"""The server's locks: the Host check, the token (Bearer header or login session cookie), CSRF, response headers.

* Without a token the server answers only requests whose ``Host`` is this machine (127.0.0.1, localhost, ::1):
  a web page elsewhere cannot reach it by rebinding a DNS name to 127.0.0.1.
* With a token every request but the login page and the static files needs ``Authorization: Bearer <token>`` or
  the session cookie the login page sets (HttpOnly, SameSite=Strict).
* Every state-changing request from a page (a POST other than the pure computations ``/api/plan`` and
  ``/api/calc``) needs the CSRF token of the page (``X-CSRF-Token``); a Bearer request is exempt (a browser never
  adds that header by itself).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import threading
import time
from dataclasses import dataclass, field

from perphedge.web.settings import is_loopback

__all__ = ["COOKIE", "CSRF_HEADER", "Guard", "security_headers"]

COOKIE = "perphedge_session"
CSRF_HEADER = "x-csrf-token"
#: A login lasts this long.
SESSION_SECONDS = 12 * 3600
#: POSTs that change nothing (pure computations), open without a CSRF token.
PURE_POSTS = frozenset({"/api/plan", "/api/calc"})
#: Paths open without the token.
OPEN_PATHS = frozenset({"/login", "/favicon.ico"})

_CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "connect-src 'self'; frame-src 'self'; frame-ancestors 'none'; form-action 'self'; base-uri 'none'; "
    "object-src 'none'"
)
#: A backtest's report.html is a self-contained plotly page (inline scripts): shown in a frame of ours only.
_REPORT_CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'unsafe-eval'; style-src 'unsafe-inline'; img-src data:; "
    "font-src data:; frame-ancestors 'self'; form-action 'none'; base-uri 'none'"
)


def security_headers(path: str) -> dict[str, str]:
    """Headers on every response."""
    report = path.endswith("/report.html")
    return {
        "Content-Security-Policy": _REPORT_CSP if report else _CSP,
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "SAMEORIGIN" if report else "DENY",
        "Referrer-Policy": "no-referrer",
        "Cache-Control": "no-store",
    }


_HOST_RE = re.compile(r"(?:\[(?P<v6>[0-9A-Fa-f:.]+)\]|(?P<name>[A-Za-z0-9._-]+))(?::[0-9]{1,5})?")


def _host_name(host_header: str) -> str:
    """``127.0.0.1:8765`` → ``127.0.0.1``; ``[::1]:8765`` → ``::1``.

    A header that is not exactly ``name[:port]`` / ``[v6][:port]`` (``localhost:1@evil``, ``127.0.0.1:80, evil``,
    a non-numeric port) gives ``""``, which no check accepts."""
    h = host_header.strip()
    m = _HOST_RE.fullmatch(h)
    if m is None:
        return ""
    return m.group("v6") if m.group("v6") is not None else (m.group("name") or "")


@dataclass
class Guard:
    """Token, sessions and CSRF tokens of one server run."""

    token: str | None
    _secret: bytes = field(default_factory=lambda: secrets.token_bytes(32))
    _sessions: dict[str, float] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # ---------------------------------------------------------------------------------------------- host

    def host_allowed(self, host_header: str | None) -> bool:
        """With a token any Host; without one only this machine's names."""
        if self.token:
            return True
        return bool(host_header) and is_loopback(_host_name(host_header or ""))

    # ---------------------------------------------------------------------------------------------- token

    def bearer_ok(self, authorization: str | None) -> bool:
        if not self.token or not authorization:
            return False
        scheme, _, value = authorization.partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(value.strip().encode(), self.token.encode())

    def token_ok(self, given: str) -> bool:
        return bool(self.token) and hmac.compare_digest(given.encode(), (self.token or "").encode())

    def new_session(self) -> str:
        sid = secrets.token_urlsafe(32)
        with self._lock:
            now = time.time()
            self._sessions = {k: v for k, v in self._sessions.items() if v > now}
            self._sessions[sid] = now + SESSION_SECONDS
        return sid

    def session_ok(self, sid: str | None) -> bool:
        if not sid:
            return False
        with self._lock:
            until = self._sessions.get(sid)
        return until is not None and until > time.time()

    def end_session(self, sid: str | None) -> None:
        with self._lock:
            self._sessions.pop(sid or "", None)

    def authenticated(self, authorization: str | None, sid: str | None) -> bool:
        """No token set: everyone (on this machine); else the Bearer header or a live session."""
        if not self.token:
            return True
        return self.bearer_ok(authorization) or self.session_ok(sid)

    # ---------------------------------------------------------------------------------------------- CSRF

    def csrf_token(self, sid: str | None) -> str:
        """The CSRF token of a session (or of the anonymous page when no token is set)."""
        key = f"session:{sid}" if sid else "anonymous"
        return hmac.new(self._secret, key.encode(), hashlib.sha256).hexdigest()

    def csrf_ok(self, sid: str | None, given: str | None) -> bool:
        return bool(given) and hmac.compare_digest((given or "").encode(), self.csrf_token(sid).encode())

    @staticmethod
    def needs_csrf(method: str, path: str) -> bool:
        return method.upper() in ("POST", "PUT", "PATCH", "DELETE") and path not in PURE_POSTS
