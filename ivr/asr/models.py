"""Download and check official Vosk models.

`install_model()` fetches the official model index (JSON list of entries with `name`, `lang`,
`lang_text`, `version`, `size`, `size_text`, `url`, `md5`, `type`, `obsolete`), downloads the
named model's zip, verifies its md5, unpacks it safely and atomically to `data_dir/<name>/`.
Synchronous and standard-library only: it is a CLI action. `IVR_MODEL_INDEX_URL` overrides
the index URL (mirrors, tests).
"""

from __future__ import annotations

import difflib
import hashlib
import http.client
import json
import os
import shutil
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import IO, Any

from tqdm import tqdm

__all__ = [
    "DEFAULT_INDEX_URL",
    "INDEX_URL_ENV",
    "ModelError",
    "ModelInstallError",
    "check_vosk_model_dir",
    "install_model",
    "list_models",
]

DEFAULT_INDEX_URL = "https://alphacephei.com/vosk/models/model-list.json"
INDEX_URL_ENV = "IVR_MODEL_INDEX_URL"
DEFAULT_TIMEOUT = 30.0  # seconds per network operation (connect / each read), not in total
_CHUNK = 1 << 20


class ModelError(Exception):
    """A model directory is missing or is not a usable Vosk model."""


class ModelInstallError(ModelError):
    """Downloading or installing a model failed."""


def check_vosk_model_dir(path: Path) -> None:
    """Raise ModelError unless `path` looks like a Vosk model directory.

    Accepted layouts: `am/final.mdl` + `conf/` (current models), or `final.mdl` in the root
    (old models, which keep their .conf files in the root too).
    """
    if not path.exists():
        raise ModelError(f"Vosk model directory {path} does not exist")
    if not path.is_dir():
        raise ModelError(f"Vosk model path {path} is not a directory")
    if (path / "final.mdl").is_file():
        return
    if (path / "am" / "final.mdl").is_file():
        if (path / "conf").is_dir():
            return
        raise ModelError(f"{path} is not a Vosk model: has am/final.mdl but no conf/ directory")
    raise ModelError(
        f"{path} is not a Vosk model: missing am/final.mdl and conf/ "
        "(or final.mdl for the old layout)"
    )


def list_models(
    index_url: str | None = None, *, timeout: float = DEFAULT_TIMEOUT
) -> list[dict[str, Any]]:
    """Return the entries of the model index (`index_url`, else $IVR_MODEL_INDEX_URL, else the
    official index), as parsed from its JSON, obsolete ones included."""
    url = _index_url(index_url)
    with _open(url, timeout) as resp:
        raw = _read_all(resp, url)
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise ModelInstallError(f"model index at {url} is not valid JSON: {e}") from e
    if not isinstance(data, list) or not all(
        isinstance(m, dict) and isinstance(m.get("name"), str) for m in data
    ):
        raise ModelInstallError(
            f"model index at {url} is not a list of model entries with a 'name'"
        )
    return data


def install_model(
    name: str,
    data_dir: Path,
    *,
    index_url: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = False,
) -> Path:
    """Install the official Vosk model `name` to `data_dir/<name>/` and return that path.

    A valid model already there is returned without any network access, unless `force`.
    Raises ModelInstallError with a specific message on any failure; nothing is left behind
    in `data_dir` then, and an existing model is only replaced once the new one is ready.
    """
    if not name or name in (".", "..") or "/" in name or "\\" in name:
        raise ModelInstallError(f"invalid model name {name!r}")
    target = data_dir / name
    if target.exists() and not force:
        try:
            check_vosk_model_dir(target)
        except ModelError as e:
            raise ModelInstallError(f"{e}; use force to re-install it") from e
        return target

    index = _index_url(index_url)
    entry = _find_entry(name, index, timeout)
    url = urllib.parse.urljoin(index, str(entry.get("url") or ""))
    expected_md5 = str(entry.get("md5") or "").strip().lower()
    if not url.endswith(".zip") or not expected_md5:
        raise ModelInstallError(f"index entry for {name!r} lacks a .zip url or an md5: {entry}")

    data_dir.mkdir(parents=True, exist_ok=True)
    fd, part_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".zip.part", dir=data_dir)
    part = Path(part_name)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=data_dir))
    try:
        try:
            with os.fdopen(fd, "wb") as out:
                actual_md5 = _download(url, out, entry.get("size"), name, progress, timeout)
        except OSError as e:  # network errors are already ModelInstallError
            raise ModelInstallError(f"cannot write {part}: {e}") from e
        if actual_md5 != expected_md5:
            raise ModelInstallError(
                f"checksum mismatch for {url}: expected md5 {expected_md5}, got {actual_md5}"
            )
        _safe_unzip(part, tmp_dir, url)
        part.unlink()
        root = _model_root(tmp_dir)
        try:
            check_vosk_model_dir(root)
        except ModelError as e:
            raise ModelInstallError(f"archive {url} does not contain a Vosk model: {e}") from e
        try:
            _replace_dir(root, target)
        except OSError as e:
            raise ModelInstallError(f"cannot move the unpacked model to {target}: {e}") from e
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def _index_url(index_url: str | None) -> str:
    return index_url or os.environ.get(INDEX_URL_ENV) or DEFAULT_INDEX_URL


def _open(url: str, timeout: float) -> http.client.HTTPResponse:
    try:
        resp: http.client.HTTPResponse = urllib.request.urlopen(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise ModelInstallError(f"HTTP error {e.code} {e.reason} fetching {url}") from e
    except urllib.error.URLError as e:
        raise ModelInstallError(f"network error fetching {url}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:
        raise ModelInstallError(f"network error fetching {url}: {e}") from e
    return resp


def _read_all(resp: http.client.HTTPResponse, url: str) -> bytes:
    try:
        return resp.read()
    except (OSError, http.client.HTTPException) as e:
        raise ModelInstallError(f"network error reading {url}: {e!r}") from e


def _find_entry(name: str, index_url: str, timeout: float) -> dict[str, Any]:
    models = list_models(index_url, timeout=timeout)
    for entry in models:
        if entry["name"] == name:
            return entry
    names = [str(m["name"]) for m in models]
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.5)
    hint = f"close matches: {', '.join(close)}" if close else f"{len(names)} models available"
    raise ModelInstallError(f"model {name!r} not found in index {index_url}; {hint}")


def _download(
    url: str, out: IO[bytes], size: object, name: str, progress: bool, timeout: float
) -> str:
    """Stream `url` to `out` and return the hex md5 of what was received."""
    md5 = hashlib.md5(usedforsecurity=False)
    with _open(url, timeout) as resp:
        total = resp.length if resp.length is not None else size
        with tqdm(
            total=total if isinstance(total, int) else None,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=name,
            disable=not progress,
        ) as bar:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise ModelInstallError(f"network error downloading {url}: {e!r}") from e
                if not chunk:
                    break
                md5.update(chunk)
                out.write(chunk)
                bar.update(len(chunk))
    return md5.hexdigest()


def _safe_unzip(archive: Path, dest: Path, url: str) -> None:
    try:
        with zipfile.ZipFile(archive) as zf:
            members = zf.infolist()
            for info in members:
                member = info.filename.replace("\\", "/")
                if (
                    PurePosixPath(member).is_absolute()
                    or PureWindowsPath(member).drive
                    or ".." in PurePosixPath(member).parts
                ):
                    raise ModelInstallError(
                        f"bad archive {url}: unsafe member path {info.filename!r}"
                    )
            zf.extractall(dest, members)
    except (zipfile.BadZipFile, EOFError) as e:
        raise ModelInstallError(f"bad archive {url}: {e}") from e
    except OSError as e:
        raise ModelInstallError(f"cannot unpack {url} into {dest}: {e}") from e


def _model_root(unpacked: Path) -> Path:
    """Official archives hold a single top-level `<name>/` directory; allow flat ones too."""
    entries = list(unpacked.iterdir())
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return unpacked


def _replace_dir(new: Path, target: Path) -> None:
    """Move `new` to `target` (same filesystem), replacing an existing `target` last."""
    old: Path | None = None
    if target.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".old", dir=target.parent))
        old.rmdir()
        target.rename(old)
    try:
        new.rename(target)
    except OSError:
        if old is not None:
            old.rename(target)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
