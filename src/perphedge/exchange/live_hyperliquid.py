"""The Hyperliquid dialect of :class:`perphedge.exchange.live.CcxtAccount` (venue ``hyperliquid``, ccxt
``hyperliquid`` 4.5.90).

Hyperliquid has two endpoints, both ``POST`` with a JSON body: ``/info`` (reads, by ``type``; account reads are by
address and unsigned) and ``/exchange`` (actions signed with EIP-712 by the private key). What this dialect uses:

* markets: ``metaAndAssetCtxs`` only (ccxt's spot and builder-deployed markets are not loaded);
* balances: ``clearinghouseState`` (the perp margin account, USDC) and ``spotClearinghouseState`` (spot tokens,
  reported as ``SPOT:<coin>`` so they are never mistaken for margin);
* positions: ``clearinghouseState`` (``szi`` signed coins, ``entryPx``, ``positionValue``/|szi| = mark,
  ``leverage.type`` cross|isolated, ``marginUsed``, the venue's ``liquidationPx``; null = cannot be liquidated);
* orders: action ``order`` with our id as ``c`` (cloid, ``0x`` + 32 hex), ``r`` reduce-only; a **market order is an
  IOC limit order at the venue's mark ± 5 %** (ccxt's ``defaultSlippage``; option ``slippage``), fetched from
  ``metaAndAssetCtxs`` just before sending; limit orders are ``Gtc``. Lookup by cloid: ``orderStatus``
  (``oid`` = the cloid); cancel: ``cancelByCloid``; fills: ``userFillsByTime``; funding: ``userFunding``
  (500 rows a page, paged by time); liquidations: fills whose ``liquidation.liquidatedUser`` is us.
* ccxt, on its first order, would also approve a 0.01 % builder fee for ccxt's builder address and set the
  referrer code ``CCXT1`` on the account (two signed actions the user never asked for): both are switched off here.

Credentials: ``key`` = the wallet (account) address, ``0x`` + 40 hex; ``secret`` = the private key that signs,
``0x`` + 64 hex (the wallet's own key or an API wallet approved for it: a trading account checks this when it
opens, with ``userRole`` of the key's address; sub-accounts and vaults are refused). Neither is echoed in any
message.

Errors: Hyperliquid answers HTTP 200 with ``{"status": "err", "response": "<text>"}`` or a per-order
``{"error": "<text>"}``; :data:`REJECT_MESSAGES` maps those texts to our neutral kinds. A signature by a key the
venue does not know is ``User or API Wallet 0x… does not exist.``: a :class:`~perphedge.errors.ConfigError`
(nothing was placed). Weights: Hyperliquid's published REST limit is 1200 per minute per IP; ``/info`` costs 2
(``clearinghouseState``, ``spotClearinghouseState``, ``orderStatus``, ``allMids``, ``l2Book``, ``exchangeStatus``),
60 (``userRole``) or 20 (everything else; the venue adds 1 per 20 rows returned by the fill, funding and order
histories, which cannot be known before the answer), ``/exchange`` costs 1 + floor(orders / 40).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Literal, cast

from perphedge.core.book import OrderRequest
from perphedge.errors import ConfigError
from perphedge.exchange.live import Classified, RejectKind, VenueDialect, VenueFunding, VenuePosition

__all__ = ["DEFAULT_SLIPPAGE", "DIALECTS", "INFO_WEIGHTS", "REJECT_MESSAGES", "Hyperliquid", "venue_message"]

#: ccxt's default slippage of a market order (an IOC limit at mark·(1 ± this))
DEFAULT_SLIPPAGE = 0.05
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_PRIVATE_KEY = re.compile(r"^0x[0-9a-fA-F]{64}$")
_FUNDING_PAGE = 500

#: /info weights by request type (Hyperliquid "Rate limits"); other types weigh 20
INFO_WEIGHTS: dict[str, float] = {
    "l2Book": 2,
    "allMids": 2,
    "clearinghouseState": 2,
    "orderStatus": 2,
    "spotClearinghouseState": 2,
    "exchangeStatus": 2,
    "userRole": 60,
}

#: Hyperliquid error texts (case-insensitive substrings) -> what they mean; the first match wins
REJECT_MESSAGES: tuple[tuple[str, Literal["reject", "not_found", "auth", "retry"], RejectKind | None], ...] = (
    ("user or api wallet", "auth", None),
    ("must sign with the main wallet", "auth", None),
    ("vault not registered", "auth", None),
    ("order was never placed, already canceled, or filled", "not_found", None),
    ("minimum value of $10", "reject", "min_notional"),
    ("insufficient margin", "reject", "insufficient_margin"),
    ("insufficient spot balance", "reject", "insufficient_margin"),
    ("reduce only order would increase position", "reject", "reduce_only"),
    ("duplicate", "reject", "duplicate"),
    ("too many cumulative requests", "reject", "rate_limited"),
    ("price must be divisible by tick size", "reject", "invalid"),
    ("invalid size", "reject", "invalid"),
    ("zero size", "reject", "invalid"),
    ("80% away from the reference price", "reject", "invalid"),
    ("could not immediately match", "reject", "invalid"),
    ("post only order would have immediately matched", "reject", "invalid"),
    ("no liquidity available", "reject", "invalid"),
    ("invalid nonce", "reject", "invalid"),
    ("invalid leverage", "reject", "invalid"),
    ("invalid cloid", "reject", "invalid"),
    ("invalid asset", "reject", "invalid"),
)

_VENUE_TEXT = re.compile(r"[\"'](?:response|error)[\"']\s*:\s*[\"']([^\"']*)[\"']")


def venue_message(text: str) -> str:
    """The venue's own error text inside a ccxt error (``response`` or ``error`` of the answer), else ``text``."""
    m = _VENUE_TEXT.search(text)
    return m.group(1) if m else text


def _f(value: Any, default: float = math.nan) -> float:
    if value is None or value == "":
        return default
    try:
        return float(value)
    except (TypeError, ValueError):
        return default


class Hyperliquid(VenueDialect):
    """Hyperliquid perpetuals (USDC-margined, linear, 1 coin per contract)."""

    venue = "hyperliquid"
    ccxt_id = "hyperliquid"
    exchange = "hyperliquid"
    kinds = ("linear",)
    credentials = ("key", "secret")
    weight_limit = 1200.0
    default_weight = 20.0
    client_id_pattern = r"^0x[0-9a-f]{32}$"

    def __init__(self) -> None:
        self._client: Any = None
        self.slippage = DEFAULT_SLIPPAGE

    # -- client ---------------------------------------------------------------------------------------------

    def client_config(self, credentials: Mapping[str, str], options: Mapping[str, Any]) -> dict[str, Any]:
        """``walletAddress`` / ``privateKey`` (checked for shape, never shown); only perp markets are loaded."""
        key = str(credentials.get("key", "")).strip()
        secret = str(credentials.get("secret", "")).strip()
        if not _ADDRESS.fullmatch(key):
            raise ConfigError(
                "hyperliquid credentials: `key` must be the wallet address, 0x followed by 40 hex digits "
                f"(the value given has {len(key)} characters and is not shown)"
            )
        if not _PRIVATE_KEY.fullmatch(secret):
            raise ConfigError(
                "hyperliquid credentials: `secret` must be the private key that signs, 0x followed by 64 hex "
                f"digits (the value given has {len(secret)} characters and is not shown)"
            )
        slippage = options.get("slippage", DEFAULT_SLIPPAGE)
        if isinstance(slippage, bool) or not isinstance(slippage, int | float) or not 0 < slippage < 0.5:
            raise ConfigError(f"hyperliquid option `slippage`: must be a fraction in (0, 0.5), was {slippage!r}")
        self.slippage = float(slippage)
        ccxt_options = {
            "defaultType": "swap",
            "fetchMarkets": {"types": ["swap"]},
            "defaultSlippage": self.slippage,
            # no builder fee approval, no builder attached to orders, no referrer set on the user's account
            "builderFee": False,
            "approvedBuilderFee": False,
            "refSet": True,
            **dict(options.get("ccxt") or {}),
        }
        return {
            "walletAddress": key.lower(),
            "privateKey": secret,
            "enableRateLimit": True,
            "options": ccxt_options,
        }

    def prepare_client(self, client: Any) -> None:
        client.has["fetchCurrencies"] = False
        # ccxt approves a builder fee on the first signed action unless the approval is already on record;
        # with approvedBuilderFee False it would also not attach one: skip the approval itself.
        client.handle_builder_fee_approval = lambda: True
        self._client = client

    def check_account(self, client: Any, read_only: bool) -> None:
        """A trading account's private key must be the wallet's own or an API wallet approved for it
        (``userRole`` of the signer: ``agent`` of this wallet); otherwise every order would be refused, or, for
        a sub-account or vault address with its master's key, land on the master account."""
        if read_only:
            return
        wallet = str(client.walletAddress).lower()
        signer = str(client.eth_get_address_from_private_key(client.privateKey)).lower()
        if signer == wallet:
            return
        role = client.publicPostInfo({"type": "userRole", "user": signer})
        data = role.get("data") if isinstance(role, dict) else None
        agent_of = str((data or {}).get("user") or "").lower()
        if isinstance(role, dict) and role.get("role") == "agent" and agent_of == wallet:
            return
        what = role.get("role") if isinstance(role, dict) else role
        raise ConfigError(
            "hyperliquid credentials: the private key (`secret`) signs as neither the wallet (`key`) nor an API "
            f"wallet approved for it (the venue calls its address a {what!r}"
            f"{', agent of another wallet' if agent_of and agent_of != wallet else ''}); sub-accounts and vaults "
            "are not supported: use the wallet's own key or an API wallet created for it"
        )

    # -- weights ------------------------------------------------------------------------------------------

    def weight(self, method: str, path: str, query: Mapping[str, str]) -> float:
        body: Any = None
        raw = getattr(self._client, "last_request_body", None) if self._client is not None else None
        if isinstance(raw, str | bytes):
            try:
                body = json.loads(raw)
            except ValueError:
                body = None
        if path.endswith("/exchange"):
            action = body.get("action") if isinstance(body, dict) else None
            orders = action.get("orders") if isinstance(action, dict) else None
            n = len(orders) if isinstance(orders, list) else 1
            return 1.0 + n // 40
        if path.endswith("/info") and isinstance(body, dict):
            return float(INFO_WEIGHTS.get(str(body.get("type")), self.default_weight))
        return self.default_weight

    # -- errors -------------------------------------------------------------------------------------------

    def classify(self, exc: BaseException) -> Classified:
        text = " ".join(str(exc).split())
        message = venue_message(text)
        lower = message.lower()
        for needle, outcome, kind in REJECT_MESSAGES:
            if needle in lower:
                return Classified(outcome, kind, message[:300])
        base = super().classify(exc)
        return Classified(base.outcome, base.kind, message[:300] if message != text else base.detail)

    # -- reads ----------------------------------------------------------------------------------------------

    def fetch_balances(self, client: Any) -> list[tuple[str, float, float, float]]:
        """The perp margin account in USDC (``wallet`` = account value without unrealised PnL, ``used`` = the
        positions' initial margin) and the spot tokens as ``SPOT:<coin>`` (``used`` = held by spot orders)."""
        state = client.publicPostInfo({"type": "clearinghouseState", "user": client.walletAddress})
        summary = state.get("marginSummary") or {}
        upnl = 0.0
        iso_upnl = 0.0
        for row in state.get("assetPositions") or []:
            pos = row.get("position") or {}
            u = _f(pos.get("unrealizedPnl"), 0.0)
            upnl += u
            if (pos.get("leverage") or {}).get("type") == "isolated":
                iso_upnl += u
        wallet = _f(summary.get("accountValue"), 0.0) - upnl
        used = _f(summary.get("totalMarginUsed"), 0.0) - iso_upnl
        out = [("USDC", wallet, wallet - used, used)]
        spot = client.publicPostInfo({"type": "spotClearinghouseState", "user": client.walletAddress})
        for row in spot.get("balances") or []:
            coin = str(row.get("coin") or "")
            if not coin:
                continue
            total = _f(row.get("total"), 0.0)
            hold = _f(row.get("hold"), 0.0)
            out.append((f"SPOT:{coin}", total, total - hold, hold))
        return out

    def fetch_positions(self, client: Any, symbols: Sequence[str]) -> list[VenuePosition]:
        """``clearinghouseState`` positions on ``symbols`` (one-way: one row per coin)."""
        return [self.parse_position(p) for p in client.fetch_positions(list(symbols)) if p.get("symbol") in symbols]

    def parse_position(self, p: Mapping[str, Any]) -> VenuePosition:
        info = (p.get("info") or {}).get("position") or {}
        szi = _f(info.get("szi"), 0.0)
        value = _f(info.get("positionValue"))
        lev = info.get("leverage") or {}
        raw_mode = lev.get("type")
        mode: Literal["isolated", "cross", ""] = raw_mode if raw_mode in ("isolated", "cross") else ""
        margin_used = _f(info.get("marginUsed"))
        upnl = _f(info.get("unrealizedPnl"))
        initial = margin_used - upnl if mode == "isolated" else margin_used
        liq_raw = info.get("liquidationPx")
        liq = _f(liq_raw) if liq_raw is not None else math.inf
        max_lev = _f(info.get("maxLeverage"))
        return VenuePosition(
            symbol=str(p.get("symbol")),
            contracts=szi,
            entry_price=_f(info.get("entryPx")),
            mark_price=value / abs(szi) if szi else math.nan,
            leverage=_f(lev.get("value")),
            margin_mode=mode,
            isolated_margin=initial if mode == "isolated" else math.nan,
            initial_margin=initial,
            liquidation_price=liq if liq > 0 else math.nan,
            unrealized=upnl,
            mmr=0.5 / max_lev if max_lev > 0 else math.nan,
            updated_ms=0,
        )

    def fetch_order_trades(self, client: Any, symbol: str, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The order's fills: ``userFillsByTime`` from the order's creation when known (an order looked up), else
        ``userFills`` (the 2000 most recent: an order just placed)."""
        since = int(_f(order.get("timestamp"), 0.0)) or None
        trades = client.fetch_my_trades(symbol, since) if since else client.fetch_my_trades(symbol)
        return [t for t in trades if str(t.get("order")) == str(order.get("id"))]

    def fetch_funding(self, client: Any, symbol: str, since_ms: int) -> list[VenueFunding]:
        """``userFunding`` rows of ``symbol`` (``usdc`` > 0 received), paged by time 500 rows at a time."""
        market = client.market(symbol)
        coin = str(market.get("baseName") or market.get("base"))
        out: dict[int, VenueFunding] = {}
        since = max(0, since_ms)
        while True:
            rows = client.publicPostInfo({"type": "userFunding", "user": client.walletAddress, "startTime": since})
            rows = rows if isinstance(rows, list) else []
            for r in rows:
                delta = r.get("delta") or {}
                if delta.get("type") != "funding" or delta.get("coin") != coin:
                    continue
                ts = int(_f(r.get("time"), 0.0))
                out[ts] = VenueFunding(
                    symbol=symbol,
                    ts_ms=ts,
                    amount=_f(delta.get("usdc"), 0.0),
                    asset="USDC",
                    rate=_f(delta.get("fundingRate")),
                    entry_id=f"{coin}:{ts}",
                )
            if len(rows) < _FUNDING_PAGE:
                break
            newest = max(int(_f(r.get("time"), 0.0)) for r in rows)
            if newest < since:
                break
            # the page may end inside one settlement (one row per coin at the same time): ask again from that
            # time (rows are keyed by time, so repeats collapse) unless the whole page was that one time
            since = newest if newest > since else newest + 1
        return sorted(out.values(), key=lambda e: e.ts_ms)

    def fetch_liquidations(self, client: Any, symbol: str, since_ms: int) -> list[tuple[float, ...]]:
        """Fills the venue marks as a liquidation of this account: ``(ts_ms, price, contracts, loss)`` with the
        loss the fill realised (``-closedPnl + fee``, USDC, > 0 lost)."""
        rows = client.fetch_my_liquidations(symbol, since_ms or None)
        out: list[tuple[float, ...]] = []
        for r in rows:
            if r.get("symbol") != symbol:
                continue
            info = r.get("info") or {}
            loss = -_f(info.get("closedPnl")) + _f(info.get("fee"), 0.0)
            out.append((int(r.get("timestamp") or 0), _f(r.get("price")), _f(r.get("contracts"), 0.0), loss))
        return out

    # -- writes ---------------------------------------------------------------------------------------------

    def mark_price(self, client: Any, symbol: str) -> float:
        """The venue's mark of ``symbol`` now (``metaAndAssetCtxs``)."""
        market = client.market(symbol)
        coin = str(market.get("baseName") or market.get("base"))
        meta, ctxs = client.publicPostInfo({"type": "metaAndAssetCtxs"})
        for i, asset in enumerate(meta.get("universe") or []):
            if asset.get("name") == coin and i < len(ctxs):
                mark = _f(ctxs[i].get("markPx"))
                if mark > 0:
                    return mark
        import ccxt

        raise ccxt.ExchangeError(f"hyperliquid: no mark price for {coin} in metaAndAssetCtxs")

    def create_order(
        self, client: Any, symbol: str, req: OrderRequest, amount: float, price: float | None
    ) -> dict[str, Any]:
        """One ``order`` action: Gtc limit, or for a market order an IOC limit at mark ± slippage."""
        import ccxt

        params: dict[str, Any] = {"clientOrderId": req.client_id, "reduceOnly": bool(req.reduce_only)}
        if req.order_type == "market":
            base = self.mark_price(client, symbol)
            params["slippage"] = str(self.slippage)
        else:
            base = cast(float, price)
            params["timeInForce"] = "Gtc"
        try:
            order = cast(dict[str, Any], client.create_order(symbol, req.order_type, req.side, amount, base, params))
        except ccxt.BaseError as exc:
            c = self.classify(exc)
            if c.outcome == "auth":
                raise ConfigError(
                    "hyperliquid: the venue does not accept this private key for the wallet: it is neither the "
                    f"wallet's key nor an API wallet approved for it ({c.detail}); nothing was placed"
                ) from None
            raise
        info = order.get("info") or {}
        filled = _f(order.get("filled"), 0.0)
        if "filled" in info:  # an IOC (or a fully filled limit): what did not fill is cancelled
            order["status"] = "closed" if filled >= amount * (1 - 1e-9) else "canceled"
        elif "resting" in info:  # on the book, possibly after a partial fill: the order's state says how much
            try:
                state = self.fetch_order_by_client_id(client, symbol, req.client_id)
            except ccxt.BaseError:
                state = None
            if state is not None:
                return state
            order["status"] = "open"
            order["filled"] = 0.0
        order["clientOrderId"] = req.client_id
        order["amount"] = amount
        order["symbol"] = symbol
        return order

    def cancel_by_client_id(self, client: Any, symbol: str, client_id: str) -> dict[str, Any] | None:
        """``cancelByCloid``; then the order's final state from ``orderStatus`` (None when never seen)."""
        import ccxt

        try:
            client.cancel_order(None, symbol, {"clientOrderId": client_id})
        except ccxt.OrderNotFound:
            pass
        except ccxt.BaseError as exc:
            if self.classify(exc).outcome != "not_found":
                raise
        return self.fetch_order_by_client_id(client, symbol, client_id)


DIALECTS: dict[str, type[VenueDialect]] = {"hyperliquid": Hyperliquid}
