"""``python -m perphedge.exchange.fake``: run the fake exchange until killed.

::

    python -m perphedge.exchange.fake --port 8080 --api-key K --api-secret S --balance USDT=100000 [--balance BTC=2]
        [--data DIR] [--password P] [--weight-limit 2400]

It prints ``perphedge fake exchange: http://127.0.0.1:PORT`` (flushed) on its first line, then serves the sample
history (``--data``, else ``PERPHEDGE_SAMPLE_DATA``, else the sample bundled with perphedge) and, when a key or
secret is given, the venues' private routes (:data:`perphedge.exchange.fake.PRIVATE_VENUES`) until SIGINT/SIGTERM.
Route perphedge to it with ``PERPHEDGE_EXCHANGE_URL=http://127.0.0.1:PORT``. Loopback only. The key and secret
given here are test values for the fake; they are never printed.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

from perphedge.errors import ConfigError, PerphedgeError

__all__ = ["main", "parse_balances"]


def parse_balances(items: Sequence[str]) -> dict[str, float]:
    """``["USDT=100000", "BTC=2"]`` -> ``{"USDT": 100000.0, "BTC": 2.0}``; ConfigError naming the bad item."""
    out: dict[str, float] = {}
    for item in items:
        asset, sep, amount = item.partition("=")
        asset = asset.strip().upper()
        if not sep or not asset or not asset.isalnum():
            raise ConfigError(f"invalid `--balance`: must be ASSET=AMOUNT such as USDT=100000, was {item!r}")
        try:
            value = float(amount)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value >= 0):
            raise ConfigError(f"invalid `--balance` {asset}: the amount must be a number >= 0, was {amount!r}")
        if asset in out:
            raise ConfigError(f"invalid `--balance`: {asset} given twice")
        out[asset] = value
    return out


def _data_dir(arg: str | None) -> Path:
    if arg:
        path = Path(arg)
        if not (path / "prices").is_dir():
            raise ConfigError(f"invalid `--data`: {path} has no prices/ directory (the sample layout)")
        return path
    env = os.environ.get("PERPHEDGE_SAMPLE_DATA")
    if env:
        path = Path(env)
        if not (path / "prices").is_dir():
            raise ConfigError(f"invalid environment variable PERPHEDGE_SAMPLE_DATA: {path} has no prices/ directory")
        return path
    from perphedge.data.sample import materialise

    tmp = Path(tempfile.mkdtemp(prefix="perphedge-fake-"))
    import atexit

    atexit.register(shutil.rmtree, tmp, ignore_errors=True)
    return materialise(tmp / "data")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m perphedge.exchange.fake",
        description="A fake exchange (Binance/Bybit public data from the sample; venues' private APIs) on 127.0.0.1.",
    )
    p.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    p.add_argument("--api-key", default="", help="the API key clients must send (test value)")
    p.add_argument("--api-secret", default="", help="the secret requests are signed with (test value)")
    p.add_argument("--password", default="", help="the passphrase (OKX)")
    p.add_argument("--private-key", default="", help="the wallet private key (Hyperliquid)")
    p.add_argument("--balance", action="append", default=[], help="starting balance ASSET=AMOUNT (repeatable)")
    p.add_argument("--data", default=None, help="sample data directory (default PERPHEDGE_SAMPLE_DATA or bundled)")
    p.add_argument("--weight-limit", type=int, default=2400, help="Binance request weight per minute (default 2400)")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if not 0 <= args.port <= 65535:
            raise ConfigError(f"invalid `--port`: must be 0..65535, was {args.port}")
        if args.weight_limit <= 0:
            raise ConfigError(f"invalid `--weight-limit`: must be > 0, was {args.weight_limit}")
        if args.api_secret and not args.api_key:
            raise ConfigError("invalid `--api-secret`: give it with `--api-key` (the key clients send)")
        if args.api_key and not (args.api_secret or args.private_key):
            raise ConfigError(
                "invalid `--api-key`: give it with `--api-secret` (the secret requests are signed with) or, for "
                "hyperliquid, `--private-key`"
            )
        balances = parse_balances(args.balance) if args.balance else {"USDT": 100_000.0}
        root = _data_dir(args.data)
        from perphedge.exchange import fake as fake_mod
        from perphedge.exchange.fake import FakeExchange

        fx = FakeExchange(
            root,
            api_key=args.api_key,
            api_secret=args.api_secret,
            password=args.password,
            private_key=args.private_key,
            balances=balances,
            port=args.port,
        )
        if "binance" in fx.venue_state:
            fx.venue_state["binance"].limit = args.weight_limit
    except PerphedgeError as exc:
        print(f"perphedge: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"perphedge: error: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    stop = threading.Event()

    def _stop(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    with fx:
        private = ", ".join(fake_mod.PRIVATE_VENUES) if fx.private_routes else "none (no --api-key/--api-secret)"
        print(f"perphedge fake exchange: {fx.url}", flush=True)
        print(f"private venues: {private}; balances: {balances}", flush=True)
        while not stop.wait(0.5):
            pass
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
