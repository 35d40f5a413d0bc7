"""Wall time of `perphedge plan` on a 50-holding portfolio (goal: < 0.5 s, start to finish).

Run by hand: `make bench` (or `.venv/bin/python benchmarks/bench_plan.py [--runs N]`).
Prints a table of wall times over N runs and the ratio against a bare `python -c pass`
(the floor any Python CLI pays). No timing is asserted in the test suite.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ASSETS = ["BTC", "ETH", "SOL", "AVAX", "DOT", "LINK", "ADA", "UNI", "AAVE", "DOGE", "XRP", "BNB"]


def write_portfolio(path: Path, n: int = 50) -> None:
    lines = ["name: fifty holdings", "prices:"]
    names = ASSETS + [f"TOK{i:02d}" for i in range(n - len(ASSETS))]
    for i, a in enumerate(names):
        lines.append(f"  {a}: {60000 if a == 'BTC' else 10.0 + 7.3 * i:.2f}")
    lines.append("holdings:")
    for i, a in enumerate(names):
        group = "core" if i < 4 else "satellite"
        lines.append(f"  - {{asset: {a}, value_usd: {1000 + 137 * i}, group: {group}}}")
    lines.append("  - {asset: USDT, quantity: 25000}")
    lines += ["hedge:", "  ratio: 0.8", "  instrument: binance:BTCUSD_PERP", "  leverage: 2", "  collateral: buy"]
    path.write_text("\n".join(lines) + "\n")


def timed(cmd: list[str], runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        out.append(time.perf_counter() - t0)
        if r.returncode != 0:
            raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr}")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=15)
    args = ap.parse_args()
    exe = str(Path(sys.executable).parent / "perphedge")
    with tempfile.TemporaryDirectory() as tmp:
        pf = Path(tmp) / "fifty.yaml"
        write_portfolio(pf)
        cases = {
            "python -c pass (floor)": [sys.executable, "-c", "pass"],
            "perphedge --help": [exe, "--help"],
            "plan 50 holdings, table": [exe, "plan", str(pf)],
            "plan 50 holdings, json": [exe, "plan", str(pf), "--format", "json"],
            "plan 50 holdings, --compare": [exe, "plan", str(pf), "--compare", "--format", "json"],
        }
        results = {name: timed(cmd, args.runs) for name, cmd in cases.items()}
    floor = statistics.median(results["python -c pass (floor)"])
    print(f"{'case':34} {'min s':>8} {'median s':>9} {'max s':>8} {'x floor':>8}")
    for name, ts in results.items():
        med = statistics.median(ts)
        print(f"{name:34} {min(ts):8.3f} {med:9.3f} {max(ts):8.3f} {med / floor:8.1f}")
    goal = statistics.median(results["plan 50 holdings, table"])
    print(
        f"\ngoal: plan on 50 holdings < 0.500 s wall; measured median {goal:.3f} s -> "
        f"{'OK' if goal < 0.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
