"""One table of every benchmark figure, with its target and whether it was met.

Run last by `make bench` (`python -m benchmarks.summary`): reads what the benchmarks
wrote to benchmarks/results/ (run.json, scanning.json, webhooks.json, shapes.json,
scaleout.json), prints one table and writes results/latest.json with the figures and
the machine they were measured on. A figure is a measure, its value, the value it is
compared with in the same run (the reference) and their ratio; a target, where the
product sets one, says which way the ratio must go. A missing result file leaves its
rows out and says so.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results"
Figure = dict[str, Any]
# Files whose writers list their own figures (under "figures").
LISTED = ("shapes", "webhooks", "scaleout")


def figure(measure: str, value: float | None, reference: float | None = None, *, unit: str,
           reference_label: str = "", target: str | None = None, note: str = "") -> Figure:
    """One row: the ratio is value / reference; `target` is '≥ x' or '≤ x' on the ratio."""
    ratio = round(value / reference, 2) if value is not None and reference else None
    return {"measure": measure, "value": value, "unit": unit, "reference": reference,
            "reference_label": reference_label, "ratio": ratio, "target": target,
            "met": met(ratio, target), "note": note}


def met(ratio: float | None, target: str | None) -> bool | None:
    """Whether the ratio meets a '≥ x' or '≤ x' target; None without one of the two."""
    if ratio is None or not target:
        return None
    sign, _, bound = target.partition(" ")
    return ratio >= float(bound) if sign == "≥" else ratio <= float(bound)


def _get(data: Any, *keys: Any) -> Any:
    """data[k1][k2]…, or None where a part is missing."""
    for key in keys:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


def run_figures(run: dict[str, Any]) -> list[Figure]:
    """The submission, drain, outage and recovery figures of benchmarks.run."""
    product, baseline = run.get("product", {}), run.get("baseline", {})

    def both(*keys: str) -> tuple[Any, Any]:
        return _get(product, *keys), _get(baseline, *keys)

    tutorial = "tutorial app"
    outage, recovery = product.get("outage", {}), product.get("recovery", {})
    rows = [
        figure("POST req/s at c8, sink 0 s", *both("sink_0s", "post_c8", "rps"),
               unit="req/s", reference_label=tutorial, target="≥ 1.0"),
        figure("POST p50 at c1, sink 0 s", *both("sink_0s", "post_c1", "p50_ms"),
               unit="ms", reference_label=tutorial, target="≤ 1.5"),
        figure("CPU per submission at c8, sink 0 s", *both("sink_0s", "post_c8", "cpu_ms"),
               unit="ms", reference_label=tutorial,
               note="GET and POST, and for the product its two mails delivered in-process"),
        figure("POST req/s at c8, sink 2 s", *both("sink_2s", "post_c8", "rps"),
               unit="req/s", reference_label=tutorial),
        figure("drain after an outage, sink 0 s", _get(product, "drain_0s", "mails_per_s"),
               _get(run, "ceilings", "smtplib_persistent"), unit="mails/s",
               reference_label="one persistent smtplib connection", target="≥ 0.8"),
        figure("CPU per mail drained", _get(product, "drain_0s", "cpu_ms_per_mail"),
               unit="ms"),
        figure("POST req/s at c8 while SMTP refuses connections",
               _get(outage, "down_c8", "rps"), _get(outage, "healthy_c8", "rps"),
               unit="req/s", reference_label="the same, SMTP healthy", target="≥ 0.8"),
        figure("  the tutorial app, the same", _get(baseline, "outage", "down_c8", "rps"),
               _get(baseline, "outage", "healthy_c8", "rps"), unit="req/s",
               reference_label="the same, SMTP healthy", note="it loses those mails"),
        figure("recovery after connections refused", _get(outage, "recovery", "recovery_s"),
               _get(outage, "recovery", "prediction_s"), unit="s",
               reference_label="probe interval + backlog at the drain rate", target="≤ 2.0"),
        figure("recovery after a 451 outage", _get(recovery, "recovery_s"),
               _get(recovery, "prediction_s"), unit="s",
               reference_label="last retry + backlog at the drain rate", target="≤ 1.3"),
    ]
    return rows


def scanning_figures(scanning: dict[str, Any]) -> list[Figure]:
    """Drain and POST with clamd on, against off, with 1 MiB files."""
    cost = {row["size_mib"]: row for row in scanning.get("scan", [])}
    drain, post = scanning.get("drain", {}), scanning.get("post", {})
    return [
        figure("drain with 1 MiB files, clamd on", _get(drain, "on", "mails_per_s"),
               _get(drain, "off", "mails_per_s"), unit="mails/s", reference_label="clamd off",
               note="clamd shares the 2 cores with the workers"),
        figure("POST p50 with a 1 MiB file, clamd on", _get(post, "on", "p50_ms"),
               _get(post, "off", "p50_ms"), unit="ms", reference_label="clamd off",
               note="scanning runs in the delivery workers"),
        figure("clamd scan cost per MiB (16 MiB file)", _get(cost, 16, "ms_per_mib"), unit="ms"),
    ]


SOURCES: dict[str, Callable[[dict[str, Any]], list[Figure]]] = {
    "run": run_figures, "scanning": scanning_figures,
    **{name: (lambda data: list(data.get("figures", []))) for name in LISTED},
}


def gather(results: Path) -> tuple[list[tuple[str, list[Figure]]], list[str]]:
    """Each result file's figures, in SOURCES order, and the files that were missing."""
    found, missing = [], []
    for name, figures_of in SOURCES.items():
        path = results / f"{name}.json"
        if not path.exists():
            missing.append(path.name)
            continue
        found.append((name, figures_of(json.loads(path.read_text()))))
    return found, missing


def _cell(value: Any) -> str:
    """A table cell: '-' for a missing figure, 'met'/'MISSED' for a verdict."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "met" if value else "MISSED"
    return f"{value:g}" if isinstance(value, float) else str(value)


def print_table(groups: list[tuple[str, list[Figure]]]) -> None:
    """Every figure, grouped by benchmark."""
    print(f"\n{'measure':50} {'value':>9} {'unit':13} {'reference':>9}  {'ratio':>6} "
          f"{'target':>7} {'':6}  compared with")
    for name, rows in groups:
        print(f"-- {name}")
        for row in rows:
            print(f"{row['measure'][:50]:50} {_cell(row['value']):>9} {row['unit'][:13]:13} "
                  f"{_cell(row['reference']):>9}  {_cell(row['ratio']):>6} "
                  f"{_cell(row['target']):>7} {_cell(row['met']):6}  "
                  f"{row.get('reference_label', '')}")


def main() -> None:
    """Print the table; write results/latest.json."""
    groups, missing = gather(RESULTS)
    run = json.loads((RESULTS / "run.json").read_text()) if (RESULTS / "run.json").exists() else {}
    print_table(groups)
    if missing:
        print(f"\nnot measured (no result file): {', '.join(missing)}")
    output = RESULTS / "latest.json"
    output.write_text(json.dumps({
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": run.get("machine"), "missing": missing,
        "figures": {name: rows for name, rows in groups}}, indent=2, ensure_ascii=False) + "\n")
    verdicts = [row["met"] for _, rows in groups for row in rows if row["met"] is not None]
    print(f"\n{verdicts.count(True)} of {len(verdicts)} targets met; written to {output}")


if __name__ == "__main__":
    sys.exit(main())
