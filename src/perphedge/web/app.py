"""The FastAPI application: the JSON API (``/api/...``), the pages, the static files and the locks around them.

Nothing here computes a number: every document comes from :mod:`perphedge.web.api`, which calls the use cases the
CLI calls. A user's mistake is answered with the CLI's one line (``{"error": ..., "field": ...}``; 422 for a
:class:`~perphedge.errors.ConfigError`, 400 for other refusals), never with a traceback.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from perphedge import __version__
from perphedge.errors import ConfigError, PerphedgeError
from perphedge.web import api
from perphedge.web.security import COOKIE, CSRF_HEADER, OPEN_PATHS, Guard, security_headers
from perphedge.web.settings import WebConfig

__all__ = ["create_app", "error_field", "one_line"]

HERE = Path(__file__).resolve().parent
PAGES = ("book", "plan", "calc", "backtests", "stress", "data")
#: Largest request body (a portfolio file): the CLI's largest file.
MAX_BODY = 1024 * 1024


def one_line(text: str) -> str:
    """A message on one line (as ``perphedge: error:`` prints it), scrubbed of registered secrets."""
    from perphedge.exchange.credentials import redact

    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return redact("; ".join(lines) or "(no message)")


_FIELD_PATTERNS = (
    re.compile(r"invalid value for --([a-z0-9-]+)"),
    re.compile(r"invalid `--([a-z0-9-]+)`"),
    re.compile(r"missing --([a-z0-9-]+)"),
    re.compile(r"needs the option --([a-z0-9-]+)"),
    re.compile(r"field `([^`]+)`"),
    re.compile(r"invalid `([a-z0-9_.]+)`"),
)


def error_field(message: str) -> str | None:
    """The form field a message is about: ``--funding-rate-8h`` → ``funding_rate_8h``; a file's field
    ``hedge.leverage`` stays dotted (shown beside the YAML editor)."""
    for pat in _FIELD_PATTERNS:
        m = pat.search(message)
        if m:
            return m.group(1).replace("-", "_") if pat.pattern.count("--") else m.group(1)
    return None


def _error(status: int, message: str) -> JSONResponse:
    line = one_line(message)
    return JSONResponse({"error": line, "field": error_field(line)}, status_code=status)


def _json_text(text: str, status: int = 200) -> Response:
    from perphedge.exchange.credentials import redact

    return Response(redact(text), status_code=status, media_type="application/json")


def _doc(doc: Any) -> Response:
    """A document as the CLI prints it with ``--format json`` (non-finite numbers → null where the CLI does)."""
    from perphedge.jsonsafe import json_safe

    return _json_text(json.dumps(json_safe(doc), indent=2, allow_nan=False, default=str) + "\n")


def _query(request: Request) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in request.query_params.multi_items():
        if k in out:
            prev = out[k]
            out[k] = [*prev, v] if isinstance(prev, list) else [prev, v]
        else:
            out[k] = v
    return out


def create_app(cfg: WebConfig) -> FastAPI:
    """The application for ``cfg`` (routes that trade exist only with ``cfg.allow_trading``)."""
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    guard = Guard(cfg.token)
    env = Environment(
        loader=FileSystemLoader(str(HERE / "templates")), autoescape=select_autoescape(["html"]), auto_reload=False
    )
    app = FastAPI(
        title="perphedge web",
        version=__version__,
        description="The perphedge JSON API: the same documents as the CLI's `--format json`.",
        docs_url=None,
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.cfg = cfg
    app.state.guard = guard

    # ------------------------------------------------------------------------------------------ locks

    @app.middleware("http")
    async def locks(request: Request, call_next: Any) -> Response:
        path = request.url.path
        if "\x00" in path or "%00" in str(request.url.raw_path if hasattr(request.url, "raw_path") else ""):
            resp: Response = _error(400, "invalid path: contains a NUL byte")
        elif not guard.host_allowed(request.headers.get("host")):
            resp = _error(
                421,
                f"refused: Host {request.headers.get('host')!r} is not this machine; open http://127.0.0.1:{cfg.port}/",
            )
        else:
            sid = request.cookies.get(COOKIE)
            authorization = request.headers.get("authorization")
            public = path in OPEN_PATHS or path.startswith("/static/")
            if not public and not guard.authenticated(authorization, sid):
                if path.startswith("/api/") or path in ("/docs", "/openapi.json"):
                    resp = _error(401, "unauthorized: send `Authorization: Bearer <token>` or log in at /login")
                else:
                    resp = RedirectResponse("/login?next=" + urllib.parse.quote(path, safe="/"), status_code=303)
            elif (
                guard.needs_csrf(request.method, path)
                and path != "/login"
                and not guard.bearer_ok(authorization)
                and not guard.csrf_ok(sid, request.headers.get(CSRF_HEADER))
            ):
                resp = _error(403, "refused: missing or wrong CSRF token (reload the page)")
            else:
                length = request.headers.get("content-length")
                if length is not None and not (length.isascii() and length.isdigit()):
                    resp = _error(400, f"invalid Content-Length {length[:40]!r}")
                elif length is not None and int(length) > MAX_BODY:
                    resp = _error(413, f"refused: the request body is larger than {MAX_BODY:,} bytes")
                else:
                    resp = await call_next(request)
        for k, v in security_headers(path).items():
            resp.headers.setdefault(k, v)
        return resp

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        what = {404: "not found", 405: "method not allowed"}.get(exc.status_code, str(exc.detail).lower())
        return _error(exc.status_code, f"{what}: {request.method} {request.url.path}")

    @app.exception_handler(ConfigError)
    async def _config_error(request: Request, exc: ConfigError) -> JSONResponse:
        return _error(422, str(exc))

    @app.exception_handler(PerphedgeError)
    async def _perphedge_error(request: Request, exc: PerphedgeError) -> JSONResponse:
        return _error(400, str(exc))

    @app.exception_handler(LookupError)
    async def _not_found(request: Request, exc: LookupError) -> JSONResponse:
        return _error(404, f"not found: {exc.args[0] if exc.args else request.url.path}")

    @app.exception_handler(OSError)
    async def _os_error(request: Request, exc: OSError) -> JSONResponse:
        reason = exc.strerror or type(exc).__name__
        where = f"{exc.filename}: " if exc.filename else ""
        return _error(400, f"{where}{reason}")

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> JSONResponse:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")

    # ------------------------------------------------------------------------------------------ pages

    def page(request: Request, name: str, **ctx: Any) -> HTMLResponse:
        sid = request.cookies.get(COOKIE)
        html = env.get_template(f"{name}.html").render(
            page=name,
            pages=PAGES,
            csrf=guard.csrf_token(sid),
            version=__version__,
            trading=cfg.allow_trading,
            token_set=bool(cfg.token),
            **ctx,
        )
        return HTMLResponse(html)

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request) -> Response:
        """The OpenAPI description as a page (Swagger UI would load its code from the internet)."""
        schema = app.openapi()
        ops = []
        for path, item in sorted(schema.get("paths", {}).items()):
            for method, op in item.items():
                ops.append(
                    {
                        "method": method.upper(),
                        "path": path,
                        "summary": op.get("summary", ""),
                        "tag": (op.get("tags") or [""])[0],
                    }
                )
        return page(
            request, "docs", ops=ops, title=schema["info"]["title"], description=schema["info"].get("description", "")
        )

    @app.get("/", include_in_schema=False)
    def index() -> RedirectResponse:
        return RedirectResponse("/book" if cfg.books else "/plan", status_code=303)

    @app.get("/login", include_in_schema=False)
    def login_page(request: Request, next: str = "/") -> Response:
        if not cfg.token:
            return RedirectResponse("/", status_code=303)
        return page(request, "login", next=_local_next(next), failed=False)

    @app.post("/login", include_in_schema=False)
    async def login(request: Request) -> Response:
        if not cfg.token:
            return RedirectResponse("/", status_code=303)
        raw = await request.body()
        try:
            form = urllib.parse.parse_qs(raw.decode("utf-8", errors="replace"), max_num_fields=5)
        except ValueError:
            return _error(422, "invalid login form: too many fields")
        nxt = _local_next((form.get("next") or ["/"])[0])
        if not guard.csrf_ok(request.cookies.get(COOKIE), (form.get("csrf_token") or [""])[0]):
            return _error(403, "refused: missing or wrong CSRF token (reload the page)")
        if not guard.token_ok((form.get("token") or [""])[0]):
            import asyncio

            await asyncio.sleep(0.5)  # a guesser gets two tries a second per connection
            failed = page(request, "login", next=nxt, failed=True)
            failed.status_code = 401
            return failed
        resp = RedirectResponse(nxt, status_code=303)
        resp.set_cookie(COOKIE, guard.new_session(), httponly=True, samesite="strict", path="/")
        return resp

    @app.post("/logout", include_in_schema=False)
    def logout(request: Request) -> Response:
        guard.end_session(request.cookies.get(COOKIE))
        resp = RedirectResponse("/login" if cfg.token else "/", status_code=303)
        resp.delete_cookie(COOKIE, path="/")
        return resp

    @app.get("/book", include_in_schema=False)
    def book_index(request: Request) -> Response:
        names = sorted(cfg.book_paths())
        if len(names) == 1:
            return RedirectResponse(f"/book/{urllib.parse.quote(names[0])}", status_code=303)
        return page(request, "book_list", books=names)

    @app.get("/book/{name}", include_in_schema=False)
    def book_page(request: Request, name: str) -> Response:
        if name not in cfg.book_paths():
            return _error(404, f"not found: no book {name!r} is served (start with --book FILE)")
        from perphedge.usecases.book import load_book

        b = load_book(cfg.book_paths()[name]).book
        amber = b.alerts.liquidation_distance_below
        red = b.limits.min_liquidation_distance
        return page(
            request,
            "book",
            book=name,
            books=sorted(cfg.book_paths()),
            amber=0.0 if amber is None else float(amber),
            red=0.0 if red is None else float(red),
        )

    @app.get("/plan", include_in_schema=False)
    def plan_page(request: Request, file: str | None = None) -> Response:
        files = cfg.runs.listing()
        chosen = file if file in files else next((f for f in files if "altcoins" in f), files[0] if files else None)
        text = ""
        if chosen is not None:
            try:
                text = cfg.runs.resolve(chosen, "file").read_text(encoding="utf-8")
            except (ConfigError, OSError, UnicodeDecodeError):
                text = ""
        return page(request, "plan", files=files, chosen=chosen, yaml_text=text)

    @app.get("/calc", include_in_schema=False)
    def calc_page(request: Request) -> Response:
        from perphedge.specs import default_registry

        ids = sorted(i.id for i in default_registry(None).instruments)
        return page(request, "calc", instruments=ids)

    @app.get("/backtests", include_in_schema=False)
    def backtests_page(request: Request) -> Response:
        runs = [f for f in cfg.runs.listing() if _looks_like_run(cfg, f)]
        return page(request, "backtests", runs=runs, out=str(cfg.out))

    @app.get("/stress", include_in_schema=False)
    def stress_page(request: Request) -> Response:
        return page(request, "stress", files=[f for f in cfg.runs.listing() if not _looks_like_run(cfg, f)])

    @app.get("/data", include_in_schema=False)
    def data_page(request: Request) -> Response:
        return page(request, "data", store=cfg.store or "(the default store under PERPHEDGE_HOME)")

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name == "plotly.min.js":
            import plotly

            path = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
        elif name in ("app.js", "app.css"):
            path = HERE / "static" / name
        else:
            return _error(404, f"not found: /static/{name}")
        media = "text/javascript" if name.endswith(".js") else "text/css"
        resp = FileResponse(path, media_type=media)
        resp.headers["Cache-Control"] = "max-age=3600"
        return resp

    # ------------------------------------------------------------------------------------------ API

    @app.get("/api/plan", tags=["plan"], summary="perphedge plan FILE --format json (FILE in a served folder)")
    async def plan_get(request: Request) -> Response:
        q = _query(request)
        return _json_text(api.dumps(await run_in_threadpool(api.plan_doc, cfg, q)))

    @app.post(
        "/api/plan",
        tags=["plan"],
        summary="perphedge plan --format json of the portfolio file in the body (Content-Type: application/yaml)",
    )
    async def plan_post(request: Request) -> Response:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype not in ("application/yaml", "application/x-yaml", "text/yaml", "text/plain"):
            raise ConfigError(
                f"invalid Content-Type {ctype or '(none)'!r}: send the portfolio file as application/yaml"
            )
        body = await request.body()
        if len(body) > MAX_BODY:
            raise ConfigError(f"refused: the request body is larger than {MAX_BODY:,} bytes")
        q = _query(request)
        return _json_text(api.dumps(await run_in_threadpool(api.plan_doc, cfg, q, body=body)))

    @app.get("/api/calc", tags=["calc"], summary="perphedge calc --format json (query parameters = the flags)")
    def calc_get(request: Request) -> Response:
        return _json_text(api.dumps(api.calc_doc(_query(request))))

    @app.post("/api/calc", tags=["calc"], summary="as GET, the flags as a JSON object")
    async def calc_post(request: Request) -> Response:
        raw = await request.body()
        try:
            body = json.loads(raw) if raw.strip() else {}
        except ValueError:
            raise ConfigError("invalid body: send a JSON object of the calc flags") from None
        if not isinstance(body, dict):
            raise ConfigError("invalid body: send a JSON object of the calc flags")
        q = {str(k): ("" if v is None else str(v)) for k, v in body.items()}
        return _json_text(api.dumps(api.calc_doc(q)))

    @app.get("/api/files", tags=["files"], summary="The YAML files of the served folders (--runs)")
    def files() -> Response:
        return _doc({"files": cfg.runs.listing(), "runs": [f for f in cfg.runs.listing() if _looks_like_run(cfg, f)]})

    @app.get("/api/book", tags=["book"], summary="The served books")
    def books() -> Response:
        return _doc({"books": sorted(cfg.book_paths()), "trading": cfg.allow_trading})

    @app.get("/api/book/{name}", tags=["book"], summary="perphedge book status BOOK --format json")
    async def book_get(name: str) -> Response:
        return _doc(await run_in_threadpool(api.book_status, cfg, name))

    @app.get("/api/book/{name}/journal", tags=["book"], summary="perphedge book journal BOOK --limit N --format json")
    async def book_journal(name: str, limit: str = "100") -> Response:
        if not (limit.isascii() and limit.isdigit()):  # '²'.isdigit() is True, int('²') fails
            raise ConfigError(f"invalid value for --limit: {limit!r} is not a valid integer")
        return _doc(await run_in_threadpool(api.book_journal, cfg, name, int(limit)))

    @app.get("/api/book/{name}/version", tags=["book"], summary="Changes whenever the book's state changes")
    def book_version(name: str) -> Response:
        return _doc({"version": api.book_version(cfg, name)})

    if cfg.allow_trading:

        @app.post("/api/book/{name}/rebalance", tags=["trading"], summary="book rebalance BOOK --execute --yes")
        async def book_rebalance(name: str) -> Response:
            return _doc(await run_in_threadpool(api.book_rebalance, cfg, name))

        @app.post("/api/book/{name}/halt", tags=["trading"], summary="book halt BOOK [--reason R]")
        async def book_halt(name: str, reason: str = "") -> Response:
            return _doc(await run_in_threadpool(api.book_halt, cfg, name, reason))

        @app.post("/api/book/{name}/resume", tags=["trading"], summary="book resume BOOK")
        async def book_resume(name: str) -> Response:
            return _doc(await run_in_threadpool(api.book_resume, cfg, name))

    @app.post("/api/backtest", tags=["backtest"], summary="perphedge backtest RUN --format json (RUN in --runs)")
    async def backtest_post(request: Request) -> Response:
        q = _query(request)
        if not q.get("run"):
            raw = await request.body()
            if raw:
                try:
                    body = json.loads(raw)
                except ValueError:
                    raise ConfigError('invalid body: send {"run": "<run file>"} as JSON') from None
                if isinstance(body, dict):
                    q = {str(k): str(v) for k, v in body.items() if v is not None}
        from perphedge.web import params as P

        run = P.text(q, "run", required=True) or ""
        report = not P.switch(q, "no_report")
        return _doc(await run_in_threadpool(lambda: api.backtest_document(cfg, run, report=report)))

    @app.get("/api/backtest/results", tags=["backtest"], summary="Past results in the output folder")
    def backtest_results() -> Response:
        return _doc({"out": str(cfg.out), "results": api.backtest_results(cfg), "sweeps": api.sweep_results(cfg)})

    @app.get("/api/backtest/results/{name}", tags=["backtest"], summary="One run folder's result.json")
    def backtest_result(name: str) -> Response:
        return _doc(api.backtest_result(cfg, name))

    @app.get("/api/backtest/results/{name}/report.html", tags=["backtest"], summary="One run's report.html")
    def backtest_report(name: str) -> Response:
        return FileResponse(api.backtest_report(cfg, name), media_type="text/html")

    @app.get("/api/stress", tags=["stress"], summary="perphedge stress FILE --format json (FILE in --runs)")
    async def stress_get(request: Request) -> Response:
        q = _query(request)
        doc = await run_in_threadpool(api.stress_doc, cfg, q)
        hist = _histograms(doc) if q.get("histogram") in ("1", "true") else None
        out = dict(doc)
        if hist is not None:
            out["histogram"] = hist  # for the page's chart; absent from the CLI's document unless asked
        return _doc(out)

    @app.get("/api/data/status", tags=["data"], summary="perphedge data status --format json")
    async def data_status() -> Response:
        return _doc(await run_in_threadpool(api.data_status, cfg))

    @app.get("/api/data/check", tags=["data"], summary="perphedge data check --format json")
    async def data_check() -> Response:
        return _doc(await run_in_threadpool(api.data_check, cfg))

    @app.post("/api/data/import-sample", tags=["data"], summary="perphedge data import --sample --format json")
    async def data_import() -> Response:
        return _doc(await run_in_threadpool(api.data_import_sample, cfg))

    return app


def _local_next(nxt: str) -> str:
    """Only a path of this server (no scheme, host or ``//``): an open redirect is refused."""
    if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt or any(ord(c) < 32 for c in nxt):
        return "/"
    return nxt


def _looks_like_run(cfg: WebConfig, name: str) -> bool:
    """A run file names a `portfolio:`; a portfolio file has `holdings:` (read cheaply, top-level keys only)."""
    try:
        head = cfg.runs.resolve(name, "file").read_text(encoding="utf-8")[:20000]
    except (ConfigError, OSError, UnicodeDecodeError):
        return False
    return bool(re.search(r"(?m)^portfolio\s*:", head)) and not re.search(r"(?m)^base\s*:", head)


def _histograms(doc: dict[str, Any], bins: int = 60) -> dict[str, Any] | None:
    """Counts of the Monte Carlo PnL samples (hedged, unhedged) on shared bins, for the page's chart."""
    import numpy as np

    # the Monte Carlo keeps (bin values, path counts) of its fixed bins, not the samples (issue 15's engine)
    hists = (doc.get("monte_carlo") or {}).get("_histograms") or {}
    pairs = {k: v for k, v in hists.items() if v is not None and k in ("hedged", "unhedged")}
    arrays = {k: np.asarray(v[0], dtype=float) for k, v in pairs.items()}
    weights = {k: np.asarray(v[1], dtype=float) for k, v in pairs.items()}
    if not arrays:
        return None
    both = np.concatenate(list(arrays.values()))
    both = both[np.isfinite(both)]
    if both.size == 0:
        return None
    lo, hi = float(both.min()), float(both.max())
    if hi <= lo:
        hi = lo + 1.0
    edges = np.linspace(lo, hi, bins + 1)
    return {
        "edges_usd": [float(x) for x in edges],
        **{
            k: [int(c) for c in np.histogram(np.clip(v, lo, hi), bins=edges, weights=weights[k])[0]]
            for k, v in arrays.items()
        },
    }
