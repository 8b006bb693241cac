"""The analytics reports as CSV, for spreadsheets: one table each, from the same dicts the
JSON API answers with (so the figures cannot differ), times as the reports write them (ISO
8601 in the service's zone).

* summary: `figure,value` rows (the window and channel, contact counts, containment,
  escalations by reason, handling time, survey, then `<channel>: <figure>` per channel);
* nodes: a row per node, the confidence histogram as ten columns;
* intents: a row per hour or day bucket, a column per topic (calls that asked for it);
* unrecognized: a row per node and utterance, with its newest example.

Text a spreadsheet would run as a formula (a cell starting with = + - @, a tab or a carriage
return: an unrecognized utterance is a caller's words) is written with a leading apostrophe.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterable, Sequence
from typing import Any, Literal

from ivr.analytics.report import CONFIDENCE_BUCKETS

Report = Literal["summary", "nodes", "intents", "unrecognized"]
REPORTS: tuple[Report, ...] = ("summary", "nodes", "intents", "unrecognized")
_FORMULA = ("=", "+", "-", "@", "\t", "\r")


def cell(value: Any) -> Any:
    """A value as a spreadsheet takes it: None empty, formulas defused."""
    if value is None:
        return ""
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")  # RFC 4180
    writer.writerow([cell(h) for h in header])
    writer.writerows([cell(v) for v in row] for row in rows)
    return out.getvalue()


def to_csv(report: Report, data: dict[str, Any]) -> str:
    """`data` (the report as the JSON API answers it) as CSV text."""
    if report == "summary":
        return _table(["figure", "value"], _summary(data))
    if report == "nodes":
        return _nodes(data)
    if report == "intents":
        return _intents(data)
    return _unrecognized(data)


def filename(report: Report, data: dict[str, Any]) -> str:
    """e.g. ivr-intents-2030-01-07T0900-2030-01-08T0900.csv (the window's local times)."""

    def stamp(at: str) -> str:
        return re.sub(r"[^0-9T-]", "", at[:16].replace(":", ""))

    return f"ivr-{report}-{stamp(data['since'])}-{stamp(data['until'])}.csv"


def _summary(d: dict[str, Any]) -> Iterable[tuple[str, Any]]:
    head = ("since", "until", "timezone", "channel", "contacts", "calls", "conversations")
    yield from ((k, d[k]) for k in (*head, "ended", "in_progress"))
    c = d["containment"]
    yield from ((k, c[k]) for k in ("contained", "abandoned", "escalated"))
    yield "containment_rate", c["rate"]
    for e in d["escalations"]:
        yield f"escalated: {e['reason']}", e["calls"]
    yield "average_handling_seconds", d["average_handling_seconds"]
    s = d["survey"]
    yield "survey_responses", s["responses"]
    yield "survey_average", s["average"]
    for score, n in enumerate(s["distribution"], 1):
        yield f"survey_score_{score}", n
    for row in d["channels"]:
        for k, v in row.items():
            if k != "channel":
                yield f"{row['channel']}: {k}", v


def _nodes(d: dict[str, Any]) -> str:
    fields = ["node", "turns", "inputs", "no_match", "no_input", "no_match_rate", "no_input_rate"]
    step = 1 / CONFIDENCE_BUCKETS
    bins = [f"confidence {i * step:.1f}-{(i + 1) * step:.1f}" for i in range(CONFIDENCE_BUCKETS)]
    rows = ([n[f] for f in fields] + n["confidence"] for n in d["nodes"])
    return _table(fields + bins, rows)


def _intents(d: dict[str, Any]) -> str:
    series = d["series"]
    rows = ([at] + [s["counts"][i] for s in series] for i, at in enumerate(d["buckets"]))
    return _table([d["bucket"]] + [s["intent"] for s in series], rows)


def _unrecognized(d: dict[str, Any]) -> str:
    header = ["node", "text", "count", "newest_at", "newest_call_id", "newest_seq"]
    rows = []
    for node in d["nodes"]:
        for u in node["utterances"]:
            newest = u["examples"][0] if u["examples"] else {}
            at, call_id, seq = newest.get("at"), newest.get("call_id"), newest.get("seq")
            rows.append([node["node"], u["text"], u["count"], at, call_id, seq])
    return _table(header, rows)
