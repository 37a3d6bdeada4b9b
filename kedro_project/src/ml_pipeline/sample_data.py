"""Synthetic churn-like customer data: numeric + categorical features, missing values, a real signal.

    python -m ml_pipeline.sample_data --rows 5000 --seed 7 --out churn.csv
    python -m ml_pipeline.sample_data --rows 5000 --seed 8 --drift --out churn_drifted.parquet

`--drift` shifts feature distributions (shorter tenure, higher charges, more support calls, mostly
month-to-month contracts paid by electronic check) while staying inside the reference ranges and category
sets: the drifted file passes validation but scores high drift.

`--concept-shift` keeps the feature distributions and changes what they mean: the signs of the contract,
tenure, charges, support-call and satisfaction effects are reversed. A model of the usual data is then
worse than chance on it — what retraining on new labels exists for.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

TARGET = "churn"
CONTRACTS = ["month-to-month", "one-year", "two-year"]
PAYMENTS = ["electronic-check", "mailed-check", "bank-transfer", "credit-card"]
INTERNET = ["dsl", "fiber", "none"]
PLANS = ["basic", "standard", "premium"]
REGIONS = ["north", "south", "east", "west"]


def generate(rows: int, seed: int = 0, drift: bool = False, target: str = TARGET,
             concept_shift: bool = False) -> pd.DataFrame:
    """`rows` customers; target `churn` ("yes"/"no") drawn from a logistic model of the features."""
    if rows < 0:
        raise ValueError("rows must be >= 0")
    rng = np.random.default_rng(seed)
    if drift:
        tenure = np.clip(rng.exponential(8.0, rows), 1, 60).round()
        monthly = np.clip(rng.normal(95.0, 12.0, rows), 25.0, 115.0)
        calls = np.clip(rng.poisson(3.0, rows), 0, 5)
        contract = rng.choice(CONTRACTS, rows, p=[0.85, 0.1, 0.05])
        payment = rng.choice(PAYMENTS, rows, p=[0.7, 0.1, 0.1, 0.1])
        internet = rng.choice(INTERNET, rows, p=[0.15, 0.8, 0.05])
        satisfaction = rng.choice([1, 2, 3, 4, 5], rows, p=[0.3, 0.3, 0.2, 0.1, 0.1]).astype(float)
        age = np.clip(rng.normal(32, 8, rows), 19, 80).round()
    else:
        tenure = np.clip(rng.exponential(24.0, rows), 0, 72).round()
        monthly = np.clip(rng.normal(65.0, 25.0, rows), 18.0, 120.0)
        calls = np.clip(rng.poisson(1.5, rows), 0, 12)
        contract = rng.choice(CONTRACTS, rows, p=[0.5, 0.3, 0.2])
        payment = rng.choice(PAYMENTS, rows, p=[0.35, 0.2, 0.25, 0.2])
        internet = rng.choice(INTERNET, rows, p=[0.35, 0.45, 0.2])
        satisfaction = rng.choice([1, 2, 3, 4, 5], rows, p=[0.08, 0.12, 0.3, 0.3, 0.2]).astype(float)
        age = np.clip(rng.normal(45, 15, rows), 18, 90).round()
    plan = rng.choice(PLANS, rows, p=[0.4, 0.4, 0.2])
    region = rng.choice(REGIONS, rows)
    paperless = rng.choice(["yes", "no"], rows, p=[0.6, 0.4])
    total = tenure * monthly * rng.uniform(0.9, 1.1, rows)
    data_gb = np.round(rng.lognormal(2.5, 0.8, rows), 2)

    reversible = (
        1.4 * (contract == "month-to-month") - 1.2 * (contract == "two-year")
        - 0.05 * tenure
        + 0.025 * (monthly - 65.0)
        + 0.45 * calls
        - 0.5 * (satisfaction - 3.0)
    )
    if concept_shift:  # mirrored around its mean: the same churn rate, the opposite reasons
        reversible = 2 * np.nanmean(reversible) - reversible
    logit = (
        -1.0
        + reversible
        + 0.7 * (internet == "fiber")
        + 0.6 * (payment == "electronic-check")
        - 0.01 * (age - 45.0)
    )
    churned = rng.random(rows) < 1.0 / (1.0 + np.exp(-logit))

    frame = pd.DataFrame({
        "customer_age": age,
        "tenure_months": tenure,
        "monthly_charges": monthly.round(2),
        "total_charges": total.round(2),
        "support_calls": calls.astype(float),
        "data_usage_gb": data_gb,
        "satisfaction_score": satisfaction,
        "contract": contract.astype(object),
        "payment_method": payment.astype(object),
        "internet_service": internet.astype(object),
        "plan": plan.astype(object),
        "region": region.astype(object),
        "paperless_billing": paperless.astype(object),
        target: np.where(churned, "yes", "no").astype(object),
    })
    # Missing values, as real exports have them (never in the target).
    for column, fraction in {"customer_age": 0.03, "total_charges": 0.02, "data_usage_gb": 0.05,
                             "satisfaction_score": 0.08, "internet_service": 0.01, "payment_method": 0.02}.items():
        frame.loc[rng.random(rows) < fraction, column] = np.nan
    return frame


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m ml_pipeline.sample_data", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=5000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--drift", action="store_true", help="shifted distributions that still pass validation")
    parser.add_argument("--concept-shift", action="store_true",
                        help="the same distributions, the relationship to the target reversed")
    parser.add_argument("--target", default=TARGET, help="name of the target column (default: churn)")
    parser.add_argument("--out", required=True, help="output file, .csv or .parquet")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.suffix.lower() not in (".csv", ".parquet"):
        parser.error("--out must end in .csv or .parquet")
    frame = generate(args.rows, args.seed, args.drift, args.target, concept_shift=args.concept_shift)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        frame.to_csv(out, index=False)
    print(f"wrote {len(frame)} rows to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
