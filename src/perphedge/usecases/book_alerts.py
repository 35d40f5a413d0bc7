"""Alert webhooks: one plain JSON POST per alert event (design ``docs/design/book.md`` §5.4).

:func:`post_alert` sends ``{"schema": "perphedge.alert/1", ...payload}`` with the standard library only
(``urllib``) and never raises for network trouble: it returns None when the receiver answered 2xx, else one
line saying what went wrong, which the caller journals as ``error`` (and retries on the next tick; a failed
POST is never a reason to open the episode again). :func:`alert_payload` builds the documented payload from
a :class:`~perphedge.core.alerts.AlertEvent`.

Rules:

* ``http://`` and ``https://`` URLs only, with a host; anything else is refused without a request.
* Redirects are not followed automatically (urllib would turn a redirected POST into a GET without the
  body). A ``307``/``308`` to a URL of the **same scheme** is re-POSTed (at most 3 hops); any other redirect,
  or one to another scheme (``https`` → ``http`` would send the alert in clear), is reported and not followed.
* Up to ``tries`` attempts for network errors, timeouts, ``408``, ``429`` and ``5xx``, waiting ``backoff_s · 2^n``
  (or the receiver's ``Retry-After`` when longer, capped at 30 s) in between. Any other non-2xx answer is
  final at once (the receiver refused the request; sending it again will not change that).
* ``timeout_s`` bounds the connection and every wait for the answer. A 2xx answer's body is not read, so a
  huge or slow body costs nothing; for an error at most 512 bytes of it are read for the message.
* Messages name the receiver as ``scheme://host:port`` only: a webhook's path or query often holds its token.
"""

from __future__ import annotations

import json
import math
import socket
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from http.client import HTTPException
from typing import Any
from urllib.parse import urljoin, urlsplit

from perphedge.core.alerts import AlertEvent
from perphedge.jsonsafe import json_safe

__all__ = ["ALERT_SCHEMA", "alert_payload", "post_alert"]

ALERT_SCHEMA = "perphedge.alert/1"
_MAX_HOPS = 3
_MAX_WAIT_S = 30.0
_RETRY_STATUS = frozenset({408, 429})


def alert_payload(book_id: str, event: AlertEvent) -> dict[str, Any]:
    """The webhook body of ``event`` (without ``schema``, which :func:`post_alert` adds):
    ``{book_id, event: open|close, alert, subject, value, threshold, ts_ms, message}``."""
    return {
        "book_id": book_id,
        "event": event.kind,
        "alert": event.alert,
        "subject": event.subject,
        "value": event.value,
        "threshold": event.threshold,
        "ts_ms": event.ts_ms,
        "message": event.message,
    }


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None  # the 3xx comes back as an HTTPError, handled below


def _origin(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or "?"
    if ":" in host:
        host = f"[{host}]"
    return f"{parts.scheme}://{host}" + (f":{parts.port}" if parts.port else "")


def _check_url(url: Any) -> str | None:
    if not isinstance(url, str):
        return f"webhook URL must be text, was {type(url).__name__}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return "webhook URL is malformed"
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        return f"webhook URL must be http(s)://host/..., was a {parts.scheme or 'schemeless'} URL"
    return None


def _one_line(text: str, n: int = 160) -> str:
    return " ".join(text.split())[:n]


def _retry_after(headers: Any) -> float | None:
    try:
        value = float(headers.get("Retry-After", ""))
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) and value >= 0 else None


def post_alert(
    url: str,
    payload: Mapping[str, Any],
    *,
    timeout_s: float = 5.0,
    tries: int = 3,
    backoff_s: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> str | None:
    """POST ``{"schema": "perphedge.alert/1", **payload}`` as JSON to ``url``; None on 2xx, else one line why.

    NaN and infinities in ``payload`` are sent as ``null`` (and keys starting with ``_`` are dropped, as in
    every perphedge JSON document). ValueError only for invalid arguments of the
    call itself (``tries`` < 1, a non-positive timeout, a payload that is not JSON data).
    """
    if isinstance(tries, bool) or not isinstance(tries, int) or tries < 1:
        raise ValueError(f"`tries` must be a whole number >= 1, was {tries!r}")
    for name, value in (("timeout_s", timeout_s), ("backoff_s", backoff_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
            raise ValueError(f"`{name}` must be a finite number >= 0, was {value!r}")
    if timeout_s <= 0:
        raise ValueError(f"`timeout_s` must be > 0, was {timeout_s!r}")
    bad = _check_url(url)
    if bad is not None:
        return bad
    body_doc = {"schema": ALERT_SCHEMA, **{k: v for k, v in dict(payload).items() if k != "schema"}}
    try:
        body = json.dumps(json_safe(body_doc), allow_nan=False, ensure_ascii=False).encode("utf-8")
    except (TypeError, ValueError) as exc:
        raise ValueError(f"alert payload is not JSON data: {exc}") from None
    opener = urllib.request.build_opener(_NoRedirect)
    where = _origin(url)
    last = ""
    for attempt in range(tries):
        wait = min(_MAX_WAIT_S, backoff_s * 2**attempt)
        retry, last, hint = _attempt(opener, url, body, timeout_s)
        if last == "":
            return None
        if not retry:
            return f"webhook {where}: {last}"
        if attempt + 1 < tries:
            sleep(min(_MAX_WAIT_S, max(wait, hint or 0.0)))
    return f"webhook {where}: {last} ({tries} {'try' if tries == 1 else 'tries'})"


def _attempt(
    opener: urllib.request.OpenerDirector, url: str, body: bytes, timeout_s: float
) -> tuple[bool, str, float | None]:
    """One POST, following same-scheme 307/308: ``(retry?, error text or "" on success, Retry-After)``."""
    target = url
    for _ in range(_MAX_HOPS + 1):
        req = urllib.request.Request(
            target,
            data=body,
            method="POST",
            headers={"Content-Type": "application/json", "User-Agent": "perphedge-alert/1"},
        )
        try:
            with opener.open(req, timeout=timeout_s) as resp:
                status = resp.status
            if 200 <= status < 300:
                return False, "", None
            return False, f"HTTP {status}", None  # 1xx or other oddities that urllib did not raise for
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                snippet = _one_line(exc.read(512).decode("utf-8", "replace"), 120) if exc.fp else ""
            except (OSError, HTTPException):
                snippet = ""
            finally:
                exc.close()
            if status in (307, 308):
                location = exc.headers.get("Location", "")
                nxt = urljoin(target, location) if location else ""
                if not nxt or _check_url(nxt) is not None or urlsplit(nxt).scheme != urlsplit(target).scheme:
                    scheme = urlsplit(nxt).scheme or "an invalid URL"
                    return False, f"HTTP {status} redirect to {scheme} refused (same scheme only)", None
                target = nxt
                continue
            if 300 <= status < 400:
                return False, f"HTTP {status} redirect not followed (the webhook must accept the POST at its URL)", None
            text = f"HTTP {status} {_one_line(str(exc.reason), 60)}".rstrip() + (f": {snippet}" if snippet else "")
            return status in _RETRY_STATUS or status >= 500, text, _retry_after(exc.headers)
        except TimeoutError:
            return True, f"no answer within {timeout_s:g} s", None
        except urllib.error.URLError as exc:
            reason = exc.reason
            if isinstance(reason, TimeoutError):
                return True, f"no answer within {timeout_s:g} s", None
            if isinstance(reason, ConnectionRefusedError):
                return True, "connection refused", None
            if isinstance(reason, socket.gaierror):
                return True, "the host name does not resolve", None
            return True, _one_line(f"{type(reason).__name__}: {reason}", 160), None
        except (OSError, HTTPException) as exc:
            return True, _one_line(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, 160), None
    return False, f"more than {_MAX_HOPS} redirects", None
