"""The one error tree of perphedge.

::

    PerphedgeError                 base of every error perphedge raises on purpose
    ├── ConfigError                bad user input: a file, a field, a flag, an argument value
    ├── DataError                  market data missing, malformed or inconsistent
    ├── ExchangeError              an exchange (through ccxt) failed or answered nonsense
    ├── UnitMismatchError          two amounts in different assets were mixed
    └── InfeasibleHedgeError       the requested hedge cannot be built (rounds to zero,
                                   collateral short, 1x inverse on bought collateral, ...)

    PerphedgeWarning (UserWarning)
    ├── LeverageWarning            leverage above the prudent range for a hedge
    ├── LiquidationRiskWarning     liquidation price close to entry
    ├── RoundingWarning            lot rounding leaves a material residual
    └── AssumptionWarning          a value was assumed (funding rate, beta, price source)

Adapters (files, exchanges, CLI) re-raise library errors as one of these ``from exc``; the
CLI catches :class:`PerphedgeError` only and prints one line, exit code 2.
"""

from __future__ import annotations

__all__ = [
    "AssumptionWarning",
    "ConfigError",
    "DataError",
    "ExchangeError",
    "InfeasibleHedgeError",
    "LeverageWarning",
    "LiquidationRiskWarning",
    "PerphedgeError",
    "PerphedgeWarning",
    "RoundingWarning",
    "UnitMismatchError",
]


class PerphedgeError(Exception):
    """Base class of every error perphedge raises on purpose.

    ``exit_code`` is what the CLI exits with: 2 (your input or data) unless a subclass says otherwise."""

    exit_code = 2


class ConfigError(PerphedgeError, ValueError):
    """Bad user input: a file, a field, a flag or an argument value."""


class DataError(PerphedgeError):
    """Market data missing, malformed or inconsistent."""


class ExchangeError(PerphedgeError):
    """An exchange failed or answered something unusable."""


class UnitMismatchError(PerphedgeError, TypeError):
    """Two amounts in different assets (or units) were combined."""


class InfeasibleHedgeError(PerphedgeError):
    """The requested hedge cannot be built as asked."""


class PerphedgeWarning(UserWarning):
    """Base class of perphedge warnings."""


class LeverageWarning(PerphedgeWarning):
    """Leverage above the prudent range for a hedge."""


class LiquidationRiskWarning(PerphedgeWarning):
    """The liquidation price is close to the entry price."""


class RoundingWarning(PerphedgeWarning):
    """Rounding to whole lots leaves a material residual."""


class AssumptionWarning(PerphedgeWarning):
    """A value was assumed rather than measured."""
