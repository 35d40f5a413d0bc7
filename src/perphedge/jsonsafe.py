"""Turn result documents into JSON-safe data: private keys (``_…``) dropped, NaN/inf → null, numpy scalars → Python."""

from __future__ import annotations

import math
from typing import Any

__all__ = ["json_safe"]


def json_safe(obj: Any, ndigits: int | None = None) -> Any:
    """A copy of ``obj`` that ``json.dumps(..., allow_nan=False)`` accepts."""
    if isinstance(obj, dict):
        return {k: json_safe(v, ndigits) for k, v in obj.items() if not str(k).startswith("_")}
    if isinstance(obj, list | tuple):
        return [json_safe(v, ndigits) for v in obj]
    if isinstance(obj, float):
        if not math.isfinite(obj):
            return None
        return round(obj, ndigits) if ndigits is not None else obj
    if hasattr(obj, "item"):  # numpy scalars
        return json_safe(obj.item(), ndigits)
    return obj
