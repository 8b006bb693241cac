"""Measuring a grammar on a labelled set (``ivr grammar eval``): accuracy, per-intent
precision/recall/F1, the confusion matrix and the worst misses.

A set is a CSV file with the columns ``input,expected``: `input` is a WAV file (a path ending in
``.wav``, relative to the CSV's folder) or the literal text a caller says; `expected` is the
intent, or empty / ``none`` for an utterance that should be rejected. Audio goes through the
real recognizer as the dialog would listen at the target (see `ivr.tuning.probe`), then every
row through the real matcher.
"""

from __future__ import annotations

import asyncio
import csv
import io
import sys
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tqdm import tqdm

from ivr.asr.runner import AsrRunner
from ivr.audio.pcm import Audio, read_wav
from ivr.tuning.probe import Target, Verdict, hear, judge

NONE = "none"  # the label of a rejected utterance (no intent)


class SetError(ValueError):
    """A labelled set that cannot be read; the message names the file and line."""


@dataclass(frozen=True)
class Row:
    line: int  # in the CSV file
    input: str  # as written
    expected: str | None
    audio: Path | None  # the WAV file, for an audio row


@dataclass(frozen=True)
class Outcome:
    row: Row
    verdict: Verdict

    @property
    def expected(self) -> str:
        return self.row.expected or NONE

    @property
    def got(self) -> str:
        return self.verdict.intent or NONE

    @property
    def correct(self) -> bool:
        return self.expected == self.got

    def json(self) -> dict[str, Any]:
        return {
            "line": self.row.line,
            "input": self.row.input,
            "expected": self.expected,
            "got": self.got,
            "correct": self.correct,
            **self.verdict.json(),
        }


def read_set(path: Path) -> list[Row]:
    try:
        text = path.read_text(encoding="utf-8-sig")  # a spreadsheet's BOM is no column name
    except (OSError, UnicodeDecodeError) as exc:
        raise SetError(f"{path}: cannot read: {exc}") from None
    reader = csv.reader(io.StringIO(text))
    columns: dict[str, int] | None = None
    rows: list[Row] = []
    try:
        for cells in reader:
            if not any(c.strip() for c in cells) or cells[0].lstrip().startswith("#"):
                continue
            if columns is None:
                columns = {c.strip().lower(): i for i, c in enumerate(cells)}
                if not {"input", "expected"} <= set(columns):
                    raise SetError(
                        f"{path}:{reader.line_num}: the first row must name the columns "
                        f"input,expected (found: {','.join(cells)})"
                    )
                continue
            rows.append(_row(path, reader.line_num, cells, columns))
    except csv.Error as exc:
        raise SetError(f"{path}:{reader.line_num}: {exc}") from None
    if not rows:
        raise SetError(f"{path}: no rows (expected a header input,expected and labelled rows)")
    return rows


def _row(path: Path, line: int, cells: list[str], columns: dict[str, int]) -> Row:
    def cell(name: str) -> str:
        i = columns[name]
        return cells[i].strip() if i < len(cells) else ""

    given, expected = cell("input"), cell("expected")
    if not given:
        raise SetError(f"{path}:{line}: empty input")
    audio = None
    if given.lower().endswith(".wav"):
        audio = path.parent / given
        if not audio.is_file():
            raise SetError(f"{path}:{line}: no such audio file: {audio}")
    return Row(line, given, None if expected.lower() in ("", NONE) else expected, audio)


async def run(
    target: Target,
    rows: list[Row],
    asr: AsrRunner | None,
    concurrency: int = 1,
    progress: bool = True,
) -> list[Outcome]:
    """Every row through the recognizer (audio rows; `asr` may be None without any) and
    the matcher, `concurrency` rows at a time; a progress bar on stderr.

    One at a time, in order, is reproducible: the built-in engine's decoders carry a little
    state from one utterance to the next (a confidence can differ by 0.1), so which rows a
    decoder had before depends on scheduling when several run at once."""
    audio: dict[int, Audio] = {}
    for i, row in enumerate(rows):  # all read before any decoding: a bad file stops nothing
        if row.audio is not None:
            try:
                audio[i] = read_wav(row.audio)
            except ValueError as exc:
                raise SetError(f"line {row.line}: {exc}") from None
    if audio and asr is None:
        raise ValueError("audio rows need a recognizer")
    bar = tqdm(total=len(rows), desc="eval", unit="row", file=sys.stderr, disable=not progress)
    slots = asyncio.Semaphore(max(1, concurrency))

    async def one(i: int, row: Row) -> Outcome:
        if i in audio:
            assert asr is not None
            async with slots:
                result = await hear(asr, target, audio[i])
            verdict = judge(target, result.text, result.confidence)
        else:
            verdict = judge(target, row.input)
        bar.update()
        return Outcome(row, verdict)

    try:
        return list(await asyncio.gather(*(one(i, row) for i, row in enumerate(rows))))
    finally:
        bar.close()


@dataclass(frozen=True)
class Stats:
    precision: float
    recall: float
    f1: float
    support: int  # rows expecting this label


class Report:
    def __init__(self, target: Target, outcomes: list[Outcome]) -> None:
        self.target = target
        self.outcomes = outcomes

    @property
    def correct(self) -> int:
        return sum(o.correct for o in self.outcomes)

    @property
    def accuracy(self) -> float:
        return self.correct / len(self.outcomes) if self.outcomes else 0.0

    @cached_property
    def labels(self) -> list[str]:
        """Intents seen (expected or got) in name order, then `none`."""
        seen = {o.expected for o in self.outcomes} | {o.got for o in self.outcomes}
        return [*sorted(seen - {NONE}), NONE]

    @cached_property
    def stats(self) -> dict[str, Stats]:
        expected = Counter(o.expected for o in self.outcomes)
        got = Counter(o.got for o in self.outcomes)
        hits = Counter(o.expected for o in self.outcomes if o.correct)
        out = {}
        for label in self.labels:
            p = hits[label] / got[label] if got[label] else 0.0
            r = hits[label] / expected[label] if expected[label] else 0.0
            f1 = 2 * p * r / (p + r) if p + r else 0.0
            out[label] = Stats(p, r, f1, expected[label])
        return out

    @cached_property
    def confusion(self) -> list[list[int]]:
        """Rows: expected label; columns: the label got (both in `labels` order)."""
        index = {label: i for i, label in enumerate(self.labels)}
        matrix = [[0] * len(self.labels) for _ in self.labels]
        for o in self.outcomes:
            matrix[index[o.expected]][index[o.got]] += 1
        return matrix

    def misses(self) -> list[Outcome]:
        """Wrong answers, worst first: a wrong intent before a rejection (the caller is sent
        somewhere else), then the more confident."""
        wrong = [o for o in self.outcomes if not o.correct]
        return sorted(wrong, key=lambda o: (o.got == NONE, -o.verdict.score, o.row.line))

    def unknown_expected(self) -> list[str]:
        """Expected intents the target does not have (a typo in the set, or a removed intent)."""
        return sorted({o.expected for o in self.outcomes} - self.target.intents - {NONE})

    def json(self) -> dict[str, Any]:
        return {
            "target": self.target.name,
            "rows": len(self.outcomes),
            "correct": self.correct,
            "accuracy": round(self.accuracy, 4),
            "labels": {
                label: {
                    "precision": round(s.precision, 4),
                    "recall": round(s.recall, 4),
                    "f1": round(s.f1, 4),
                    "support": s.support,
                }
                for label, s in self.stats.items()
            },
            "confusion": {"labels": self.labels, "matrix": self.confusion},
            "misses": [o.json() for o in self.misses()],
            "unknown_expected": self.unknown_expected(),
            "results": [o.json() for o in self.outcomes],
        }

    def text(self, misses: int = 10) -> str:
        n = len(self.outcomes)
        audio = sum(o.row.audio is not None for o in self.outcomes)
        out = [
            f"{self.target.name}: {n} rows ({audio} audio, {n - audio} text)",
            f"accuracy: {self.accuracy:.3f} ({self.correct}/{n})",
        ]
        unknown = self.unknown_expected()
        if unknown:
            out.append(f"expected intents {self.target.name} does not have: {', '.join(unknown)}")
        out += ["", "per intent:"]
        rows = [["intent", "precision", "recall", "f1", "support"]]
        for label, s in self.stats.items():
            values = [f"{s.precision:.3f}", f"{s.recall:.3f}", f"{s.f1:.3f}", str(s.support)]
            rows.append([label, *values])
        out += _table(rows)
        out += ["", "confusion (rows: expected, columns: got):"]
        matrix = [["expected \\ got", *self.labels]]
        for label, counts in zip(self.labels, self.confusion, strict=True):
            matrix.append([label, *(str(c) if c else "." for c in counts)])
        out += _table(matrix)
        worst = self.misses()[:misses]
        if worst:
            out += ["", f"worst misses ({len(worst)} of {n - self.correct}):"]
            rows = [["expected", "got", "score", "text", "input"]]
            for o in worst:
                v = o.verdict
                rows.append([o.expected, o.got, f"{v.score:.2f}", repr(v.text), o.row.input])
            out += _table(rows)
        return "\n".join(out)


def _table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return ["  " + "  ".join(map(str.ljust, r, widths)).rstrip() for r in rows]
