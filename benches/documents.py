"""Deterministic, realistic pipeline documents for the atomicjson benchmarks.

Every document is built from a fixed seed, so two runs (and two machines) measure the same
input.  The shape is what the training pipeline writes to ``metadata.json`` / ``snapshot.json``:

* run metadata: ids, ``pandas.Timestamp`` (naive and tz-aware), ``Enum`` status and task,
  ``pathlib.Path`` artifacts, a nested ``config`` with hyper-parameters and feature lists;
* ``folds``: per-fold results with ``numpy`` scalars (``float64``, ``float32``, ``int64``,
  ``bool_``), train/valid windows as Timestamps, per-feature importance maps and ``numpy``
  arrays (learning curves, prediction samples);
* feature lists and ``set``s (selected / dropped features), per-feature statistics maps;
* a history of metric rows.

Sizes (of the canonical output, ``atomicjson.canonical_bytes``): ``small`` ~3 KB, ``medium``
~25 KB, ``large`` ~4 MB and ``huge`` ~200 MB (built only on request: it takes a few seconds
and ~1 GB of memory as Python objects is avoided by keeping most of its bulk in ``numpy``
arrays).

``plain(doc)`` is the plain-JSON variant (what ``sanitize()`` returns: dicts, lists, str,
int, float, bool, None), for the ``dumps`` / ``loads`` comparisons against ``json``.

Run ``python benches/documents.py`` to print the sizes.
"""

from __future__ import annotations

import os

# numpy's OpenBLAS starts a spinning worker thread per core at import; on a small shared machine
# they steal CPU from the code being measured. The benchmarks need no BLAS: one thread.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import enum
import random
import sys
from functools import lru_cache
from pathlib import Path
from typing import Any, Dict

import numpy as np
import pandas as pd

SEED = 20240617

#: name -> generator parameters; the canonical size each one aims at is in TARGET_BYTES.
PRESETS: Dict[str, Dict[str, int]] = {
    "small": dict(n_features=2, n_folds=1, curve_len=3, n_history=1, n_sample=2),
    "medium": dict(n_features=36, n_folds=3, curve_len=20, n_history=10, n_sample=10),
    "large": dict(n_features=4900, n_folds=5, curve_len=1500, n_history=1500, n_sample=2500),
    "huge": dict(n_features=60000, n_folds=10, curve_len=30000, n_history=30000,
                 n_sample=410000),
}

TARGET_BYTES = {"small": 3_000, "medium": 25_000, "large": 4_000_000, "huge": 200_000_000}

#: The sizes the quick benchmarks and the speed bars use, with their display labels.
LABELS = {"small": "3 KB", "medium": "25 KB", "large": "4 MB", "huge": "200 MB"}


class RunStatus(enum.Enum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"


class Task(enum.Enum):
    CLASSIFICATION = "binary_classification"
    REGRESSION = "regression"


class Stage(enum.IntEnum):
    SELECTION = 1
    TRAINING = 2
    EVALUATION = 3


_FAMILIES = ["price", "volume", "ret", "vol", "spread", "imb", "mom", "rsi", "macd", "beta",
             "corr", "skew", "kurt", "liq", "flow", "sent", "news", "earn", "div", "size"]
_WINDOWS = ["1d", "5d", "10d", "21d", "63d", "126d", "252d"]
_TRANSFORMS = ["raw", "z", "rank", "log", "diff", "ewm"]


def _feature_names(rng: random.Random, n: int):
    names = []
    seen = set()
    i = 0
    while len(names) < n:
        name = (f"{rng.choice(_FAMILIES)}_{rng.choice(_WINDOWS)}_{rng.choice(_TRANSFORMS)}"
                f"_{i:05d}")
        i += 1
        if name not in seen:
            seen.add(name)
            names.append(name)
    return names


def make_document(n_features: int, n_folds: int, curve_len: int, n_history: int,
                  n_sample: int, seed: int = SEED) -> Dict[str, Any]:
    """One run-metadata document; the same arguments always give the same document."""
    rng = random.Random(seed)
    nrng = np.random.default_rng(seed)
    features = _feature_names(rng, n_features)
    start = pd.Timestamp("2024-01-02 09:30:00")
    tz_start = pd.Timestamp("2024-01-02 09:30:00.123456", tz="UTC")

    config = {
        "model": {
            "type": "gradient_boosting",
            "learning_rate": 0.05,
            "n_estimators": 800,
            "max_depth": 7,
            "subsample": 0.8,
            "colsample_bytree": 0.6,
            "min_child_weight": 1e-3,
            "reg_lambda": 1.5,
            "early_stopping_rounds": 50,
            "seed": seed % 1000,
        },
        "data": {
            "source": Path("/data/warehouse/features/v3"),
            "start": start,
            "end": start + pd.Timedelta(days=730),
            "universe": "global_equities",
            "target": "fwd_ret_5d",
            "features": list(features),
            "excluded": (features[0], features[-1]),
        },
        "cv": {"n_folds": n_folds, "gap_days": 5, "embargo": np.int64(3),
               "scheme": "purged_walk_forward"},
        "task": Task.CLASSIFICATION,
        "stage": Stage.TRAINING,
    }

    folds = []
    for k in range(n_folds):
        f_start = start + pd.Timedelta(days=90 * k)
        imp = nrng.gamma(0.8, 1.0, size=n_features)
        imp = imp / imp.sum()
        folds.append({
            "fold": k,
            "train_start": f_start,
            "train_end": f_start + pd.Timedelta(days=365),
            "valid_start": tz_start + pd.Timedelta(days=90 * k + 370),
            "valid_end": tz_start + pd.Timedelta(days=90 * k + 460, hours=6, minutes=30),
            "n_train": np.int64(nrng.integers(100_000, 900_000)),
            "n_valid": int(nrng.integers(10_000, 90_000)),
            "converged": np.bool_(k % 3 != 2),
            "best_iteration": np.int32(nrng.integers(100, 800)),
            "scores": {
                "auc": np.float64(0.5 + nrng.random() * 0.2),
                "logloss": np.float32(0.6 + nrng.random() * 0.1),
                "accuracy": float(0.5 + nrng.random() * 0.1),
                "brier": np.float64(nrng.random() * 0.3),
                "sharpe": float(nrng.normal(1.0, 0.5)),
            },
            "feature_importance": {name: float(v) for name, v in zip(features, imp)},
            "gain_rank": {name: int(r) for name, r in
                          zip(features, np.argsort(-imp).argsort()[: n_features])},
            "learning_curve": nrng.normal(0.65, 0.02, size=curve_len),
            "prediction_sample": nrng.random(n_sample).astype(np.float32 if k % 2 else
                                                              np.float64),
            "top_features": [features[i] for i in np.argsort(-imp)[: min(20, n_features)]],
        })

    stats = {}
    for name in features:
        stats[name] = {
            "mean": float(nrng.normal()),
            "std": float(abs(nrng.normal(1.0, 0.3))),
            "missing_rate": round(float(nrng.random() * 0.05), 6),
            "n_unique": int(nrng.integers(2, 1_000_000)),
        }

    history = []
    for i in range(n_history):
        history.append({
            "step": i,
            "at": start + pd.Timedelta(minutes=7 * i),
            "train_loss": float(0.7 * 0.999 ** i + nrng.normal(0, 0.001)),
            "valid_loss": np.float64(0.71 * 0.9992 ** i + nrng.normal(0, 0.002)),
            "lr": 0.05 * 0.995 ** (i // 10),
            "status": RunStatus.RUNNING if i + 1 < n_history else RunStatus.COMPLETED,
        })

    selected = set(rng.sample(features, max(1, n_features // 2)))
    return {
        "run_id": f"run-{seed:08d}-{rng.getrandbits(32):08x}",
        "created_at": tz_start,
        "finished_at": tz_start + pd.Timedelta(hours=3, minutes=12, seconds=7, microseconds=5),
        "status": RunStatus.COMPLETED,
        "owner": "training-pipeline",
        "host": "node-07",
        "git_sha": "%040x" % rng.getrandbits(160),
        "note": "weekly retrain — Zürich desk, 95% CI ± 0.3",
        "artifacts": {
            "model": Path("/artifacts/models") / f"run-{seed}" / "model.bin",
            "metadata": Path("/artifacts/metadata.json"),
        },
        "config": config,
        "folds": folds,
        "feature_stats": stats,
        "selected_features": selected,
        "dropped_features": sorted(set(features) - selected),
        "feature_count": np.int64(n_features),
        "history": history,
        "summary": {
            "mean_auc": float(np.mean([float(f["scores"]["auc"]) for f in folds])),
            "max_drawdown": -0.0734,
            "turnover": np.float64(1.25e-3),
            "nan_metric": float("nan"),
            "pos_inf": float("inf"),
            "big_int": 2 ** 62 + 12345,  # within 64 bits: orjson refuses larger ints
            "tags": ("weekly", "prod", "gbm"),
        },
    }


@lru_cache(maxsize=None)
def document(name: str) -> Dict[str, Any]:
    """The named document (cached: do not mutate it)."""
    return make_document(**PRESETS[name])


@lru_cache(maxsize=None)
def plain(name: str) -> Any:
    """The plain-JSON variant of the named document: what ``sanitize()`` returns for it."""
    try:
        import atomicjson

        return atomicjson.sanitize(document(name))
    except Exception:  # pragma: no cover - fall back to the legacy oracle
        return _legacy().sanitize(document(name))


def _legacy():
    tests = Path(__file__).resolve().parents[1] / "tests"
    if str(tests) not in sys.path:
        sys.path.insert(0, str(tests))
    import legacy

    return legacy


def main() -> None:
    import atomicjson

    names = sys.argv[1:] or ["small", "medium", "large"]
    for name in names:
        n = len(atomicjson.canonical_bytes(document(name)))
        print(f"{name:7s} {LABELS[name]:>7s} target {TARGET_BYTES[name]:>12,d} B "
              f"canonical {n:>12,d} B ({n / TARGET_BYTES[name]:.2f}x)")


if __name__ == "__main__":
    main()
