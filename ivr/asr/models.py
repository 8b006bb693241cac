"""Download and check official Vosk models and the standard faster-whisper models.

`install_model()` fetches the official model index (JSON list of entries with `name`, `lang`,
`lang_text`, `version`, `size`, `size_text`, `url`, `md5`, `type`, `obsolete`), downloads the
named model's zip, verifies its md5, unpacks it safely and atomically to `data_dir/<name>/`.
Synchronous and standard-library only: it is a CLI action. `IVR_MODEL_INDEX_URL` overrides
the index URL (mirrors, tests).

`install_whisper_model()` downloads the files of a faster-whisper CTranslate2 model
(`WHISPER_MODELS`: ``faster-whisper-tiny.en`` … ``faster-whisper-medium``, Hugging Face
repositories ``Systran/faster-whisper-<size>``) from ``<base>/<repo>/resolve/main/<file>``,
where `IVR_WHISPER_BASE_URL` overrides the base (https://huggingface.co) for mirrors and
tests. Each file's length is checked against Content-Length and, when the server names one
(Hugging Face's ``X-Linked-Etag`` for large files), its SHA-256; the files land in a
temporary directory beside the target, which replaces the target only once complete and
loadable.
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
    "DEFAULT_WHISPER_BASE_URL",
    "INDEX_URL_ENV",
    "WHISPER_BASE_URL_ENV",
    "WHISPER_FILES",
    "WHISPER_MODELS",
    "ModelError",
    "ModelInstallError",
    "check_vosk_model_dir",
    "check_whisper_model_dir",
    "install_model",
    "install_whisper_model",
    "is_whisper_model_dir",
    "list_models",
]

DEFAULT_INDEX_URL = "https://alphacephei.com/vosk/models/model-list.json"
INDEX_URL_ENV = "IVR_MODEL_INDEX_URL"
DEFAULT_WHISPER_BASE_URL = "https://huggingface.co"
WHISPER_BASE_URL_ENV = "IVR_WHISPER_BASE_URL"
WHISPER_FILES = ("config.json", "model.bin", "tokenizer.json", "vocabulary.txt")
WHISPER_MODELS = {
    f"faster-whisper-{size}": f"Systran/faster-whisper-{size}"
    for size in ("tiny.en", "tiny", "base.en", "base", "small.en", "small", "medium.en", "medium")
}
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


def check_whisper_model_dir(path: Path) -> None:
    """Raise ModelError unless `path` looks like a CTranslate2 Whisper model directory
    (model.bin, config.json, tokenizer.json and vocabulary.txt or .json)."""
    if not path.exists():
        raise ModelError(f"Whisper model directory {path} does not exist")
    if not path.is_dir():
        raise ModelError(f"Whisper model path {path} is not a directory")
    missing = [
        f for f in ("model.bin", "config.json", "tokenizer.json") if not (path / f).is_file()
    ]
    if not (path / "vocabulary.txt").is_file() and not (path / "vocabulary.json").is_file():
        missing.append("vocabulary.txt")
    if missing:
        raise ModelError(
            f"{path} is not a CTranslate2 Whisper model: missing {', '.join(missing)} "
            "(install one with `ivr models install faster-whisper-tiny.en`)"
        )
    try:
        json.loads((path / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: config.json is not valid JSON: {e}") from e


def is_whisper_model_dir(path: Path) -> bool:
    try:
        check_whisper_model_dir(path)
    except ModelError:
        return False
    return True


def install_whisper_model(
    name: str,
    data_dir: Path,
    *,
    base_url: str | None = None,
    progress: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = False,
) -> Path:
    """Install the faster-whisper model `name` (a key of WHISPER_MODELS) to
    `data_dir/<name>/` and return that path; as `install_model`, a valid model already there
    is kept unless `force`, and a failure leaves nothing behind."""
    repo = WHISPER_MODELS.get(name)
    if repo is None:
        close = difflib.get_close_matches(name, list(WHISPER_MODELS), n=3, cutoff=0.5)
        hint = f"close matches: {', '.join(close)}" if close else ", ".join(WHISPER_MODELS)
        raise ModelInstallError(f"unknown Whisper model {name!r}; {hint}")
    target = data_dir / name
    if target.exists() and not force:
        try:
            check_whisper_model_dir(target)
        except ModelError as e:
            raise ModelInstallError(f"{e}; use force to re-install it") from e
        return target
    base = (base_url or os.environ.get(WHISPER_BASE_URL_ENV) or DEFAULT_WHISPER_BASE_URL).rstrip(
        "/"
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp_dir = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=data_dir))
    try:
        for file in WHISPER_FILES:
            url = f"{base}/{repo}/resolve/main/{file}"
            try:
                with open(tmp_dir / file, "wb") as out:
                    _download_checked(url, out, f"{name}/{file}", progress, timeout)
            except OSError as e:
                raise ModelInstallError(f"cannot write {tmp_dir / file}: {e}") from e
        try:
            check_whisper_model_dir(tmp_dir)
            _check_loads(tmp_dir)
        except ModelError as e:
            raise ModelInstallError(f"files from {base}/{repo} are not a Whisper model: {e}") from e
        try:
            _replace_dir(tmp_dir, target)
        except OSError as e:
            raise ModelInstallError(f"cannot move the downloaded model to {target}: {e}") from e
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def _check_loads(path: Path) -> None:
    """CTranslate2 reads the whole model.bin: a truncated or corrupt file fails here."""
    try:
        import ctranslate2
    except ImportError:  # nothing more to check without it
        return
    try:
        ctranslate2.models.Whisper(str(path), device="cpu", compute_type="int8")
    except (RuntimeError, ValueError) as e:
        raise ModelError(f"CTranslate2 cannot load it: {e}") from e


class _Redirects(urllib.request.HTTPRedirectHandler):
    """Keeps the SHA-256 a redirecting server (Hugging Face) names in X-Linked-Etag."""

    def __init__(self) -> None:
        self.sha256: str | None = None

    def redirect_request(
        self,
        req: urllib.request.Request,
        fp: IO[bytes],
        code: int,
        msg: str,
        headers: Any,
        newurl: str,
    ) -> urllib.request.Request | None:
        self.sha256 = self.sha256 or _sha256_header(headers)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def _sha256_header(headers: Any) -> str | None:
    value = str(headers.get("X-Linked-Etag") or "").strip().strip('"').removeprefix("W/")
    value = value.strip('"').lower()
    return value if len(value) == 64 and all(c in "0123456789abcdef" for c in value) else None


def _download_checked(url: str, out: IO[bytes], desc: str, progress: bool, timeout: float) -> None:
    """Stream `url` to `out`; check the length received and any SHA-256 the server names."""
    redirects = _Redirects()
    opener = urllib.request.build_opener(redirects)
    try:
        resp = opener.open(url, timeout=timeout)
    except urllib.error.HTTPError as e:
        raise ModelInstallError(f"HTTP error {e.code} {e.reason} fetching {url}") from e
    except urllib.error.URLError as e:
        raise ModelInstallError(f"network error fetching {url}: {e.reason}") from e
    except (OSError, http.client.HTTPException) as e:
        raise ModelInstallError(f"network error fetching {url}: {e}") from e
    sha = hashlib.sha256()
    received = 0
    with resp:
        expected_sha = redirects.sha256 or _sha256_header(resp.headers)
        length = resp.headers.get("Content-Length")
        total = int(length) if length and length.isdigit() else None
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=desc,
            disable=not progress,
        ) as bar:
            while True:
                try:
                    chunk = resp.read(_CHUNK)
                except (OSError, http.client.HTTPException) as e:
                    raise ModelInstallError(f"network error downloading {url}: {e!r}") from e
                if not chunk:
                    break
                sha.update(chunk)
                out.write(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if total is not None and received != total:
        raise ModelInstallError(f"incomplete download of {url}: {received} of {total} bytes")
    if expected_sha is not None and sha.hexdigest() != expected_sha:
        raise ModelInstallError(
            f"checksum mismatch for {url}: expected sha256 {expected_sha}, got {sha.hexdigest()}"
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

    entry, url, expected_md5 = _archive_entry(name, index_url, timeout)
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
        _unpack_vosk_model(part, tmp_dir, url, target)
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return target


def _archive_entry(
    name: str, index_url: str | None, timeout: float
) -> tuple[dict[str, Any], str, str]:
    """The index's entry for model `name`, its archive's URL and expected md5."""
    index = _index_url(index_url)
    entry = _find_entry(name, index, timeout)
    url = urllib.parse.urljoin(index, str(entry.get("url") or ""))
    expected_md5 = str(entry.get("md5") or "").strip().lower()
    if not url.endswith(".zip") or not expected_md5:
        raise ModelInstallError(f"index entry for {name!r} lacks a .zip url or an md5: {entry}")
    return entry, url, expected_md5


def _unpack_vosk_model(part: Path, tmp_dir: Path, url: str, target: Path) -> None:
    """Unzip the downloaded archive `part` into `tmp_dir`, check the Vosk model in it and
    move that to `target` (replacing what is there)."""
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
