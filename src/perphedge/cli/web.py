"""``perphedge web``: serve the dashboard and the JSON API on this machine (uvicorn)."""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Annotated

import typer

from perphedge.errors import ConfigError


def web_cmd(
    host: Annotated[
        str, typer.Option(help="Address to listen on; anything but 127.0.0.1/localhost/::1 needs --token.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port).")] = 8765,
    book: Annotated[list[str] | None, typer.Option("--book", help="Book file to show (repeatable).")] = None,
    store: Annotated[str | None, typer.Option("--store", help="Market store file (default: PERPHEDGE_HOME's).")] = None,
    runs: Annotated[
        list[str] | None,
        typer.Option("--runs", help="Folder of portfolio and run files the pages may read (repeatable)."),
    ] = None,
    out: Annotated[str, typer.Option("--out", help="Folder of backtest results (written and listed).")] = (
        "backtest-results"
    ),
    token: Annotated[
        str | None,
        typer.Option("--token", help="Require this token (Bearer header or login page); also PERPHEDGE_WEB_TOKEN."),
    ] = None,
    allow_trading: Annotated[
        bool,
        typer.Option(
            "--allow-trading", help="Offer trading actions (rebalance --execute, halt, resume) on book pages."
        ),
    ] = False,
) -> None:
    import uvicorn

    from perphedge.web import Folders, WebConfig, create_app

    token = token if token is not None else (os.environ.get("PERPHEDGE_WEB_TOKEN") or None)
    for flag, values in (("--book", book or ()), ("--runs", runs or ()), ("--out", (out,))):
        for v in values:
            if not str(v).strip():  # Path('') is '.', which would silently serve the current directory
                raise ConfigError(f"invalid `{flag}`: must be a path, was ''")
    books = tuple(Path(b) for b in book or ())
    for b in books:
        if not b.is_file():
            raise ConfigError(f"invalid `--book`: {b} is not a file")
    if store is not None and not store.strip():
        raise ConfigError("invalid `--store`: must be a market store (DuckDB) file path, was ''")
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"invalid `--out`: {out_dir} is a file, not a directory")
    cfg = WebConfig(
        host=host,
        port=port,
        books=books,
        store=store,
        runs=Folders.of(tuple(runs or ()), "--runs"),
        out=out_dir,
        token=token,
        allow_trading=allow_trading,
    )
    from perphedge.usecases.book import load_book

    for b in books:  # a broken book is refused now, not on its page
        load_book(b)
    app = create_app(cfg)
    sock = _listen(host, port)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    shown = f"[{host}]" if ":" in host else host
    typer.echo(
        f"perphedge web: serving http://{shown}:{port}/ "
        f"({'token required' if token else 'this machine only'}; trading {'ON' if allow_trading else 'off'}); "
        "Ctrl-C stops"
    )
    try:
        server.run(sockets=[sock])
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled (shut down already): a normal stop
        pass
    finally:
        sock.close()
        typer.echo("perphedge web: stopped")


def _listen(host: str, port: int) -> socket.socket:
    """The listening socket (so ``--port 0`` can print the port it got, and a busy port is one line)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise ConfigError(f"invalid `--host`: {host!r} cannot be resolved ({exc.strerror})") from None
    family, kind, proto, _, addr = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(addr)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"invalid `--port`: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.set_inheritable(True)
    return sock
