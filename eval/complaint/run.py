"""The complaint detector's language part on the labelled customer sentences.

    .venv/bin/python eval/complaint/run.py [--set heldout|tune|FILE.csv] [--sweep] [--json]

Each row of the set (`text,label`, label `complaint` or `neutral`) is scored by
`ivr.nlu.complaint.ComplaintLanguage`; the script prints precision, recall and F1 of each
class and every miss with its score, cues and meaning margin. The tune part is the
detector's own examples (ivr/nlu/complaint_examples.csv): `--set tune` scores each of its
sentences against the others (leave-one-out), as the threshold was chosen. `--sweep`
prints the figures at other thresholds (on the tune part only: a threshold is never chosen
on the held-out set). Exit status 0 when precision and recall of `complaint` are
both at least 90 %, else 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from ivr.nlu.complaint import EXAMPLES_FILE, THRESHOLD, ComplaintLanguage, Heard, examples

HERE = Path(__file__).resolve().parent
LABELS = ("complaint", "neutral")
TARGET = 0.9


@dataclass(frozen=True)
class Row:
    text: str
    label: str


def load(path: Path) -> list[Row]:
    with path.open(newline="") as f:
        rows = [Row(r["text"].strip(), r["label"].strip()) for r in csv.DictReader(f)]
    bad = sorted({r.label for r in rows} - set(LABELS))
    if bad:
        raise SystemExit(f"{path}: unknown labels {bad} (use {', '.join(LABELS)})")
    return rows


def figures(rows: list[Row], said: list[bool]) -> dict[str, dict[str, float | int]]:
    """Per class: precision, recall, F1 and support (`said[i]`: row i called a complaint)."""
    out: dict[str, dict[str, float | int]] = {}
    for label in LABELS:
        want = [r.label == label for r in rows]
        got = [s if label == "complaint" else not s for s in said]
        tp = sum(w and g for w, g in zip(want, got, strict=True))
        p = tp / sum(got) if sum(got) else 0.0
        r = tp / sum(want) if sum(want) else 0.0
        f1 = 2 * p * r / (p + r) if p + r else 0.0
        out[label] = {"precision": round(p, 4), "recall": round(r, 4), "f1": round(f1, 4),
                      "support": sum(want)}  # fmt: skip
    return out


def report(name: str, rows: list[Row], heard: list[Heard]) -> dict[str, object]:
    said = [h.complaint for h in heard]
    per_class = figures(rows, said)
    misses = [
        {"text": r.text, "label": r.label, "score": h.score, "cues": list(h.cues),
         "margin": h.margin}
        for r, h in zip(rows, heard, strict=True)
        if h.complaint != (r.label == "complaint")
    ]  # fmt: skip
    return {"set": name, "rows": len(rows), "threshold": THRESHOLD, "classes": per_class,
            "misses": misses}  # fmt: skip


def show(out: dict[str, object]) -> None:
    print(f"set {out['set']}: {out['rows']} sentences, threshold {out['threshold']}")
    classes = out["classes"]
    assert isinstance(classes, dict)
    print(f"{'class':<10} {'precision':>9} {'recall':>7} {'f1':>6} {'n':>4}")
    for label, f in classes.items():
        print(f"{label:<10} {f['precision']:>9.1%} {f['recall']:>7.1%} {f['f1']:>6.3f}"
              f" {f['support']:>4}")  # fmt: skip
    misses = out["misses"]
    assert isinstance(misses, list)
    print(f"misses ({len(misses)}):")
    for m in misses:
        kind = "missed complaint" if m["label"] == "complaint" else "false alarm"
        print(f"  {kind:<16} {m['score']:+.2f} margin {m['margin']:+.3f}"
              f" cues {','.join(m['cues']) or '-'}: {m['text']}")  # fmt: skip


def leave_one_out(rows: list[Row]) -> list[Heard]:
    """Each of the detector's own examples heard by a detector without it."""
    labelled = examples()
    out = []
    for i, row in enumerate(rows):
        others = [x for j, x in enumerate(labelled) if j != i]
        assert labelled[i][0] == row.text
        out.append(ComplaintLanguage(others).hear(row.text))
    return out


def sweep(rows: list[Row], heard: list[Heard]) -> None:
    print("threshold  precision  recall  (complaint)")
    for t in [x / 20 for x in range(-4, 25)]:
        f = figures(rows, [h.score >= t for h in heard])["complaint"]
        print(f"{t:>9.2f}  {f['precision']:>9.1%}  {f['recall']:>6.1%}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", default="heldout", help="heldout, tune, or a CSV file (text,label)")
    ap.add_argument("--sweep", action="store_true", help="figures at other thresholds (tune)")
    ap.add_argument("--json", action="store_true", help="print the figures as JSON")
    args = ap.parse_args(argv)
    named = {"heldout": HERE / "heldout.csv", "tune": EXAMPLES_FILE}
    path = named.get(args.set, Path(args.set))
    rows = load(path)
    if path == EXAMPLES_FILE:
        heard = leave_one_out(rows)
    else:
        language = ComplaintLanguage()
        heard = [language.hear(r.text) for r in rows]
    out = report(args.set if args.set in named else path.stem, rows, heard)
    if args.json:
        print(json.dumps(out, indent=2))
    else:
        show(out)
    if args.sweep:
        sweep(rows, heard)
    classes = out["classes"]
    assert isinstance(classes, dict)
    c = classes["complaint"]
    return 0 if c["precision"] >= TARGET and c["recall"] >= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
