"""Machine-readable figures: what every bench script writes with `--json PATH`.

Each script keeps printing its own human table; with `--json PATH` it also writes
one JSON document that bench/run collects from all scripts into one table
(bench/RESULTS.md). The document is

    {"script": "kernel", "title": "...",
     "figures": [{"figure": "...", "unit": "s" | "items/s" | "MiB" | "×",
                  "better": "lower" | "higher",
                  "ferrocell": number | null,
                  "peers": {"evcxr": number | null, ...},
                  "note": "..." | null}, ...],
     "missing": {"evcxr": "why its figures are null", ...},
     "about": {"evcxr": "what was measured: kernelspec, version", ...},
     "context": {"capacity": 1.4, ...}}

A null figure is one that was not measured; `missing` says why, per name
("ferrocell" or a peer's name). Numbers are in the unit given: seconds, items per
second, MiB, or a plain ratio.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

UNITS = ("s", "items/s", "MiB", "×")


def number(value) -> float | None:
    """A figure as JSON can hold it: a finite float, or None (not measured)."""
    if value is None:
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def figure(name: str, unit: str, better: str, ferrocell, peers: dict | None = None,
           note: str | None = None) -> dict:
    """One row: ferrocell's figure and each peer's, measured in the same run."""
    if unit not in UNITS:
        raise ValueError(f"unknown unit {unit!r}")
    if better not in ("lower", "higher"):
        raise ValueError(f"better must be 'lower' or 'higher', not {better!r}")
    return {"figure": name, "unit": unit, "better": better, "ferrocell": number(ferrocell),
            "peers": {peer: number(v) for peer, v in (peers or {}).items()}, "note": note}


def write(path: str | Path, script: str, title: str, figures: list[dict],
          missing: dict | None = None, about: dict | None = None,
          context: dict | None = None) -> None:
    """Writes the script's document to PATH (atomically: bench/run reads it afterwards)."""
    doc = {"script": script, "title": title, "figures": figures,
           "missing": missing or {}, "about": about or {}, "context": context or {}}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tmp.replace(path)
