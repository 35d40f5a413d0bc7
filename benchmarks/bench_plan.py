"""Wall time of `perphedge plan` on a 50-holding portfolio with given prices, against `import numpy`.

Goal (issue 9): the plan takes at most 3.5x the time of `python -c 'import numpy'` measured in the
same run. Run by hand: `make bench` (or `.venv/bin/python benchmarks/bench_plan.py [--runs N]`).

The cases are run round-robin (one run of each, N times) so that they share the machine's
conditions, and the table shows min / median / max wall time and the ratio of the medians to
`import numpy`, plus `python -c pass` (the floor any Python CLI pays). No timing is asserted in
the test suite.
"""

from __future__ import annotations

import argparse
import os
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


#: What a user's shell has: bytecode is cached after the first run (installed packages such as numpy ship
#: theirs; an editable perphedge writes its own on first import). A PYTHONDONTWRITEBYTECODE=1 in the
#: caller's environment would make every run compile perphedge from source and measure that instead.
ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_once(cmd: list[str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, check=False, env=ENV)
    elapsed = time.perf_counter() - t0
    if r.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed: {r.stderr}")
    return elapsed


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
            "python -c 'import numpy' (baseline)": [sys.executable, "-c", "import numpy"],
            "perphedge --help": [exe, "--help"],
            "plan 50 holdings, table": [exe, "plan", str(pf)],
            "plan 50 holdings, json": [exe, "plan", str(pf), "--format", "json"],
            "plan 50 holdings, --compare": [exe, "plan", str(pf), "--compare", "--format", "json"],
        }
        for cmd in cases.values():  # warm the file cache and the bytecode
            run_once(cmd)
        results: dict[str, list[float]] = {name: [] for name in cases}
        for _ in range(args.runs):
            for name, cmd in cases.items():
                results[name].append(run_once(cmd))
    baseline = statistics.median(results["python -c 'import numpy' (baseline)"])
    print(f"{'case':38} {'min s':>8} {'median s':>9} {'max s':>8} {'x numpy':>8}")
    for name, ts in results.items():
        med = statistics.median(ts)
        print(f"{name:38} {min(ts):8.3f} {med:9.3f} {max(ts):8.3f} {med / baseline:8.2f}")
    worst = max(statistics.median(results[n]) for n in ("plan 50 holdings, table", "plan 50 holdings, json"))
    ratio = worst / baseline
    print(
        f"\ngoal: plan on 50 holdings (table and json) <= 3.5x `import numpy`; measured {ratio:.2f}x "
        f"({worst:.3f} s / {baseline:.3f} s, medians of {args.runs} runs) -> {'OK' if ratio <= 3.5 else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
