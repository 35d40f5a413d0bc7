"""Portfolio and run files (YAML): pydantic models, strict (unknown keys are errors, frozen).

Every problem becomes one :class:`~perphedge.errors.ConfigError` line naming the file, the line,
the field and the rule: ``examples/x.yaml: line 9: field `holdings[2].quantity`: must be > 0, was -1``.

Strict means: numbers are numbers (``true`` and ``"150"`` are refused, not read as 1 and 150),
booleans are ``true``/``false`` only, text is text, dates are ISO 8601 ``YYYY-MM-DD``; NaN and
infinities are refused, and amounts are bounded (:data:`MAX_VALUE_USD`) so nothing overflows.
Files are read by :mod:`perphedge.files` (duplicate keys, directories, binaries, empty files).
"""

from __future__ import annotations

import math
import re
from datetime import date, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from perphedge.core.units import MAX_PRICE_USD, MAX_VALUE_USD, MIN_PRICE_USD
from perphedge.errors import ConfigError

__all__ = [
    "CROSS_VENUES",
    "ENV_NAME",
    "EXCHANGE_ACCOUNT_VENUES",
    "MAX_PRICE_USD",
    "MAX_QUANTITY",
    "MAX_VALUE_USD",
    "AccountPositionModel",
    "AlertsModel",
    "BookFile",
    "CrossAccountFile",
    "ExchangeAccountModel",
    "FeedModel",
    "HedgeModel",
    "HoldingModel",
    "IsoDate",
    "KeyringModel",
    "LegModel",
    "LimitsModel",
    "PaperAccountModel",
    "PolicyModel",
    "PortfolioFile",
    "PositionModel",
    "RunFile",
    "book_asset_code",
    "load_account_file",
    "load_portfolio_file",
    "looks_like_a_key",
    "parse_account",
    "parse_book",
    "parse_duration",
    "parse_portfolio",
    "parse_run",
    "read_yaml",
]

_STRICT = ConfigDict(
    defer_build=True, extra="forbid", frozen=True, allow_inf_nan=False, str_strip_whitespace=True, strict=True
)

#: Largest quantity of one holding (units of the asset); its USD value is bounded by MAX_VALUE_USD.
MAX_QUANTITY = 1e18
#: Largest absolute beta of an asset against the proxy.
MAX_ABS_BETA = 10.0
#: Group names a holding may not use: ``all`` is the scope of every holding, ``ungrouped`` the label
#: of holdings without a group.
RESERVED_GROUPS = frozenset({"all", "ungrouped"})

_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _iso_date(value: Any) -> date:
    """A date from a YAML date or an ISO 8601 ``YYYY-MM-DD`` string; anything else is refused."""
    if isinstance(value, datetime):
        raise ValueError(f"must be a date YYYY-MM-DD without a time of day, was {value.isoformat()}")
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = value.strip()
        if not _ISO_DATE.fullmatch(text):
            raise ValueError(f"must be an ISO 8601 date YYYY-MM-DD (e.g. 2024-01-31), was {value!r}")
        try:
            return date.fromisoformat(text)
        except ValueError as exc:
            raise ValueError(f"must be a valid date YYYY-MM-DD ({exc}), was {value!r}") from None
    raise ValueError(f"must be an ISO 8601 date YYYY-MM-DD (e.g. 2024-01-31), was {_shown(value)}")


#: A calendar date: a YAML date (``2024-01-31`` unquoted) or the same as a string; no times,
#: no timestamps, no ``01/02/2024``.
IsoDate = Annotated[date, BeforeValidator(_iso_date)]


class _At(ValueError):
    """A validation problem at a field path (``loc``) other than the validator's own."""

    def __init__(self, loc: tuple[str | int, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc


def _shown(value: Any) -> str:
    """A value as the user wrote it in YAML (``true``, ``null``, ``'150'``)."""
    if value is True:
        return "true"
    if value is False:
        return "false"
    if value is None:
        return "null"
    return repr(value)


class HoldingModel(BaseModel):
    """One holding: ``asset`` and either ``quantity`` (units) or ``value_usd``."""

    model_config = _STRICT
    asset: str = Field(min_length=1)
    quantity: float | None = Field(default=None, le=MAX_QUANTITY)
    value_usd: float | None = Field(default=None, le=MAX_VALUE_USD)
    group: str | None = Field(default=None, min_length=1)

    @field_validator("group")
    @classmethod
    def _group_not_reserved(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in RESERVED_GROUPS:
            raise ValueError(
                f"`{value}` is reserved (`scope: all` means every holding; `ungrouped` labels holdings "
                "without a group): choose another group name"
            )
        return value

    @model_validator(mode="after")
    def _one_amount(self) -> HoldingModel:
        if (self.quantity is None) == (self.value_usd is None):
            raise ValueError("give exactly one of `quantity` or `value_usd`")
        amount = self.quantity if self.quantity is not None else self.value_usd
        name = "quantity" if self.quantity is not None else "value_usd"
        if amount is None or amount <= 0:
            raise _At((name,), f"must be > 0, was {amount:g}")
        return self


class LegModel(BaseModel):
    """A proxy leg with its weight."""

    model_config = _STRICT
    instrument: str = Field(min_length=3)
    weight: float = Field(gt=0, le=1)


class HedgeModel(BaseModel):
    """The ``hedge:`` block; any field may be overridden on the command line."""

    model_config = _STRICT
    ratio: float = Field(default=1.0, ge=0, le=2)
    scope: str = "all"
    method: Literal["notional", "beta", "min_variance"] = "notional"
    instrument: str | None = None
    legs: list[LegModel] | None = None
    proxy: str | None = None
    leverage: float = Field(default=2.0, ge=1)
    collateral: Literal["buy", "holdings", "stable"] | None = None
    funding_rate_8h: float = Field(default=0.0001, ge=-0.05, le=0.05)
    #: ``cross``: the legs share one cross-margined account (plan shows each leg's liquidation given the others)
    margin_mode: Literal["isolated", "cross"] = "isolated"

    @model_validator(mode="after")
    def _legs(self) -> HedgeModel:
        if self.instrument is not None and self.legs is not None:
            raise ValueError("give `instrument` or `legs`, not both")
        if self.legs is not None and not self.legs:
            raise ValueError("`legs` must list at least one leg")
        seen: dict[str, int] = {}
        for i, leg in enumerate(self.legs or ()):
            ident = leg.instrument.strip().lower()
            if ident in seen:
                raise _At(
                    ("legs", i, "instrument"),
                    f"{leg.instrument} is already `legs[{seen[ident]}]`: give each instrument once, with its "
                    "total weight",
                )
            seen[ident] = i
        if self.legs is not None and abs(sum(leg.weight for leg in self.legs) - 1.0) > 1e-9:
            total = sum(leg.weight for leg in self.legs)
            raise ValueError(
                f"`legs` weights must sum to exactly 1, sum to {total!r} (off by {total - 1.0:+.3g}; "
                "write the last weight as 1 minus the others)"
            )
        return self


#: Largest liquidity ``L`` of a pool position (token units, ``√(x·y)``).
MAX_LIQUIDITY = 1e18
#: Largest exchange rate of a staked token to its underlying (stETH 1, rETH ~1.1, JitoSOL ~1.2).
MAX_STAKED_RATE = 100.0

_POSITION_FIELDS: dict[str, set[str]] = {
    "lp_v2": {"pair", "amounts", "share", "reserves"},
    "lp_v3": {"pair", "range", "liquidity", "amounts"},
    "staked": {"asset", "underlying", "quantity", "rate", "depeg"},
    "lending": {"supplied", "borrowed", "liquidation_threshold", "liquidation_bonus"},
}
_POSITION_REQUIRED: dict[str, tuple[str, ...]] = {
    "lp_v2": ("pair",),
    "lp_v3": ("pair", "range"),
    "staked": ("asset", "underlying", "quantity"),
    "lending": ("supplied", "liquidation_threshold"),
}


def _check_assets_map(
    name: str, value: dict[str, float] | None, *, allow_zero: bool = False
) -> dict[str, float] | None:
    """Asset → amount: codes given once (case-insensitive), amounts > 0 (or >= 0) and bounded."""
    if value is None:
        return value
    seen: dict[str, str] = {}
    for asset, amount in value.items():
        code = asset.strip().upper()
        if not code:
            raise _At((name, asset), "an asset code must not be empty")
        if code in seen:
            raise _At((name, asset), f"`{asset}` and `{seen[code]}` are the same asset: give {code} once")
        seen[code] = asset
        if not math.isfinite(amount) or amount < 0 or (amount == 0 and not allow_zero):
            raise _At((name, asset), f"must be {'>= 0' if allow_zero else '> 0'}, was {amount!r}")
        if amount > MAX_QUANTITY:
            raise _At((name, asset), f"must be <= {MAX_QUANTITY:g}, was {amount!r}")
    return value


class PositionModel(BaseModel):
    """One DeFi position under ``positions:``; which fields apply depends on ``kind`` (others are errors).

    * ``lp_v2``: ``pair: [BASE, QUOTE]`` and ``amounts: {BASE: x, QUOTE: y}``, or ``share`` (of the pool,
      in (0, 1]) and the pool's ``reserves: {BASE: X, QUOTE: Y}``.
    * ``lp_v3``: ``pair``, ``range: [p_a, p_b]`` (QUOTE per BASE), and ``liquidity`` or the current
      ``amounts`` (one token only when out of range).
    * ``staked``: ``asset`` (the token), ``underlying``, ``quantity`` (tokens), ``rate`` (underlying per
      token, default 1), optional ``depeg`` (a fraction, shown as a scenario).
    * ``lending``: ``supplied`` and ``borrowed`` (asset → units), ``liquidation_threshold`` in (0, 1),
      optional ``liquidation_bonus`` in [0, 0.5).
    """

    model_config = _STRICT
    kind: Literal["lp_v2", "lp_v3", "staked", "lending"]
    name: str | None = Field(default=None, min_length=1)
    group: str | None = Field(default=None, min_length=1)
    pair: list[str] | None = None
    range: list[float] | None = None
    liquidity: float | None = Field(default=None, gt=0, le=MAX_LIQUIDITY)
    amounts: dict[str, float] | None = None
    share: float | None = Field(default=None, gt=0, le=1)
    reserves: dict[str, float] | None = None
    asset: str | None = Field(default=None, min_length=1)
    underlying: str | None = Field(default=None, min_length=1)
    quantity: float | None = Field(default=None, gt=0, le=MAX_QUANTITY)
    rate: float = Field(default=1.0, gt=0, le=MAX_STAKED_RATE)
    depeg: float | None = Field(default=None, gt=0, lt=1)
    supplied: dict[str, float] | None = None
    borrowed: dict[str, float] = Field(default_factory=dict)
    liquidation_threshold: float | None = Field(default=None, gt=0, lt=1)
    liquidation_bonus: float | None = Field(default=None, ge=0, lt=0.5)

    @field_validator("group")
    @classmethod
    def _group_not_reserved(cls, value: str | None) -> str | None:
        if value is not None and value.lower() in RESERVED_GROUPS:
            raise ValueError(
                f"`{value}` is reserved (`scope: all` means everything; `ungrouped` labels what has no group): "
                "choose another group name"
            )
        return value

    @field_validator("pair")
    @classmethod
    def _pair(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return value
        if len(value) != 2:
            raise ValueError(f"must name two assets [BASE, QUOTE] (e.g. [ETH, USDC]), was a list of {len(value)}")
        for i, asset in enumerate(value):
            if not asset:
                raise _At(("pair", i), "an asset code must not be empty")
        if value[0].upper() == value[1].upper():
            raise ValueError(f"must name two different assets, was [{value[0]}, {value[1]}]")
        return value

    @field_validator("range")
    @classmethod
    def _range(cls, value: list[float] | None) -> list[float] | None:
        if value is None:
            return value
        if len(value) != 2:
            raise ValueError(f"must be [p_a, p_b] (QUOTE per BASE, low then high), was a list of {len(value)}")
        for i, bound in enumerate(value):
            if not math.isfinite(bound) or not MIN_PRICE_USD <= bound <= MAX_PRICE_USD:
                raise _At(("range", i), f"must be in [{MIN_PRICE_USD:g}, {MAX_PRICE_USD:g}], was {bound!r}")
        if value[0] >= value[1]:
            raise ValueError(
                f"the lower bound must be below the upper (low then high), was [{value[0]:g}, {value[1]:g}]"
            )
        return value

    @field_validator("amounts")
    @classmethod
    def _amounts(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _check_assets_map("amounts", value, allow_zero=True)

    @field_validator("reserves")
    @classmethod
    def _reserves(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _check_assets_map("reserves", value)

    @field_validator("supplied")
    @classmethod
    def _supplied(cls, value: dict[str, float] | None) -> dict[str, float] | None:
        return _check_assets_map("supplied", value)

    @field_validator("borrowed")
    @classmethod
    def _borrowed(cls, value: dict[str, float]) -> dict[str, float]:
        return _check_assets_map("borrowed", value) or {}

    @model_validator(mode="after")
    def _fields_of_kind(self) -> PositionModel:
        allowed = _POSITION_FIELDS[self.kind] | {"kind", "name", "group"}
        extra = sorted(set(self.model_fields_set) - allowed)
        if extra:
            raise _At(
                (extra[0],),
                f"does not apply to a position of kind {self.kind} (it takes {', '.join(sorted(allowed - {'kind'}))})",
            )
        for name in _POSITION_REQUIRED[self.kind]:
            if getattr(self, name) is None:
                raise _At((name,), f"is required for a position of kind {self.kind}")
        if self.kind in ("lp_v2", "lp_v3"):
            self._check_pool()
        if self.kind == "staked":
            assert self.asset is not None and self.underlying is not None
            if self.asset.upper() == self.underlying.upper():
                raise _At(("underlying",), f"must differ from the staked `asset` {self.asset}, was {self.underlying}")
        if self.kind == "lending":
            assert self.supplied is not None
            if not self.supplied:
                raise _At(("supplied",), "must list at least one asset supplied as collateral")
            sup = {a.upper() for a in self.supplied}
            for asset in self.borrowed:
                if asset.upper() in sup:
                    raise _At(
                        ("borrowed", asset),
                        f"{asset.upper()} is also supplied: give the net amount on one side",
                    )
        return self

    def _check_pool(self) -> None:
        assert self.pair is not None
        pair = {a.upper() for a in self.pair}
        shown = f"[{self.pair[0]}, {self.pair[1]}]"
        for name in ("amounts", "reserves"):
            given = getattr(self, name)
            if given is None:
                continue
            for asset in given:
                if asset.upper() not in pair:
                    raise _At((name, asset), f"{asset} is not an asset of the pair {shown}")
            keys = {a.upper() for a in given}
            one_sided = self.kind == "lp_v3" and name == "amounts" and keys  # out of range: one token only
            if keys != pair and not one_sided:
                raise _At((name,), f"must give both assets of the pair {shown}, gave {', '.join(given) or 'none'}")
        if self.kind == "lp_v3":
            if (self.liquidity is None) == (self.amounts is None):
                raise _At(("liquidity",), "give exactly one of `liquidity` or `amounts` for an lp_v3 position")
            if self.amounts is not None and all(v == 0 for v in self.amounts.values()):
                raise _At(("amounts",), "must not be all 0 (an empty position holds nothing)")
            return
        by_amounts = self.amounts is not None
        by_share = self.share is not None or self.reserves is not None
        if by_amounts == by_share:
            raise _At(("amounts",), "give either `amounts`, or `share` and `reserves`, for an lp_v2 position")
        if by_share and (self.share is None or self.reserves is None):
            missing = "share" if self.share is None else "reserves"
            raise _At((missing,), "is required with the other (`share` of the pool and its `reserves`)")
        if self.amounts is not None:
            for asset, amount in self.amounts.items():
                if amount <= 0:
                    raise _At(("amounts", asset), f"must be > 0 (a v2 pool always holds both tokens), was {amount!r}")


class PortfolioFile(BaseModel):
    """A portfolio file: holdings and/or DeFi positions, prices, optional betas and hedge block."""

    model_config = _STRICT
    name: str = "portfolio"
    prices: dict[str, float] = Field(default_factory=dict)
    holdings: list[HoldingModel] = Field(default_factory=list)
    positions: list[PositionModel] = Field(default_factory=list)
    betas: dict[str, float] = Field(default_factory=dict)
    hedge: HedgeModel = Field(default_factory=HedgeModel)

    @field_validator("prices")
    @classmethod
    def _prices_positive(cls, value: dict[str, float]) -> dict[str, float]:
        for asset, price in value.items():
            if not math.isfinite(price) or price <= 0:
                raise _At(("prices", asset), f"price of {asset} must be > 0, was {price!r}")
            if not MIN_PRICE_USD <= price <= MAX_PRICE_USD:
                raise _At(
                    ("prices", asset),
                    f"price of {asset} must be in [{MIN_PRICE_USD:g}, {MAX_PRICE_USD:g}] USD, was {price!r}",
                )
        return value

    @field_validator("betas")
    @classmethod
    def _betas_bounded(cls, value: dict[str, float]) -> dict[str, float]:
        for asset, beta in value.items():
            if not math.isfinite(beta) or abs(beta) > MAX_ABS_BETA:
                raise _At(("betas", asset), f"beta of {asset} must be within ±{MAX_ABS_BETA:g}, was {beta!r}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> PortfolioFile:
        if not self.holdings and not self.positions:
            raise _At(
                ("holdings",),
                "must list at least one holding (or give `positions:`): the portfolio holds nothing",
            )
        for name in ("prices", "betas"):
            seen: dict[str, str] = {}
            for key in getattr(self, name):
                code = key.strip().upper()
                if code in seen:
                    raise _At((name, key), f"`{key}` and `{seen[code]}` are the same asset: give {code} once")
                seen[code] = key
        held: dict[tuple[str, str | None], int] = {}
        for i, h in enumerate(self.holdings):
            key = (h.asset.strip().upper(), h.group)
            if key in held:
                j = held[key]
                group = f"group `{h.group}`" if h.group else "no group"
                raise _At(
                    ("holdings", i),
                    f"{key[0]} is held twice with {group} (also `holdings[{j}]`): merge them into one holding, "
                    "or put them in different groups",
                )
            held[key] = i
        prices = {k.strip().upper(): v for k, v in self.prices.items()}
        for i, h in enumerate(self.holdings):
            price = prices.get(h.asset.strip().upper())
            if h.quantity is not None and price is not None and h.quantity * price > MAX_VALUE_USD:
                raise _At(
                    ("holdings", i, "quantity"),
                    f"{h.quantity:g} {h.asset} at {price:g} USD is worth {h.quantity * price:.3g} USD, above the "
                    f"{MAX_VALUE_USD:g} USD any holding can be (check the quantity and the price)",
                )
        assets = {a for a, _ in held}
        for p in self.positions:
            for names in (p.pair, [p.underlying] if p.underlying else None, p.supplied, p.borrowed):
                assets |= {a.strip().upper() for a in names or ()}
        for asset in self.betas:
            if asset.strip().upper() not in assets:
                raise _At(
                    ("betas", asset),
                    f"beta for {asset.strip().upper()}, which the portfolio does not hold "
                    f"(it holds {', '.join(sorted(assets))}): remove it, or add the holding",
                )
        return self


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("function-after", "function-before") or str(part).startswith("function-"):
            continue
        else:
            out += ("." if out else "") + str(part)
    return out


_TYPE_RULES = {
    "float_type": "must be a number",
    "int_type": "must be a whole number",
    "bool_type": "must be true or false",
    "string_type": "must be text",
    "list_type": "must be a list",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "date_type": "must be an ISO 8601 date YYYY-MM-DD",
}


def _text_hint(text: str, kind: str) -> str:
    """Why a piece of text is not the number or boolean expected, and how to write it."""
    if kind == "bool_type":
        return "write true or false"
    plain = text.strip()
    try:
        float(plain)
    except ValueError:
        pass
    else:
        if "_" not in plain and plain.lower().lstrip("+-") not in ("nan", "inf", "infinity"):
            return "text: write it without quotes"
    return "write a plain decimal number such as 150, 0.25 or 1e-3; no hex, octal, `:` or `_`"


def _message(err: Any) -> str:
    kind = err.get("type", "")
    msg = str(err.get("msg", "invalid"))
    if msg.startswith("Value error, "):
        msg = msg[len("Value error, ") :]
    if kind == "union_tag_not_found":
        return "is required: paper (a simulated account) or exchange (a live account through ccxt)"
    if kind == "union_tag_invalid":
        tag = (err.get("ctx") or {}).get("tag")
        inp = err.get("input")
        was = _shown(inp.get("kind")) if isinstance(inp, dict) else repr(tag)
        return f"must be paper (a simulated account) or exchange (a live account through ccxt), was {was}"
    if kind == "extra_forbidden":
        return "unknown key (check the spelling; see the file format in the README)"
    if kind == "missing":
        return "is required"
    inp = err.get("input")
    if kind in _TYPE_RULES:
        rule = _TYPE_RULES[kind]
        if isinstance(inp, bool) and kind in ("float_type", "int_type"):
            return f"{rule}, was {_shown(inp)} (true/false is not a number)"
        if isinstance(inp, str) and kind in ("float_type", "int_type", "bool_type"):
            return f"{rule}, was {inp!r} ({_text_hint(inp, kind)})"
        if isinstance(inp, bool) and kind == "string_type":
            return f"{rule}, was {_shown(inp)} (YAML reads yes/no/on/off as true/false: quote it)"
        if isinstance(inp, float) and kind == "int_type":
            return f"{rule}, was {inp!r}"
        if isinstance(inp, dict | list):
            return f"{rule}, was a {'mapping' if isinstance(inp, dict) else 'list'}"
        return f"{rule}, was {_shown(inp)}"
    bounds = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}
    if kind in bounds:
        ctx = err.get("ctx") or {}
        bound = next(iter(ctx.values()), None)
        if isinstance(bound, int | float):
            return f"must be {bounds[kind]} {bound:g}, was {_shown(inp)}"
    if kind == "finite_number":
        return f"must be a finite number, was {_shown(inp)}"
    if "input" in err and kind != "value_error" and not isinstance(inp, dict | list):
        return f"{msg[:1].lower()}{msg[1:]}, was {_shown(inp)}"
    return msg


_UNION_MEMBER = re.compile(r"(constrained-)?(str|int|float|bool|dict\[.*\]|list\[.*\]|.*\[.*\])")


def _loc_parts(loc: tuple[Any, ...], doc: Any = None) -> tuple[Any, ...]:
    """The field path of a pydantic error without validator and union-member steps (``str``, ``dict[str,any]``)."""
    out: list[Any] = []
    node = doc
    prev: Any = None
    for part in loc:
        text = str(part)
        if text.startswith("function-"):
            continue
        if isinstance(node, dict) and isinstance(prev, int) and node.get("kind") == part:
            prev = part
            continue  # the tag of a discriminated union (`accounts[0]` of kind `exchange`), not a field
        prev = part
        in_doc = isinstance(node, dict) and part in node
        if isinstance(part, str) and not in_doc and _UNION_MEMBER.fullmatch(text):
            continue
        out.append(part)
        if in_doc or (isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node)):
            node = node[part]
        else:
            node = None
    return tuple(out)


def _invalid(exc: ValidationError, doc: Any, source: str) -> ConfigError:
    """One ConfigError line for the first problem: ``source: line N: field `a.b[2]`: message``."""
    from perphedge.files import line_of

    err = exc.errors()[0]
    loc = _loc_parts(tuple(err.get("loc", ())), doc)
    cause = (err.get("ctx") or {}).get("error")
    if isinstance(cause, _At):
        # a field validator's loc ends with its field, which starts the cause's path; a model validator's does not
        loc = loc[:-1] + cause.loc if loc and loc[-1] == cause.loc[0] else loc + cause.loc
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found"):
        loc = (*loc, "kind")  # the discriminator of a union (an account's `kind`) is the field at fault
    text = _loc(loc)
    where = f"field `{text}`" if text else "document"
    line = line_of(doc, loc)
    at = f"line {line}: " if line else ""
    return ConfigError(f"{source}: {at}{where}: {_message(err)}")


def parse_portfolio(doc: Any, source: str) -> PortfolioFile:
    """Validate a parsed YAML document; ConfigError names ``source``, the line and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(f"{source}: must be a YAML mapping with `holdings:`, was {_kind_of(doc)}")
    try:
        return PortfolioFile.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(exc, doc, source) from None


def _kind_of(doc: Any) -> str:
    if isinstance(doc, list):
        return "a list"
    if isinstance(doc, str):
        return f"the text {doc[:40]!r}"
    return _shown(doc) if doc is None or isinstance(doc, bool | int | float) else type(doc).__name__


def load_portfolio_file(path: str | Path) -> PortfolioFile:
    """Read and validate a portfolio YAML file."""
    doc, _ = read_yaml(path, "a portfolio file")
    return parse_portfolio(doc, str(path))


# ---------------------------------------------------------------------------------------------- run files


class ScheduleEntry(BaseModel):
    """From ``from`` on, hedge ``ratio``."""

    model_config = ConfigDict(
        defer_build=True, extra="forbid", frozen=True, allow_inf_nan=False, populate_by_name=True, strict=True
    )
    start: IsoDate = Field(alias="from")
    ratio: float = Field(ge=0, le=2)


class TableEntry(BaseModel):
    """Up to index value ``max`` (inclusive), hedge ``ratio``."""

    model_config = _STRICT
    max: float
    ratio: float = Field(ge=0, le=2)


class VolBand(BaseModel):
    """Up to annualised volatility ``max_vol``, hedge ``ratio``."""

    model_config = _STRICT
    max_vol: float = Field(gt=0)
    ratio: float = Field(ge=0, le=2)


class EventEntry(BaseModel):
    """Around ``date`` (``before_days`` … ``after_days``), hedge ``ratio``."""

    model_config = _STRICT
    date: IsoDate
    ratio: float = Field(ge=0, le=2)
    before_days: int = Field(default=3, ge=0, le=3650)
    after_days: int = Field(default=7, ge=0, le=3650)


_POLICY_FIELDS: dict[str, set[str]] = {
    "static": {"ratio", "band"},
    "drift_band": {"ratio", "band"},
    "calendar": {"ratio", "every_days"},
    "schedule": {"ratio", "band", "schedule"},
    "fear_greed": {"ratio", "band", "table"},
    "volatility": {"ratio", "band", "bands", "vol_days"},
    "funding_aware": {
        "ratio",
        "band",
        "lookback_days",
        "cost_threshold_8h",
        "rich_threshold_8h",
        "cut",
        "boost",
        "min_ratio",
        "max_ratio",
    },
    "trend": {"band", "sma_days", "ratio_on", "ratio_off"},
    "events": {"ratio", "band", "events"},
    "beta": {"ratio", "band", "window_days"},
}


class PolicyModel(BaseModel):
    """A hedge policy; which fields apply depends on ``kind`` (others are errors)."""

    model_config = _STRICT
    kind: Literal[
        "static",
        "drift_band",
        "calendar",
        "schedule",
        "fear_greed",
        "volatility",
        "funding_aware",
        "trend",
        "events",
        "beta",
    ] = "static"
    ratio: float = Field(default=0.5, ge=0, le=2)
    band: float = Field(default=0.10, ge=0, lt=1)
    every_days: int = Field(default=30, ge=1, le=3650)
    schedule: list[ScheduleEntry] | None = None
    table: list[TableEntry] | None = None
    bands: list[VolBand] | None = None
    vol_days: int = Field(default=30, ge=5, le=3650)
    lookback_days: int = Field(default=7, ge=1, le=3650)
    cost_threshold_8h: float = Field(default=0.0001, ge=0, le=0.05)
    rich_threshold_8h: float = Field(default=0.0005, ge=0, le=0.05)
    cut: float = Field(default=0.7, ge=0, le=2)
    boost: float = Field(default=1.2, ge=0, le=2)
    min_ratio: float = Field(default=0.0, ge=0, le=2)
    max_ratio: float = Field(default=1.5, ge=0, le=2)
    sma_days: int = Field(default=50, ge=2, le=3650)
    ratio_on: float = Field(default=1.0, ge=0, le=2)
    ratio_off: float = Field(default=0.0, ge=0, le=2)
    events: list[EventEntry] | None = None
    window_days: int = Field(default=180, ge=30, le=3650)

    @model_validator(mode="after")
    def _fields_of_kind(self) -> PolicyModel:
        allowed = _POLICY_FIELDS[self.kind] | {"kind"}
        extra = sorted(set(self.model_fields_set) - allowed)
        if extra:
            raise ValueError(
                f"`{extra[0]}` does not apply to policy kind {self.kind} (it takes "
                f"{', '.join(sorted(allowed - {'kind'}))})"
            )
        needs = {"schedule": "schedule", "events": "events"}
        if self.kind in needs and not getattr(self, needs[self.kind]):
            raise ValueError(f"policy kind {self.kind} needs `{needs[self.kind]}`")
        if self.kind == "fear_greed" and self.table is not None:
            _check_fear_greed_table(self.table)
        if self.kind == "volatility" and self.bands is not None:
            _check_vol_bands(self.bands)
        if self.kind == "schedule" and self.schedule:
            seen: dict[date, int] = {}
            for i, e in enumerate(self.schedule):
                if e.start in seen:
                    raise ValueError(
                        f"`schedule[{i}].from` ({e.start}) repeats `schedule[{seen[e.start]}].from`: "
                        "two entries cannot start the same day"
                    )
                seen[e.start] = i
        if self.kind == "funding_aware":
            _check_funding_aware(self)
        return self


def _check_fear_greed_table(table: list[TableEntry]) -> None:
    """A Fear & Greed table covers 0–100: upper bounds strictly increasing, the first >= 0, the last >= 100."""
    if not table:
        raise ValueError("`table` must list at least one entry (upper bounds covering 0–100)")
    if table[0].max < 0:
        raise ValueError(f"`table[0].max` must be >= 0 (the first entry applies from 0), was {table[0].max:g}")
    for i in range(1, len(table)):
        if table[i].max <= table[i - 1].max:
            raise ValueError(
                f"`table[{i}].max` must be above `table[{i - 1}].max` ({table[i - 1].max:g}): upper bounds "
                f"strictly increase, was {table[i].max:g}"
            )
    last = len(table) - 1
    if table[last].max < 100:
        raise ValueError(
            f"`table[{last}].max` must be >= 100 so the table covers the index up to 100, was {table[last].max:g}"
        )


def _check_vol_bands(bands: list[VolBand]) -> None:
    """Volatility bands: upper bounds strictly increasing (a volatility above the last is reported as a fallback)."""
    if not bands:
        raise ValueError("`bands` must list at least one band")
    for i in range(1, len(bands)):
        if bands[i].max_vol <= bands[i - 1].max_vol:
            raise ValueError(
                f"`bands[{i}].max_vol` must be above `bands[{i - 1}].max_vol` ({bands[i - 1].max_vol:g}): upper "
                f"bounds strictly increase, was {bands[i].max_vol:g}"
            )


def _check_funding_aware(p: PolicyModel) -> None:
    """``cut`` <= 1 <= ``boost``, ``min_ratio`` <= ``ratio`` <= ``max_ratio``, rich threshold >= cost threshold."""
    if p.cut > 1:
        raise ValueError(f"`cut` must be <= 1 (it lowers the ratio when the short pays funding), was {p.cut:g}")
    if p.boost < 1:
        raise ValueError(f"`boost` must be >= 1 (it raises the ratio when the short is paid), was {p.boost:g}")
    if not p.min_ratio <= p.ratio <= p.max_ratio:
        raise ValueError(
            f"`ratio` must lie in [`min_ratio`, `max_ratio`] = [{p.min_ratio:g}, {p.max_ratio:g}], was {p.ratio:g}"
        )
    if p.rich_threshold_8h < p.cost_threshold_8h:
        raise ValueError(
            f"`rich_threshold_8h` must be >= `cost_threshold_8h` ({p.cost_threshold_8h:g}), was {p.rich_threshold_8h:g}"
        )


class CostsModel(BaseModel):
    """Trading costs: fees default to the instrument's; ``fills`` says which rate every fill pays."""

    model_config = _STRICT
    fills: Literal["taker", "maker"] = "taker"
    maker_fee: float | None = Field(default=None, ge=-0.001, le=0.01)
    taker_fee: float | None = Field(default=None, ge=0, le=0.01)
    slippage_bps: float = Field(default=2.0, ge=0, le=500)


class MarginRunModel(BaseModel):
    """Margin handling: top-ups from a reserve, and what happens after a liquidation."""

    model_config = _STRICT
    top_up: bool = False
    top_up_level: float = Field(default=0.5, gt=0, lt=1)
    reopen_after_days: int | None = Field(default=None, ge=1)


class FundingRunModel(BaseModel):
    """Funding: history of the hedge contract from the store, else the assumed constant rate."""

    model_config = _STRICT
    history: bool = True
    assumed_rate_8h: float = Field(default=0.0001, ge=-0.05, le=0.05)
    series: str | None = None  # `source:symbol` to use another contract's history, e.g. binance:BTC/USDT:USDT


class DefiRunModel(BaseModel):
    """Assumptions of a backtest of DeFi positions: the fee APR every pool position earns (0.15 = 15% a year)."""

    model_config = _STRICT
    fee_apr: float = Field(ge=0, le=5)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            extra = sorted(str(k) for k in data if k != "fee_apr")
            if extra:
                raise ValueError(f"unknown key `{extra[0]}` (it takes fee_apr, e.g. `defi: {{fee_apr: 0.15}}`)")
        return data


class RollRunModel(BaseModel):
    """Roll policy of a dated-futures hedge (``roll:``): buy the near contract back and sell the next listed one
    ``days_before_expiry`` days before each delivery (usecases/backtest_futures.py)."""

    model_config = _STRICT
    days_before_expiry: int = Field(ge=1, le=365)
    into: Literal["next"] = "next"


class RunFile(BaseModel):
    """A backtest run: portfolio (path or inline), period, step, hedge overrides, policy, costs, margin, funding,
    and the DeFi assumptions (``defi:``)."""

    model_config = _STRICT
    name: str | None = None
    portfolio: str | dict[str, Any]
    start: IsoDate
    end: IsoDate
    step: Literal["1d", "8h"] = "1d"
    hedge: dict[str, Any] = Field(default_factory=dict)
    policy: PolicyModel = Field(default_factory=PolicyModel)
    costs: CostsModel = Field(default_factory=CostsModel)
    margin: MarginRunModel = Field(default_factory=MarginRunModel)
    funding: FundingRunModel = Field(default_factory=FundingRunModel)
    defi: DefiRunModel | None = None
    roll: RollRunModel | None = None  # dated-futures hedges only

    @field_validator("portfolio")
    @classmethod
    def _portfolio_given(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and not value:
            raise ValueError("must be a portfolio file path or an inline portfolio mapping, was ''")
        return value

    @field_validator("hedge")
    @classmethod
    def _hedge_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        # the overrides are merged into the portfolio's block later; their keys and types are checked now
        try:
            HedgeModel.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise _At(("hedge", *_loc_parts(tuple(err.get("loc", ())), value)), _message(err)) from None
        return value

    @model_validator(mode="after")
    def _period(self) -> RunFile:
        if self.end <= self.start:
            raise _At(("end",), f"`end` ({self.end}) must be after `start` ({self.start})")
        return self

    @field_validator("policy")
    @classmethod
    def _schedule_in_force(cls, p: PolicyModel, info: ValidationInfo) -> PolicyModel:
        """A schedule without a base ``ratio`` must have an entry in force at the run's start."""
        start = info.data.get("start")
        if p.kind == "schedule" and p.schedule and "ratio" not in p.model_fields_set and start is not None:
            first = min(range(len(p.schedule)), key=lambda i: p.schedule[i].start)  # type: ignore[index]
            if p.schedule[first].start > start:
                raise ValueError(
                    f"`schedule[{first}].from` ({p.schedule[first].start}) is after `start` ({start}): "
                    "no schedule entry is in force at the start; add an entry from the start, or set "
                    "`policy.ratio` for the days before the first entry"
                )
        return p


def parse_run(doc: Any, source: str) -> RunFile:
    """Validate a parsed run document; ConfigError names ``source``, the line and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: must be a YAML mapping with `portfolio:`, `start:` and `end:`, was {_kind_of(doc)}"
        )
    try:
        return RunFile.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(exc, doc, source) from None


def read_yaml(path: str | Path, what: str = "a YAML file") -> tuple[Any, bytes]:
    """Parse a YAML file strictly (see :mod:`perphedge.files`); returns the document and the raw bytes (for hashing).

    ConfigError, one line naming the file, for a missing path, a directory, a binary or non-UTF-8
    file, an empty one, malformed YAML, a key given twice (with its line) or a non-ISO date.
    """
    from perphedge.files import read_yaml as _read

    return _read(path, what)


# --------------------------------------------------------------------------------------------------
# Book files (`perphedge book`, design docs/design/book.md §3)

_DURATION = re.compile(r"^([1-9][0-9]{0,6})([smhd])$")
_DURATION_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
#: Longest duration a book file may give (a year).
MAX_DURATION_S = 366 * 86400


def parse_duration(value: Any) -> int:
    """``"<int>(s|m|h|d)"`` → seconds (``15m`` → 900); anything else is refused (ValueError naming the form)."""
    if not isinstance(value, str):
        raise ValueError(f'must be a duration such as "15m", "1h" or "30s", was {_shown(value)}')
    m = _DURATION.match(value.strip())
    if not m:
        raise ValueError(f'must be a duration: a whole number and one of s, m, h, d (e.g. "15m"), was "{value}"')
    seconds = int(m.group(1)) * _DURATION_S[m.group(2)]
    if seconds > MAX_DURATION_S:
        raise ValueError(f'must be at most 366d, was "{value}"')
    return seconds


Duration = Annotated[str, BeforeValidator(lambda v: (parse_duration(v), v.strip())[1])]

_SECRET_NAME = re.compile(r"(key|secret|password|passphrase|token)", re.IGNORECASE)
#: An asset code as a mapping key (``balances:``, ``prices:``): letters and digits, e.g. USDT, 1000PEPE.
_ASSET_CODE = re.compile(r"[A-Za-z0-9]{1,20}")
#: An exchange name as the bundled specs spell it (lower case).
_EXCHANGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,31}")
#: An instrument id ``exchange:SYMBOL``.
_INSTRUMENT_ID = re.compile(r"[a-z][a-z0-9_]{0,31}:[A-Za-z0-9][A-Za-z0-9_./-]{0,63}")
_WEBHOOK = re.compile(r"(https?)://([^/?#\s@]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?([/?#]\S*)?")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def book_asset_code(value: str) -> str:
    """An asset code of a paper balance (``usdt`` → ``USDT``); ValueError naming the rule otherwise."""
    code = value.strip().upper()
    if not _ASSET_CODE.fullmatch(code):
        raise ValueError(f"asset code must be 1 to 20 letters or digits (e.g. USDT), was {value!r}")
    return code


def _exchange_name(value: str, what: str = "an exchange name") -> str:
    text = value.lower()
    if not _EXCHANGE_NAME.fullmatch(text):
        raise ValueError(f"must be {what} such as binance or bybit (letters, digits, _), was {value!r}")
    return text


def _url_origin(url: str) -> str:
    """``scheme://host`` of a URL, for messages (the path and query of a webhook often hold its token)."""
    m = re.match(r"^([A-Za-z][A-Za-z0-9+.-]*)://([^/?#@\s]*@)?([^/?#\s]*)", url)
    return f"{m.group(1)}://{m.group(3)}" if m else "a URL without a scheme"


def _account_name(value: str) -> str:
    if not re.fullmatch(r"[A-Za-z0-9_.-]{1,32}", value):
        raise ValueError(
            f"must be 1 to 32 letters, digits, `_`, `.` or `-` (it names the account in orders and the "
            f"journal), was {value!r}"
        )
    return value


class PaperAccountModel(BaseModel):
    """A simulated account on ``exchange``'s instruments with starting ``balances`` (asset → units)."""

    model_config = _STRICT
    name: str
    kind: Literal["paper"]
    exchange: str
    balances: dict[str, float]
    overdraft: bool = False

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _account_name(value)

    @field_validator("exchange")
    @classmethod
    def _lower(cls, value: str) -> str:
        return _exchange_name(value)

    @field_validator("balances")
    @classmethod
    def _balances(cls, value: dict[str, float]) -> dict[str, float]:
        if not value:
            raise ValueError("must give at least one starting balance, e.g. {USDT: 20000}")
        seen: dict[str, str] = {}
        for asset, amount in value.items():
            try:
                code = book_asset_code(asset)
            except ValueError as exc:
                raise _At((asset,), str(exc)) from None
            if code in seen:
                raise _At((asset,), f"`{asset}` and `{seen[code]}` are the same asset: give {code} once")
            seen[code] = asset
            if not 0 < amount <= MAX_VALUE_USD:
                raise _At((asset,), f"starting balance of {asset} must be > 0 and <= {MAX_VALUE_USD:g}, was {amount!r}")
        return {k.strip().upper(): v for k, v in value.items()}

    @property
    def venue(self) -> str:
        """The exchange of the instruments this account holds (as the bundled specs spell it)."""
        return self.exchange

    def holds(self, exchange: str, kind: str) -> bool:
        """Whether a leg on an instrument of ``exchange`` (bundled-spec name) and ``kind`` (linear|inverse) can be
        held here: a paper account holds every instrument of its exchange."""
        del kind
        return exchange == self.exchange


#: Exchange account → (the exchange of the instruments it holds, as the bundled specs spell it; their kinds).
EXCHANGE_ACCOUNT_VENUES: dict[str, tuple[str, tuple[str, ...]]] = {
    "binance_usdm": ("binance", ("linear",)),
    "binance_coinm": ("binance", ("inverse",)),
    "bybit": ("bybit", ("linear", "inverse")),
    "okx": ("okx", ("linear", "inverse")),
    "hyperliquid": ("hyperliquid", ("linear",)),
}
#: The name of an environment variable (``key_env``, ``secret_env``, ``password_env``).
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
#: A keyring service name.
KEYRING_SERVICE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@/-]{0,127}")
_ENV_FIELDS = ("key_env", "secret_env", "password_env")


def looks_like_a_key(text: str) -> bool:
    """Whether ``text``, given where a variable NAME belongs, looks like a key or secret itself: 24+ hex digits, or
    16+ characters mixing letters and digits without the ``_`` that separates the words of variable names."""
    t = text.strip()
    if len(t) >= 24 and re.fullmatch(r"(0[xX])?[0-9A-Fa-f]+", t):
        return True
    return len(t) >= 16 and "_" not in t and any(c.isdigit() for c in t) and any(c.isalpha() for c in t)


def _env_name(value: Any) -> Any:
    """A variable name, checked without ever echoing the value (it may be a key pasted in the wrong place)."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise ValueError(
            f"must be the NAME of an environment variable (text such as BINANCE_KEY), was {_kind_of_value(value)} "
            "(not shown)"
        )
    text = value.strip()
    if looks_like_a_key(text):
        raise ValueError(
            f"must be the NAME of an environment variable (such as BINANCE_KEY), not the key itself: the value "
            f"({len(text)} characters, not shown) looks like a key; export it as a variable and give its name"
        )
    if not ENV_NAME.fullmatch(text):
        raise ValueError(
            f"must be the NAME of an environment variable: a letter or `_`, then letters, digits or `_`, at most 128 "
            f"(such as BINANCE_KEY), was {len(text)} characters that are not one (not shown, in case it is a key)"
        )
    return text


def _kind_of_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return "null" if value is None else type(value).__name__


class KeyringModel(BaseModel):
    """``keyring: {service: NAME}``: the OS keyring's entries (NAME, ``key``), (NAME, ``secret``) and, for okx,
    (NAME, ``password``)."""

    model_config = _STRICT
    service: str

    @field_validator("service")
    @classmethod
    def _service(cls, value: str) -> str:
        if not KEYRING_SERVICE.fullmatch(value):
            raise ValueError(
                "must be a keyring service name: a letter or digit, then letters, digits, `_`, `.`, `:`, `@`, `/` or "
                f"`-`, at most 128 (such as perphedge-binance), was {len(value)} characters that are not one"
            )
        return value


class ExchangeAccountModel(BaseModel):
    """A live account on ``exchange``, reached through ccxt with credentials from the environment or the OS keyring.

    Never a key in the file: ``key_env`` / ``secret_env`` (/ ``password_env``, okx's passphrase) name environment
    variables, or ``keyring: {service: NAME}`` names keyring entries; both are read when the client is built. For
    hyperliquid the "key" is the wallet address and the "secret" its private key. ``read_only`` (the default)
    never sends an order; ``sandbox`` uses the venue's testnet/demo endpoints; ``margin_mode`` is the mode the book
    expects the venue to use (the account checks the venue's).
    """

    model_config = _STRICT
    name: str
    kind: Literal["exchange"]
    exchange: str
    key_env: str | None = None
    secret_env: str | None = None
    password_env: str | None = None
    keyring: KeyringModel | None = None
    sandbox: bool = False
    read_only: bool = True
    bybit_account: Literal["unified", "classic"] | None = None
    margin_mode: Literal["isolated", "cross"] = "isolated"

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        return _account_name(value)

    @field_validator("exchange", mode="before")
    @classmethod
    def _exchange(cls, value: Any) -> Any:
        choices = ", ".join(EXCHANGE_ACCOUNT_VENUES)
        if not isinstance(value, str) or value.strip().lower() not in EXCHANGE_ACCOUNT_VENUES:
            hint = ""
            if isinstance(value, str) and value.strip().lower() in ("binance", "binanceusdm", "binancecoinm"):
                hint = " (binance_usdm: USDⓈ-M linear perpetuals; binance_coinm: COIN-M inverse)"
            shown = repr(value[:40]) if isinstance(value, str) else _shown(value)
            raise ValueError(f"must be one of {choices}{hint}, was {shown}")
        return value.strip().lower()

    @field_validator(*_ENV_FIELDS, mode="before")
    @classmethod
    def _env(cls, value: Any) -> Any:
        return _env_name(value)

    @model_validator(mode="before")
    @classmethod
    def _bybit_default(cls, data: Any) -> Any:
        if isinstance(data, dict) and data.get("exchange") == "bybit" and "bybit_account" not in data:
            return {**data, "bybit_account": "unified"}
        return data

    @model_validator(mode="after")
    def _credentials(self) -> ExchangeAccountModel:
        env = {f: getattr(self, f) for f in _ENV_FIELDS if getattr(self, f) is not None}
        if self.keyring is not None and env:
            raise _At(
                (next(iter(env)),),
                "give the credentials from ONE source: `key_env`/`secret_env` (environment variables) or `keyring` "
                "(the OS keyring), not both",
            )
        if self.keyring is None:
            if not env:
                raise _At(
                    ("key_env",),
                    "is required: name the environment variables that hold the API key and secret with `key_env` "
                    "and `secret_env` (e.g. key_env: BINANCE_KEY), or give `keyring: {service: NAME}`; never the "
                    "keys themselves",
                )
            for f in ("key_env", "secret_env"):
                if f not in env:
                    other = "secret_env" if f == "key_env" else "key_env"
                    raise _At((f,), f"is required with `{other}` (the API key and its secret are both needed)")
            if self.key_env == self.secret_env:
                raise _At(("secret_env",), f"must name another variable than `key_env` ({self.key_env})")
            if self.exchange == "okx" and self.password_env is None:
                raise _At(("password_env",), "is required for okx: the variable holding the API passphrase")
            if self.password_env is not None and self.password_env in (self.key_env, self.secret_env):
                raise _At(("password_env",), "must name another variable than `key_env` and `secret_env`")
        if self.password_env is not None and self.exchange != "okx":
            raise _At(
                ("password_env",),
                f"applies to okx only (its API passphrase); {self.exchange} takes a key and a secret: remove it",
            )
        if self.bybit_account is not None and self.exchange != "bybit":
            raise _At(
                ("bybit_account",),
                f"applies to bybit only (unified or classic account); remove it for {self.exchange}",
            )
        return self

    @property
    def venue(self) -> str:
        """The exchange of the instruments this account holds (as the bundled specs spell it: binance, bybit...)."""
        return EXCHANGE_ACCOUNT_VENUES[self.exchange][0]

    @property
    def instrument_kinds(self) -> tuple[str, ...]:
        """The instrument kinds (linear, inverse) this account trades."""
        return EXCHANGE_ACCOUNT_VENUES[self.exchange][1]

    def holds(self, exchange: str, kind: str) -> bool:
        """Whether a leg on an instrument of ``exchange`` (bundled-spec name) and ``kind`` can be held here."""
        return exchange == self.venue and kind in self.instrument_kinds


#: An account of a book: ``kind: paper`` (simulated) or ``kind: exchange`` (live, through ccxt).
AccountModel = Annotated[PaperAccountModel | ExchangeAccountModel, Field(discriminator="kind")]


class FeedModel(BaseModel):
    """Where the book's prices come from: the market ``store``, ``live`` public tickers, or the ``portfolio``
    file's own prices (offline demo and tests)."""

    model_config = _STRICT
    kind: Literal["store", "live", "portfolio"] = "store"
    source: str = "binance"
    store: str | None = Field(default=None, min_length=1)  # market store path; default: the CLI's --store

    @field_validator("source")
    @classmethod
    def _source(cls, value: str) -> str:
        return _exchange_name(value, "a source name")


class LimitsModel(BaseModel):
    """Limits checked on the whole rebalance before anything is sent; a breach refuses all of it."""

    model_config = _STRICT
    max_order_usd: float | None = Field(default=None, gt=0, le=MAX_VALUE_USD)
    max_turnover_usd_per_day: float | None = Field(default=None, gt=0, le=MAX_VALUE_USD)
    max_leverage: float | None = Field(default=None, ge=1, le=200)
    min_liquidation_distance: float | None = Field(default=None, gt=0, le=100)
    instruments: list[str] = Field(default_factory=list, max_length=256)

    @field_validator("instruments")
    @classmethod
    def _instruments(cls, value: list[str]) -> list[str]:
        seen: dict[str, int] = {}
        for i, ident in enumerate(value):
            if not _INSTRUMENT_ID.fullmatch(ident):
                raise _At((i,), f"must be an instrument id `exchange:SYMBOL` such as binance:BTCUSDT, was {ident!r}")
            key = ident.lower()
            if key in seen:
                raise _At((i,), f"{ident} is already `instruments[{seen[key]}]`: give each instrument once")
            seen[key] = i
        return value


class AlertsModel(BaseModel):
    """Thresholds; an alert fires once per episode and re-arms after crossing back past ``rearm``."""

    model_config = _STRICT
    liquidation_distance_below: float | None = Field(default=0.30, gt=0, le=100)
    ratio_off_by: float | None = Field(default=0.15, gt=0, le=2)
    funding_cost_8h_above: float | None = Field(default=0.0003, ge=0, le=0.05)
    feed_stale_after: Duration = "15m"
    order_rejected: bool = True
    rearm: float = Field(default=0.8, gt=0, lt=1)
    webhook: str | None = None
    # live accounts: perphedge's liquidation price vs the venue's, in ticks of the instrument
    liquidation_mismatch_ticks: float | None = Field(default=5.0, gt=0, le=1e9)

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if value is None:
            return None
        origin = _url_origin(value)
        m = re.fullmatch(
            r"(https?)://([^/?#\s@]+@)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(:[0-9]{1,5})?([/?#]\S*)?", value
        )
        if m is None or len(value) > 2000:
            raise ValueError(
                f"must be an http:// or https:// URL with a host and no spaces (at most 2000 characters), "
                f"was {origin}/..."
            )
        if m.group(4) and not 0 < int(m.group(4)[1:]) < 65536:
            raise ValueError(f"port must be 1 to 65535, was {origin}")
        if m.group(2):
            raise ValueError(
                "a user name or password in the URL (`user:pass@host`) is a secret written in the file: give the "
                "receiver a token in its path or query instead, or put the URL behind a local relay"
            )
        return value


class ExecutionModel(BaseModel):
    """How orders go out on exchange accounts (paper accounts fill at market whatever is set here).

    ``order_type: limit`` sends a marketable limit order at the decision's price moved by ``limit_offset_bps``
    against us (a sell at ref · (1 − offset), a buy at ref · (1 + offset), rounded to the tick in our favour's
    opposite direction), so a fast market cannot fill it worse than that. ``lookup_settle``: after an order's
    answer was lost, the time between the two lookups by client id before it is declared never received.
    """

    model_config = _STRICT
    order_type: Literal["market", "limit"] = "market"
    limit_offset_bps: float = Field(default=10.0, ge=0, le=1000)
    lookup_settle: Duration = "10s"


#: Hedge fields a book takes from elsewhere: giving them under the book's `hedge:` is refused, not ignored.
_BOOK_HEDGE_IGNORED = {
    "ratio": "the book's target ratio is its policy's: set `policy.ratio`",
    "funding_rate_8h": "the book's assumed funding rate is `funding.assumed_rate_8h`",
}
#: Days a book's ``policy_origin`` may be (the first bitcoin block to the end of 2099).
BOOK_FIRST_DAY = date(2009, 1, 3)
BOOK_LAST_DAY = date(2099, 12, 31)


class BookFile(BaseModel):
    """A book: holdings (portfolio), the hedge and its policy, accounts, limits and alerts."""

    model_config = _STRICT
    book: Literal[1]
    id: str
    name: str | None = None
    portfolio: str | dict[str, Any]
    hedge: dict[str, Any] = Field(default_factory=dict)
    step: Literal["1d", "8h"] = "1d"
    policy: PolicyModel = Field(default_factory=PolicyModel)
    policy_origin: IsoDate | None = None
    decide: Literal["close", "every_tick"] = "close"
    costs: CostsModel = Field(default_factory=CostsModel)
    margin: MarginRunModel = Field(default_factory=MarginRunModel)
    funding: FundingRunModel = Field(default_factory=FundingRunModel)
    feed: FeedModel = Field(default_factory=FeedModel)
    accounts: list[AccountModel]
    limits: LimitsModel = Field(default_factory=LimitsModel)
    alerts: AlertsModel = Field(default_factory=AlertsModel)
    execution: ExecutionModel = Field(default_factory=ExecutionModel)
    store: str | None = Field(default=None, min_length=1)

    @field_validator("book", mode="before")
    @classmethod
    def _version(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, int) or value != 1:
            raise ValueError(f"must be 1 (the book file format version), was {_shown(value)}")
        return value

    @field_validator("id", mode="before")
    @classmethod
    def _id(cls, value: Any) -> Any:
        hint = ' (quote it: id: "01234567")' if isinstance(value, int | float) and not isinstance(value, bool) else ""
        if not isinstance(value, str) or not re.fullmatch(r"[0-9a-f]{8}", value.strip()):
            raise ValueError(
                f"must be 8 lower-case hex digits, written by `book init` and never edited, was {_shown(value)}{hint}"
            )
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and (not value or len(value) > 200 or _CONTROL.search(value)):
            raise ValueError(f"must be 1 to 200 characters without control characters, was {value[:60]!r}")
        return value

    @field_validator("accounts")
    @classmethod
    def _accounts_count(
        cls, value: list[PaperAccountModel | ExchangeAccountModel]
    ) -> list[PaperAccountModel | ExchangeAccountModel]:
        if not 1 <= len(value) <= 16:
            raise ValueError(f"must list 1 to 16 accounts, lists {len(value)}")
        return value

    @field_validator("portfolio")
    @classmethod
    def _portfolio_given(cls, value: str | dict[str, Any]) -> str | dict[str, Any]:
        if isinstance(value, str) and not value:
            raise ValueError("must be a portfolio file path or an inline portfolio mapping, was ''")
        if isinstance(value, dict):  # an inline portfolio is checked now, with its path in the message
            try:
                PortfolioFile.model_validate(value)
            except ValidationError as exc:
                err = exc.errors()[0]
                cause = (err.get("ctx") or {}).get("error")
                loc = _loc_parts(tuple(err.get("loc", ())), value)
                if isinstance(cause, _At):
                    loc = loc[:-1] + cause.loc if loc and loc[-1] == cause.loc[0] else loc + cause.loc
                raise _At(("portfolio", *loc), _message(err)) from None
        return value

    @field_validator("hedge")
    @classmethod
    def _hedge_fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        try:
            HedgeModel.model_validate(value)
        except ValidationError as exc:
            err = exc.errors()[0]
            raise _At(("hedge", *_loc_parts(tuple(err.get("loc", ())), value)), _message(err)) from None
        for key, instead in _BOOK_HEDGE_IGNORED.items():
            if key in value:  # a book would silently ignore it: the policy and `funding:` decide
                raise _At(
                    ("hedge", key),
                    f"does not apply to a book (it would be ignored): {instead}, was {_shown(value[key])}",
                )
        return value

    @field_validator("policy_origin")
    @classmethod
    def _origin_bounds(cls, value: date | None) -> date | None:
        if value is not None and not BOOK_FIRST_DAY <= value <= BOOK_LAST_DAY:
            raise ValueError(
                f"must be from {BOOK_FIRST_DAY} (the first bitcoin block) to {BOOK_LAST_DAY}, was {value.isoformat()}"
            )
        return value

    @model_validator(mode="after")
    def _accounts_unique(self) -> BookFile:
        seen: dict[str, int] = {}
        for i, acc in enumerate(self.accounts):
            key = acc.name.lower()
            if key in seen:
                j = seen[key]
                raise _At(
                    ("accounts", i, "name"),
                    f"`{acc.name}` is already `accounts[{j}]` ({self.accounts[j].name}; names are compared "
                    "without regard to case)",
                )
            seen[key] = i
        return self


def _secret_literals(doc: Any, path: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
    """The path of the first key that names a secret and holds a literal value (``*_env`` names are fine).

    Text under such a key is always refused; a number is refused too, unless the key is an upper-case asset
    code (``balances: {KEY: 100}`` is the coin KEY, not an API key).
    """
    if isinstance(doc, dict):
        for k, v in doc.items():
            if (
                isinstance(k, str)
                and _SECRET_NAME.search(k)
                and not k.endswith("_env")
                and k != "keyring"
                and (
                    isinstance(v, str)
                    or (isinstance(v, int | float) and not (k.isupper() and _ASSET_CODE.fullmatch(k)))
                )
            ):
                return (*path, k)
            found = _secret_literals(v, (*path, k))
            if found:
                return found
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            found = _secret_literals(v, (*path, i))
            if found:
                return found
    return None


def parse_book(doc: Any, source: str) -> BookFile:
    """Validate a parsed book document; ConfigError names ``source``, the line and the field.

    A key that names a secret (``api_key``, ``secret``, ``password``…) with a literal value is refused
    before anything else: keys come from the environment or the keyring, never from files.
    """
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: must be a YAML mapping with `book: 1`, `id:`, `portfolio:` and `accounts:`, was {_kind_of(doc)}"
        )
    secret = _secret_literals(doc)
    if secret is not None:
        from perphedge.files import line_of

        line = line_of(doc, secret)
        at = f"line {line}: " if line else ""
        raise ConfigError(
            f"{source}: {at}field `{_loc(secret)}`: a secret written in a file is refused: keys come from the "
            "environment or the keyring (name the variable with `key_env` / `secret_env`), never from files"
        )
    try:
        return BookFile.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(exc, doc, source) from None


# --------------------------------------------------------------------------------------------------
# Cross-margin account files (`perphedge calc --account FILE`, issue 13)

#: Venues of a cross account file (perphedge.core.cross.CrossVenue values).
CROSS_VENUES = ("binance_usdm", "binance_coinm", "bybit_unified", "bybit_classic", "okx", "hyperliquid")
#: Most positions one account file may hold.
MAX_ACCOUNT_POSITIONS = 200


class AccountPositionModel(BaseModel):
    """One position of a cross account: instrument, side, contracts, entry, mark, optional tier override."""

    model_config = _STRICT
    instrument: str = Field(min_length=3)
    side: Literal["long", "short"]
    contracts: float = Field(gt=0, le=MAX_QUANTITY)
    entry: float = Field(ge=MIN_PRICE_USD, le=MAX_PRICE_USD)
    mark: float = Field(ge=MIN_PRICE_USD, le=MAX_PRICE_USD)
    mmr: float | None = Field(default=None, gt=0, lt=1)
    maintenance_amount: float | None = Field(default=None, ge=0, le=MAX_VALUE_USD)

    @model_validator(mode="after")
    def _amount_needs_rate(self) -> AccountPositionModel:
        if self.maintenance_amount is not None and self.mmr is None:
            raise _At(("maintenance_amount",), "give `mmr` with it (the maintenance amount belongs to a rate)")
        return self


class CrossAccountFile(BaseModel):
    """A cross-margined account: ``venue``, ``wallet_balance`` (settle asset) and ``positions``."""

    model_config = _STRICT
    venue: Literal["binance_usdm", "binance_coinm", "bybit_unified", "bybit_classic", "okx", "hyperliquid"]
    wallet_balance: float = Field(gt=0, le=MAX_VALUE_USD)
    positions: list[AccountPositionModel]

    @field_validator("positions")
    @classmethod
    def _positions_count(cls, value: list[AccountPositionModel]) -> list[AccountPositionModel]:
        if not value:
            raise ValueError("must list at least one position")
        if len(value) > MAX_ACCOUNT_POSITIONS:
            raise ValueError(f"must list at most {MAX_ACCOUNT_POSITIONS} positions, lists {len(value)}")
        return value


def parse_account(doc: Any, source: str) -> CrossAccountFile:
    """Validate a parsed cross-account document; ConfigError names ``source``, the line and the field."""
    if not isinstance(doc, dict):
        raise ConfigError(
            f"{source}: must be a YAML mapping with `venue:`, `wallet_balance:` and `positions:`, was {_kind_of(doc)}"
        )
    try:
        return CrossAccountFile.model_validate(doc)
    except ValidationError as exc:
        raise _invalid(exc, doc, source) from None


def load_account_file(path: str | Path) -> tuple[CrossAccountFile, Any]:
    """Read and validate a cross-account YAML file; returns the model and the parsed document (for lines)."""
    doc, _ = read_yaml(path, "a cross-account file")
    return parse_account(doc, str(path)), doc
