"""Audio for the hotline's labelled evaluation sets (see eval/README.md).

    .venv/bin/python eval/build.py --out DIR [--sets intents,yesno,when,digits,digits_text]
        [--snr 15] [--voices rms,slt,awb,kal] [--all-voices] [--jobs 2] [--seed 20240601]
    .venv/bin/python eval/build.py --measure CLEAN.wav NOISY.wav    # SNR of a built pair
    .venv/bin/python eval/build.py --assign-splits    # fill empty split cells of new rows

Every text row of eval/hotline/*.csv is spoken by a flite voice (voices rotate within each
label and split, so every voice says every intent; --all-voices: every row by every voice),
resampled to 8 kHz 16-bit mono, padded with a little silence and levelled; then, for each
--snr, mixed with seeded pink noise at that SNR over the speech's *active* frames. Digit
strings are joined from the Asterisk recordings (digits/N.wav). The CSVs written into DIR
have the columns `input,expected` that `ivr grammar eval` reads (`input`: a WAV path
relative to DIR), one per (set, split, condition), e.g. DIR/intents-heldout-noise15.csv.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import re
import shutil
import subprocess
import sys
import tempfile
from collections import defaultdict
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import numpy.typing as npt

from ivr.audio.pcm import Audio, float_to_pcm16, pcm16_to_float, read_wav, write_wav

HERE = Path(__file__).resolve().parent
SETS_DIR = HERE / "hotline"
SOUNDS_DIR = Path("/usr/share/asterisk/sounds/en_US_f_Allison")

RATE = 8000  # telephone audio
TUNE_SHARE = 0.40  # of each intent's rows (of each value set) in `tune`; the rest `heldout`
SPLIT_SALT = "hotline-eval-split-v1"
SPLITS = ("tune", "heldout")

DEFAULT_VOICES = ("rms", "slt", "awb", "kal")
DEFAULT_SNR = 15.0
DEFAULT_SEED = 20240601
TEXT_SETS = ("intents", "yesno", "when", "digits_text")
ALL_SETS = (*TEXT_SETS, "digits")
LABEL_COLUMN = {
    "intents": "intent",
    "yesno": "intent",
    "when": "expected",
    "digits_text": "expected",
}

LEAD_S = 0.30  # silence before the speech (noise in the noisy copies)
TRAIL_S = 0.50  # and after it
SPEECH_DBFS = -20.0  # active speech level of every clean clip
PEAK_LIMIT = 0.95  # of full scale; a louder clip (or mix) is scaled down as a whole
FRAME_MS = 20  # frames for the active-speech measure
ACTIVE_RANGE_DB = 35.0  # a frame is active within this many dB of the loudest frame
ACTIVE_FLOOR_DBFS = -70.0  # and above this absolute level

DIGIT_COUNT = 64
SHORT_GAP_S = (0.05, 0.15)  # between the digits of a string
PAUSE_GAP_S = (0.40, 0.70)  # the "with pauses" variant
OH_SHARE = 0.3  # zeros spoken with digits/oh.wav instead of digits/0.wav
DIGIT_MARGIN_S = 0.03  # kept around each recording's active part when it is trimmed

MANIFEST_COLUMNS = (
    "set split condition input expected text voice seconds snr_active_db snr_whole_db"
)

FloatArray = npt.NDArray[np.float64]


# --- the text sets ----------------------------------------------------------------------------


class SetError(ValueError):
    """A set file that cannot be used; the message names the file and line."""


def normalize(text: str) -> str:
    return " ".join(text.lower().split())


def split_hash(text: str) -> int:
    """A stable hash of a row's text (lower-cased, spaces collapsed): the order in which
    new rows are given a split."""
    digest = hashlib.sha256(f"{SPLIT_SALT}\0{normalize(text)}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def split_group(set_name: str, label: str) -> str:
    """Splits are balanced per intent in the intent sets; in the value sets (when,
    digits_text) nearly every row has its own value, so over the whole set."""
    return label if set_name in ("intents", "yesno") else ""


def assign_splits(rows: Sequence[tuple[str, str, str]], set_name: str) -> list[str]:
    """The split of each (text, label, split) row: a row that has one keeps it (the CSV's
    column is the record: a held-out row never moves to tune); rows with an empty split,
    taken in `split_hash` order, each go to `tune` while their group (`split_group`) has
    fewer than round(TUNE_SHARE × size) tune rows, else to `heldout`. Deterministic: the
    result depends only on the texts, labels and the splits already given."""
    out = [split for _, _, split in rows]
    for split in out:
        if split not in ("", *SPLITS):
            raise SetError(f"unknown split {split!r} (expected {' or '.join(SPLITS)})")
    tune: dict[str, int] = defaultdict(int)
    size: dict[str, int] = defaultdict(int)
    for (_, label, _), split in zip(rows, out, strict=True):
        if split:
            group = split_group(set_name, label)
            size[group] += 1
            tune[group] += split == "tune"
    new = sorted(
        (i for i, split in enumerate(out) if not split), key=lambda i: split_hash(rows[i][0])
    )
    for i in new:
        group = split_group(set_name, rows[i][1])
        size[group] += 1
        if tune[group] < round(TUNE_SHARE * size[group]):
            out[i] = "tune"
            tune[group] += 1
        else:
            out[i] = "heldout"
    return out


def fill_splits(name: str, sets_dir: Path = SETS_DIR) -> int:
    """Fill the empty split cells of eval/hotline/<name>.csv in place (`assign_splits`);
    the number of rows given a split."""
    path = sets_dir / f"{name}.csv"
    column = LABEL_COLUMN[name]
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or [])
        records = list(reader)
    if {"text", column, "split"} - set(fields):
        raise SetError(f"{path}: the columns must be text,{column},split")
    rows = [(r["text"].strip(), r[column].strip(), (r["split"] or "").strip()) for r in records]
    splits = assign_splits(rows, name)
    changed = sum(1 for (_, _, old), new in zip(rows, splits, strict=True) if old != new)
    for record, split in zip(records, splits, strict=True):
        record["split"] = split
    with path.open("w", encoding="utf-8", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows(records)
    return changed


@dataclass(frozen=True)
class Item:
    set: str
    text: str
    expected: str  # "" for out-of-scope
    split: str

    @property
    def label(self) -> str:
        return self.expected or "none"


def read_items(name: str, sets_dir: Path = SETS_DIR) -> list[Item]:
    """The rows of eval/hotline/<name>.csv (columns text,<label>,split), checked: no empty
    text, no repeated text, every split `tune` or `heldout`."""
    path = sets_dir / f"{name}.csv"
    column = LABEL_COLUMN[name]
    items: list[Item] = []
    seen: dict[str, int] = {}
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if reader.fieldnames is None or {"text", column, "split"} - set(reader.fieldnames):
            raise SetError(f"{path}: the columns must be text,{column},split")
        for row in reader:
            line = reader.line_num
            text, expected = row["text"].strip(), row[column].strip()
            split = (row["split"] or "").strip()
            if not text:
                raise SetError(f"{path}:{line}: empty text")
            if split not in SPLITS:
                raise SetError(
                    f"{path}:{line}: split {split!r}: run eval/build.py --assign-splits"
                    if not split
                    else f"{path}:{line}: unknown split {split!r}"
                )
            key = normalize(text)
            if key in seen:
                raise SetError(f"{path}:{line}: the same text as line {seen[key]}")
            seen[key] = line
            items.append(Item(name, text, expected, split))
    return items


def assign_voices(
    items: Sequence[Item], voices: Sequence[str], all_voices: bool = False
) -> list[tuple[Item, str]]:
    """Each item with the voice(s) that say it. Rotating: the k-th item of each (split,
    label) gets voices[k % n], so every voice says every label in every split; all_voices:
    every item once per voice."""
    if not voices:
        raise ValueError("no voices")
    if all_voices:
        return [(item, v) for item in items for v in voices]
    counter: dict[tuple[str, str], int] = defaultdict(int)
    out = []
    for item in items:
        key = (item.split, item.label)
        out.append((item, voices[counter[key] % len(voices)]))
        counter[key] += 1
    return out


def slug(label: str) -> str:
    """A label as a folder name: "monday 11:45" → "monday-11-45"."""
    return re.sub(r"[^a-z0-9_]+", "-", label.lower()).strip("-") or "none"


def text_id(text: str) -> str:
    return hashlib.sha256(normalize(text).encode()).hexdigest()[:10]


# --- signal helpers ---------------------------------------------------------------------------


def active_power(x: FloatArray, rate: int = RATE) -> float:
    """Mean power of the active frames: FRAME_MS frames within ACTIVE_RANGE_DB of the loudest
    frame (and above ACTIVE_FLOOR_DBFS). Pauses and padding do not dilute it."""
    n = rate * FRAME_MS // 1000
    count = len(x) // n
    if count == 0:
        return float(np.mean(x**2)) if len(x) else 0.0
    power = np.mean(x[: count * n].reshape(count, n) ** 2, axis=1)
    db = 10.0 * np.log10(np.maximum(power, 1e-20))
    active = (db > db.max() - ACTIVE_RANGE_DB) & (db > ACTIVE_FLOOR_DBFS)
    return float(np.mean(power[active])) if active.any() else 0.0


def level(x: FloatArray, dbfs: float = SPEECH_DBFS) -> FloatArray:
    """`x` with its active speech at `dbfs` (RMS re full scale), peaks kept below PEAK_LIMIT."""
    p = active_power(x)
    if p <= 0:
        raise ValueError("no speech in the clip")
    y = x * (10 ** (dbfs / 20) / np.sqrt(p))
    return _limit(y)


def _limit(x: FloatArray) -> FloatArray:
    peak = float(np.max(np.abs(x))) if len(x) else 0.0
    return x * (PEAK_LIMIT / peak) if peak > PEAK_LIMIT else x


def pad(x: FloatArray, lead: float = LEAD_S, trail: float = TRAIL_S) -> FloatArray:
    return np.concatenate([np.zeros(round(lead * RATE)), x, np.zeros(round(trail * RATE))])


def pink_noise(n: int, rng: np.random.Generator) -> FloatArray:
    """`n` samples of pink (1/f power) Gaussian noise with unit RMS: white noise shaped by
    1/sqrt(f) in the frequency domain (no DC)."""
    if n == 0:
        return np.zeros(0)
    spectrum = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(len(spectrum), dtype=np.float64)
    f[0] = np.inf
    pink = np.fft.irfft(spectrum / np.sqrt(f), n)
    return np.asarray(pink / np.sqrt(np.mean(pink**2)), dtype=np.float64)


def add_noise(speech: FloatArray, snr_db: float, seed: int) -> FloatArray:
    """`speech` plus pink noise over the whole clip, scaled so that the active speech power
    over the noise power is `snr_db`; the mix is scaled down as a whole if it would clip."""
    noise = pink_noise(len(speech), np.random.default_rng(seed))
    gain = np.sqrt(active_power(speech) / 10 ** (snr_db / 10))
    return _limit(speech + gain * noise)


def measure_snr(clean: Audio, noisy: Audio) -> tuple[float, float]:
    """(active, whole-clip) SNR in dB of a built pair, from the files alone: the noise is
    noisy − clean; the signal power is over the clean clip's active frames (`active_power`)
    or over the whole clip. A mix that was limited (peak at PEAK_LIMIT) was scaled as a
    whole: the clean clip is then scaled by a least-squares estimate first (approximate)."""
    c = pcm16_to_float(clean.samples).astype(np.float64)
    m = pcm16_to_float(noisy.samples).astype(np.float64)
    if len(c) != len(m):
        raise ValueError("the clips differ in length")
    if float(np.max(np.abs(m))) >= PEAK_LIMIT - 1e-3:
        c = c * float(np.dot(c, m) / max(float(np.dot(c, c)), 1e-20))
    noise_power = float(np.mean((m - c) ** 2))
    active = 10 * np.log10(active_power(c) / noise_power)
    whole = 10 * np.log10(float(np.mean(c**2)) / noise_power)
    return float(active), float(whole)


def trim(x: FloatArray, margin: float = DIGIT_MARGIN_S) -> FloatArray:
    """`x` cut to its active frames, `margin` seconds either side."""
    n = RATE * FRAME_MS // 1000
    count = len(x) // n
    power = np.mean(x[: count * n].reshape(count, n) ** 2, axis=1)
    db = 10.0 * np.log10(np.maximum(power, 1e-20))
    loud = np.flatnonzero(db > db.max() - ACTIVE_RANGE_DB)
    m = round(margin * RATE)
    return x[max(0, loud[0] * n - m) : min(len(x), (loud[-1] + 1) * n + m)]


# --- rendering (in worker processes) ----------------------------------------------------------


@dataclass(frozen=True)
class Job:
    clean: Path  # absolute output path
    noisy: tuple[tuple[float, Path], ...]  # (snr, path) per noise condition
    seed: int
    text: str = ""  # spoken by flite ...
    voice: str = ""
    recordings: tuple[Path, ...] = ()  # ... or these recordings joined
    gaps: tuple[float, ...] = ()  # seconds of silence between the recordings


@dataclass(frozen=True)
class Rendered:
    clean: Path
    seconds: float
    snr: dict[Path, tuple[float, float]] = field(default_factory=dict)


def flite(text: str, voice: str, workdir: Path) -> FloatArray:
    """`text` spoken by flite's `voice`, at RATE (soxr HQ), as floats."""
    raw = workdir / f"{text_id(text)}-{voice}.raw.wav"
    subprocess.run(
        ["flite", "-voice", voice, "-t", text, "-o", str(raw)], check=True, capture_output=True
    )
    try:
        audio = read_wav(raw, RATE)
    finally:
        raw.unlink(missing_ok=True)
    return pcm16_to_float(audio.samples).astype(np.float64)


def flite_voices() -> list[str]:
    """The voices this flite has (`flite -lv`)."""
    if shutil.which("flite") is None:
        raise RuntimeError("flite not found: install the Debian package flite")
    listing = subprocess.run(["flite", "-lv"], check=True, capture_output=True, text=True)
    return listing.stdout.split(":", 1)[-1].split()


def joined(recordings: Sequence[Path], gaps: Sequence[float]) -> FloatArray:
    """The recordings, each trimmed to its active part, with gaps[i] seconds of silence
    after the i-th."""
    parts: list[FloatArray] = []
    for i, path in enumerate(recordings):
        parts.append(trim(pcm16_to_float(read_wav(path, RATE).samples).astype(np.float64)))
        if i < len(recordings) - 1:
            parts.append(np.zeros(round(gaps[i] * RATE)))
    return np.concatenate(parts)


def render(job: Job) -> Rendered:
    with tempfile.TemporaryDirectory(prefix="evalbuild-") as tmp:
        if job.recordings:
            speech = joined(job.recordings, job.gaps)
        else:
            speech = flite(job.text, job.voice, Path(tmp))
    clean = level(pad(speech))
    job.clean.parent.mkdir(parents=True, exist_ok=True)
    clean_audio = Audio(float_to_pcm16(clean), RATE)
    write_wav(job.clean, clean_audio)
    snr = {}
    for db, path in job.noisy:
        noisy = Audio(float_to_pcm16(add_noise(clean, db, job.seed)), RATE)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_wav(path, noisy)
        snr[path] = measure_snr(clean_audio, noisy)
    return Rendered(job.clean, clean_audio.duration, snr)


# --- digit strings from the Asterisk recordings ----------------------------------------------


def digit_strings(count: int = DIGIT_COUNT, seed: int = DEFAULT_SEED) -> list[str]:
    """`count` distinct strings of 3–10 digits: a fixed few (leading 5, 6 and 0, repeated
    digits such as 112), then seeded random ones where a digit repeats the previous one a
    quarter of the time."""
    fixed = "112 555 1000 0800 5551234 600 0044 6611 999 41234 07700 5050".split()
    rng = np.random.default_rng(seed)
    out = list(dict.fromkeys(fixed))[:count]
    firsts = "5601234789"
    while len(out) < count:
        length = int(rng.integers(3, 11))
        digits = [firsts[len(out) % len(firsts)]]  # leading digits cycle: 5, 6, 0, 1, ...
        while len(digits) < length:
            repeat = rng.random() < 0.25
            digits.append(digits[-1] if repeat else str(int(rng.integers(0, 10))))
        s = "".join(digits)
        if s not in out:
            out.append(s)
    return out


def digit_recordings(digits: str, rng: np.random.Generator) -> tuple[Path, ...]:
    names = []
    for d in digits:
        names.append("oh" if d == "0" and rng.random() < OH_SHARE else d)
    return tuple(SOUNDS_DIR / "digits" / f"{n}.wav" for n in names)


# --- the build --------------------------------------------------------------------------------


def condition_name(snr: float | None) -> str:
    return "clean" if snr is None else f"noise{snr:g}"


@dataclass
class Row:
    """One output row: an audio file of one set, split and condition."""

    set: str
    split: str  # "" for the digit strings
    condition: str
    input: Path  # relative to the output folder
    expected: str
    text: str
    voice: str
    seconds: float = 0.0
    snr_active: float | None = None
    snr_whole: float | None = None


def stable_seed(seed: int, key: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{key}".encode()).digest()[:8], "big")


def plan(
    out: Path,
    sets: Sequence[str],
    voices: Sequence[str],
    snrs: Sequence[float],
    all_voices: bool,
    seed: int,
) -> tuple[list[Job], list[Row]]:
    """The jobs to render and the rows they give (clean and noisy)."""
    jobs: list[Job] = []
    rows: list[Row] = []

    def add(job: Job, row: Row) -> None:
        """`job` (its clean path and what to say) with a noisy copy per SNR, and its rows."""
        rel = job.clean.relative_to(out / "wav" / "clean")
        noisy = []
        rows.append(row)
        for db in snrs:
            cond = condition_name(db)
            path = out / "wav" / cond / rel
            noisy.append((db, path))
            rows.append(replace(row, condition=cond, input=path.relative_to(out)))
        jobs.append(replace(job, noisy=tuple(noisy), seed=stable_seed(seed, rel.as_posix())))

    for name in sets:
        if name == "digits":
            rng = np.random.default_rng(seed)
            strings = digit_strings(DIGIT_COUNT, seed)
            spoken = [digit_recordings(digits, rng) for digits in strings]  # same in both
            for variant, gap in (("digits", SHORT_GAP_S), ("digits-pauses", PAUSE_GAP_S)):
                for i, (digits, recs) in enumerate(zip(strings, spoken, strict=True)):
                    gaps = tuple(round(float(rng.uniform(*gap)), 3) for _ in recs[1:])
                    clean = out / "wav" / "clean" / variant / f"{i:02d}-{digits}.wav"
                    said = " ".join(p.stem for p in recs)
                    rel = clean.relative_to(out)
                    row = Row(variant, "", "clean", rel, digits, said, "allison")
                    add(Job(clean, (), 0, recordings=recs, gaps=gaps), row)
            continue
        for item, voice in assign_voices(read_items(name), voices, all_voices):
            clean = (
                out
                / "wav"
                / "clean"
                / name
                / slug(item.label)
                / f"{text_id(item.text)}-{voice}.wav"
            )
            row = Row(
                name, item.split, "clean", clean.relative_to(out), item.expected, item.text, voice
            )
            add(Job(clean, (), 0, text=item.text, voice=voice), row)
    return jobs, rows


def write_csvs(out: Path, rows: Iterable[Row], sets: Sequence[str]) -> list[Path]:
    """DIR/<set>[-<split>]-<condition>.csv (input,expected, plus text and voice), the
    literal-text twins DIR/<set>-<split>-text.csv, and DIR/manifest.csv with everything."""
    groups: dict[str, list[Row]] = defaultdict(list)
    for r in rows:
        groups["-".join(x for x in (r.set, r.split, r.condition) if x)].append(r)
    written = []
    for name, group in sorted(groups.items()):
        path = out / f"{name}.csv"
        with path.open("w", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["input", "expected", "text", "voice"])
            for r in group:
                w.writerow([r.input.as_posix(), r.expected, r.text, r.voice])
        written.append(path)
    for name in sets:
        if name == "digits":
            continue
        for split in SPLITS:
            path = out / f"{name}-{split}-text.csv"
            with path.open("w", encoding="utf-8", newline="") as f:
                w = csv.writer(f)
                w.writerow(["input", "expected"])
                for item in read_items(name):
                    if item.split == split:
                        w.writerow([item.text, item.expected])
            written.append(path)
    manifest = out / "manifest.csv"
    with manifest.open("w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(MANIFEST_COLUMNS.split())
        for r in rows:
            snr = ["" if v is None else f"{v:.2f}" for v in (r.snr_active, r.snr_whole)]
            cells = [r.set, r.split, r.condition, r.input.as_posix(), r.expected, r.text]
            w.writerow([*cells, r.voice, f"{r.seconds:.3f}", *snr])
    written.append(manifest)
    return written


def build(
    out: Path,
    sets: Sequence[str] = ALL_SETS,
    voices: Sequence[str] = DEFAULT_VOICES,
    snrs: Sequence[float] = (DEFAULT_SNR,),
    all_voices: bool = False,
    seed: int = DEFAULT_SEED,
    workers: int = 2,
    progress: bool = True,
) -> list[Row]:
    """Render every set into `out` and write its CSVs; the rows, with durations and SNRs."""
    unknown = set(sets) - set(ALL_SETS)
    if unknown:
        raise ValueError(
            f"unknown sets: {', '.join(sorted(unknown))} (known: {', '.join(ALL_SETS)})"
        )
    if any(s != "digits" for s in sets):
        known = flite_voices()
        missing = [v for v in voices if v not in known]
        if missing or not voices:
            raise ValueError(f"flite voices {missing or voices}: known {', '.join(known)}")
    if "digits" in sets and not (SOUNDS_DIR / "digits" / "0.wav").is_file():
        raise RuntimeError(f"no {SOUNDS_DIR}/digits: install asterisk-core-sounds-en-wav")
    out.mkdir(parents=True, exist_ok=True)
    jobs, rows = plan(out, sets, voices, snrs, all_voices, seed)
    by_path = {r.input: r for r in rows}
    done = 0
    with ProcessPoolExecutor(max_workers=max(1, workers)) as pool:
        for result in pool.map(render, jobs, chunksize=4):
            by_path[result.clean.relative_to(out)].seconds = result.seconds
            for path, (active, whole) in result.snr.items():
                r = by_path[path.relative_to(out)]
                r.seconds, r.snr_active, r.snr_whole = result.seconds, active, whole
            done += 1
            if progress and (done % 50 == 0 or done == len(jobs)):
                print(f"  {done}/{len(jobs)} clips", file=sys.stderr)
    write_csvs(out, rows, sets)
    return rows


def summarize(rows: Sequence[Row]) -> str:
    counts: dict[tuple[str, str, str], int] = defaultdict(int)
    snr: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        counts[(r.set, r.split, r.condition)] += 1
        if r.snr_active is not None:
            snr[r.condition].append(r.snr_active)
    lines = [
        f"{s}{'-' + sp if sp else ''}-{c}: {n} clips" for (s, sp, c), n in sorted(counts.items())
    ]
    for cond, values in sorted(snr.items()):
        v = np.array(values)
        lines.append(
            f"{cond}: active-speech SNR {v.mean():.2f} dB (min {v.min():.2f}, "
            f"max {v.max():.2f}, n={len(v)})"
        )
    return "\n".join(lines)


def _csv_list(text: str) -> list[str]:
    return [x.strip() for x in text.split(",") if x.strip()]


def _snr_list(text: str) -> list[float]:
    if text.strip().lower() in ("", "none", "off"):
        return []
    return [float(x) for x in _csv_list(text)]


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", type=Path, help="output folder for the WAVs and CSVs")
    p.add_argument("--sets", default=",".join(ALL_SETS), help=f"default: {','.join(ALL_SETS)}")
    p.add_argument(
        "--snr",
        default=f"{DEFAULT_SNR:g}",
        help="noise conditions in dB, comma-separated; 'none': clean only (default 15)",
    )
    p.add_argument("--voices", default=",".join(DEFAULT_VOICES), help="flite voices to rotate")
    p.add_argument("--all-voices", action="store_true", help="every row by every voice")
    p.add_argument("--seed", type=int, default=DEFAULT_SEED, help="noise and digit strings")
    p.add_argument("--jobs", type=int, default=2, help="worker processes (default 2)")
    p.add_argument(
        "--measure",
        nargs=2,
        type=Path,
        metavar=("CLEAN", "NOISY"),
        help="print the SNR of a built clean/noisy pair and exit",
    )
    p.add_argument(
        "--assign-splits",
        action="store_true",
        help="give the rows of eval/hotline/*.csv with an empty split one and exit",
    )
    args = p.parse_args(argv)
    if args.assign_splits:
        for name in TEXT_SETS:
            print(f"{name}: {fill_splits(name)} rows given a split")
        return 0
    if args.measure:
        clean, noisy = (read_wav(x) for x in args.measure)
        active, whole = measure_snr(clean, noisy)
        print(f"active-speech SNR {active:.2f} dB, whole-clip SNR {whole:.2f} dB")
        return 0
    if args.out is None:
        p.error("--out is required")
    try:
        rows = build(
            args.out,
            _csv_list(args.sets),
            _csv_list(args.voices),
            _snr_list(args.snr),
            args.all_voices,
            args.seed,
            args.jobs,
        )
    except (SetError, ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(summarize(rows))
    print(f"CSVs in {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
