"""``perphedge web``: a local dashboard and JSON API over the same use cases as the CLI (no logic of its own)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from perphedge.web.settings import Folders, WebConfig

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["Folders", "WebConfig", "create_app"]


def create_app(cfg: WebConfig) -> FastAPI:
    """The FastAPI application for ``cfg`` (fastapi is imported only here)."""
    from perphedge.web.app import create_app as _create

    return _create(cfg)


def __getattr__(name: str) -> Any:  # pragma: no cover - nothing else is exported
    raise AttributeError(name)
