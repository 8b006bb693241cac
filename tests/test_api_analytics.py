"""The analytics API on a real `ivr serve` after real calls (real audio through VAD, ASR and
the dialog): one caller says something no menu knows (the Asterisk "password" recording), then
asks for an agent; another answers the survey. Then the reports, the unrecognized utterance's
recording, and adopting a phrase into the served flow file (a copy in the test's folder)."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import io
import json
import shutil
import urllib.error
import urllib.request
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from audio_fixtures import recording
from live_server import FEED_TOKEN, LiveServer, live_server
from speech import flite

from ivr.api import hash_token
from ivr.api.analytics import IntentReport, NodeReport, Summary, UnrecognizedReport
from ivr.audio.pcm import read_wav, write_wav
from ivr.dial import Caller, CallerTurn, CallReport
from ivr.dialog import load_flow

ROOT = Path(__file__).resolve().parent.parent
KNOWN = "+15551230001"
ADMIN, READER = "analytics-admin-0123456789", "analytics-reader-0123456789"
TOKENS = f"admin:{hash_token(ADMIN)}:*,reader:{hash_token(READER)}:analytics.read"
PASSWORD = recording("vm-password")  # "password": neither a menu phrase nor an FAQ


@dataclass
class Served:
    server: LiveServer
    flow: Path
    unrecognized: CallReport
    survey: CallReport

    def request(
        self, method: str, path: str, token: str | None = ADMIN, body: Any = None
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) of one request."""
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        data = None
        if body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        url = f"http://127.0.0.1:{self.server.port}{path}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, r.headers.get_content_type(), r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.headers.get_content_type(), e.read()

    def json(self, method: str, path: str, token: str | None = ADMIN, body: Any = None) -> Any:
        status, kind, raw = self.request(method, path, token, body)
        assert kind == "application/json", raw
        out = json.loads(raw)
        assert status == 200, out
        return out

    def error(self, method: str, path: str, token: str | None = ADMIN, body: Any = None) -> Any:
        """(status, names of the fields at fault) of a request that must fail."""
        status, kind, raw = self.request(method, path, token, body)
        assert status >= 400 and kind == "application/problem+json", raw
        return status, [f["field"] for f in json.loads(raw)["error"]["fields"]]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    tmp = tmp_path_factory.mktemp("api-analytics")
    flow = tmp / "flows" / "hotline.yaml"  # adopted phrases go here, not into the repository
    flow.parent.mkdir()
    shutil.copy(ROOT / "grammars" / "hotline.yaml", flow)
    no_thanks = tmp / "no-thanks.wav"
    write_wav(no_thanks, flite("no thanks", no_thanks, voice="rms"))
    with live_server(tmp, IVR_API_TOKENS=TOKENS, IVR_FLOW=str(flow)) as server:

        def caller(turns: list[CallerTurn]) -> Caller:
            return Caller(
                server.media_url, turns, KNOWN, out=None, max_seconds=150, token=FEED_TOKEN
            )

        async def both() -> list[CallReport]:
            return list(
                await asyncio.gather(
                    caller(
                        [CallerTurn(wav=PASSWORD), CallerTurn(dtmf="1"), CallerTurn(dtmf="0")]
                    ).run(),
                    caller(
                        [CallerTurn(dtmf="1"), CallerTurn(wav=no_thanks), CallerTurn(dtmf="4")]
                    ).run(),
                )
            )

        unrecognized, survey = asyncio.run(both())
        yield Served(server, flow, unrecognized, survey)


def test_the_calls_went_as_scripted(served: Served) -> None:
    first = [e for e in served.unrecognized.events if e["event"] in ("recognized", "dtmf")]
    assert first[0]["event"] == "recognized" and first[0]["intent"] is None, first
    assert [e["intent"] for e in first[1:]] == ["balance", "agent"]
    assert served.survey.hangup == "caller_goodbye", served.survey.events


def test_summary(served: Served) -> None:
    got = served.json("GET", "/v1/analytics/summary")
    Summary.model_validate(got)
    assert (got["calls"], got["ended"], got["in_progress"]) == (2, 2, 0)
    # the caller who asked for an agent hung up during the callback questions: escalated
    assert got["containment"] == {"contained": 1, "abandoned": 0, "escalated": 1, "rate": 0.5}
    assert got["timezone"] == "UTC"
    assert got["escalations"] == [{"reason": "agent_requested", "calls": 1}]
    assert got["survey"] == {"responses": 1, "average": 4.0, "distribution": [0, 0, 0, 1, 0]}
    assert 5 < got["average_handling_seconds"] < 150


def test_nodes(served: Served) -> None:
    got = served.json("GET", "/v1/analytics/nodes")
    NodeReport.model_validate(got)
    by_node = {n["node"]: n for n in got["nodes"]}
    menu = by_node["main_menu"]
    assert (menu["inputs"], menu["no_match"], menu["no_input"]) == (3, 1, 0), menu
    assert menu["no_match_rate"] == 0.3333 and menu["no_input_rate"] == 0.0
    assert sum(menu["confidence"]) == 1  # one utterance recognized there, the rest keys
    assert by_node["survey"]["inputs"] == 1 and by_node["anything_else"]["inputs"] == 2
    assert got["nodes"][0]["node"] == "main_menu"


def test_intents(served: Served) -> None:
    got = served.json("GET", "/v1/analytics/intents?bucket=hour")
    IntentReport.model_validate(got)
    totals = {s["intent"]: s["total"] for s in got["series"]}
    assert totals == {"balance": 2, "agent": 1}  # not the survey's "4", nor "no thanks"
    assert len(got["buckets"]) in (24, 25) and got["rising"] == []
    assert all(sum(s["counts"]) == s["total"] for s in got["series"])
    day = served.json("GET", "/v1/analytics/intents?bucket=day")
    assert {s["intent"]: s["total"] for s in day["series"]} == totals


def test_unrecognized_utterance_and_its_recording(served: Served) -> None:
    got = served.json("GET", "/v1/analytics/unrecognized?node=main_menu&limit=5")
    UnrecognizedReport.model_validate(got)
    (node,) = got["nodes"]
    assert node["node"] == "main_menu" and node["unrecognized"] == 1
    (example,) = node["utterances"][0]["examples"]
    call_id = served.unrecognized.call_id
    assert example["call_id"] == call_id and example["audio_url"], example
    status, kind, raw = served.request("GET", example["audio_url"])
    assert (status, kind) == (200, "audio/wav")
    with wave.open(io.BytesIO(raw)) as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (1, 2, 8000)
        seconds = w.getnframes() / w.getframerate()
    spoken = read_wav(PASSWORD).duration  # 1.08 s; the endpointer adds lead-in and tail
    assert spoken <= seconds <= spoken + 1.5, seconds
    # the call's record shows the same utterance, and the audio is only that turn's
    record = served.json("GET", f"/v1/calls/{call_id}")
    turn = next(t for t in record["turns"] if t["seq"] == example["seq"])
    assert turn["kind"] == "recognized" and turn["text"] == example["text"]
    assert served.error("GET", f"/v1/calls/{call_id}/turns/1/audio")[0] == 404  # a prompt
    assert served.error("GET", f"/v1/calls/{call_id}/turns/x/audio")[0] == 404
    assert served.error("GET", "/v1/calls/nobody/turns/2/audio")[0] == 404
    assert served.error("GET", example["audio_url"], token=READER)[0] == 403  # calls.read
    assert served.error("GET", example["audio_url"], token=None)[0] == 401


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ("?since=2030-01-01T00:00:00", "since"),  # naive
        ("?until=2030-01-01", "until"),
        ("?since=2030-01-01T00:00:00%2001:00", "since"),  # a + that arrived as a space
        ("?bucket=week", "bucket"),
        ("?limit=0", "limit"),
        ("?colour=red&limit=0", "limit"),  # the unknown one is not named
    ],
)
def test_bad_queries_are_422_naming_the_parameter(served: Served, query: str, field: str) -> None:
    route = "unrecognized" if field == "limit" else "intents"
    assert served.error("GET", f"/v1/analytics/{route}{query}") == (422, [field])


def test_unknown_query_parameters_are_ignored(served: Served) -> None:
    window = "since=2020-01-01T00:00:00Z&until=2040-01-01T00:00:00Z&bucket=day"
    plain = served.json("GET", f"/v1/analytics/intents?{window}")
    assert served.json("GET", f"/v1/analytics/intents?{window}&colour=red&_=17") == plain


def test_odd_windows_are_answered(served: Served) -> None:
    backwards = "since=2030-01-02T00:00:00Z&until=2030-01-01T00:00:00Z"  # empty, like lists
    assert served.json("GET", f"/v1/analytics/summary?{backwards}")["calls"] == 0
    weeks = served.json("GET", "/v1/analytics/intents?bucket=hour&since=2030-01-01T00:00:00Z"
                        "&until=2030-03-02T00:00:00%2B01:00")  # fmt: skip
    assert weeks["bucket"] == "day" and len(weeks["buckets"]) == 60 and not weeks["truncated"]
    forever = "since=0001-01-01T00:00:00Z&until=9999-12-31T23:59:59Z"
    got = served.json("GET", f"/v1/analytics/intents?bucket=day&{forever}")
    assert got["truncated"] and got["since"] == "1900-01-01T00:00:00+00:00"  # no call before
    assert {s["intent"]: s["total"] for s in got["series"]}["balance"] == 2


def test_named_periods(served: Served) -> None:
    # the calls were made just now: in today's (UTC), the last 24 hours' and 7 days' reports
    for period in ("today", "24h", "7d"):
        got = served.json("GET", f"/v1/analytics/summary?period={period}")
        assert got["calls"] == 2, period
    week = served.json("GET", "/v1/analytics/intents?period=7d&bucket=day")
    assert len(week["buckets"]) in (7, 8) and week["since"] < week["buckets"][1]
    today = served.json("GET", "/v1/analytics/nodes?period=today")
    assert today["since"].endswith("T00:00:00+00:00")
    assert served.error("GET", "/v1/analytics/summary?period=week") == (422, ["period"])
    both = "/v1/analytics/summary?period=today&since=2030-01-01T00:00:00Z"
    assert served.error("GET", both) == (422, ["period"])


def test_reports_as_csv(served: Served) -> None:
    for report in ("summary", "nodes", "intents", "unrecognized"):
        status, kind, raw = served.request("GET", f"/v1/analytics/{report}.csv?period=7d")
        assert (status, kind) == (200, "text/csv"), raw
        rows = list(csv.reader(io.StringIO(raw.decode("utf-8"))))
        if report == "summary":
            figures = dict(rows[1:])
            assert figures["calls"] == "2" and figures["abandoned"] == "0"
            assert figures["escalated: agent_requested"] == "1"
        elif report == "intents":
            assert rows[0] == ["hour", "balance", "agent"]
            assert sum(int(r[1]) for r in rows[1:]) == 2 and len(rows) >= 1 + 24 * 7
        elif report == "nodes":
            assert "main_menu" in [r[0] for r in rows[1:]]
        else:
            assert rows[1][:3] == ["main_menu", rows[1][1], "1"]
    # the same query as the JSON, the same figures; a download named by report and window
    url = (
        "/v1/analytics/intents.csv?bucket=day&since=2030-01-01T00:00:00Z&until=2030-01-03T00:00:00Z"
    )
    headers = urllib.request.urlopen(
        urllib.request.Request(
            f"http://127.0.0.1:{served.server.port}{url}",
            headers={"Authorization": f"Bearer {READER}"},
        ),
        timeout=30,
    ).headers
    assert headers["Content-Disposition"] == (
        'attachment; filename="ivr-intents-2030-01-01T0000-2030-01-03T0000.csv"'
    )
    assert served.error("GET", "/v1/analytics/summary.csv", token=None)[0] == 401
    assert served.error("GET", "/v1/analytics/summary.csv?period=soon") == (422, ["period"])


def test_scopes(served: Served) -> None:
    assert served.json("GET", "/v1/analytics/summary", token=READER)["calls"] == 2
    assert served.error("GET", "/v1/analytics/nodes", token=None)[0] == 401
    body = {"node": "main_menu", "intent": "balance", "phrase": "how much do i owe"}
    assert served.error("POST", "/v1/analytics/unrecognized/adopt", READER, body)[0] == 403


def test_adopt_a_phrase_into_the_served_flow(served: Served) -> None:
    before = served.flow.read_bytes()
    body = {"node": "main_menu", "intent": "balance", "phrase": "how much  do I owe"}
    got = served.json("POST", "/v1/analytics/unrecognized/adopt", body=body)
    after = served.flow.read_bytes()
    version = hashlib.sha256(after).hexdigest()[:10]
    assert got == {
        "flow": "hotline",
        "node": "main_menu",
        "intent": "balance",
        "phrase": "how much do I owe",
        "list": "nodes.main_menu.choices.balance.phrases",
        "added": True,
        "line": got["line"],
        "version": version,
    }
    assert "how much do I owe" in after.decode().splitlines()[got["line"] - 1]
    # only that line changed (the comments and layout are the file's own)
    changed = [
        (a, b) for a, b in zip(before.splitlines(), after.splitlines(), strict=True) if a != b
    ]
    assert len(changed) == 1
    flow = load_flow(served.flow)
    assert "how much do I owe" in flow.nodes["main_menu"].choices["balance"].phrases  # type: ignore[union-attr]
    assert served.server.health()["flow_version"] == version  # served at once
    # the same phrase again changes nothing
    again = served.json("POST", "/v1/analytics/unrecognized/adopt", body=body)
    assert again["added"] is False and again["version"] == version
    assert served.flow.read_bytes() == after


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"node": "nowhere", "intent": "balance", "phrase": "x y"}, "node"),
        ({"node": "main_menu", "intent": "nothing", "phrase": "x y"}, "intent"),
        ({"node": "fault", "intent": "yes", "phrase": "x y"}, "intent"),  # a yesno question
        ({"node": "main_menu", "intent": "bill", "phrase": "data usage"}, "phrase"),  # taken
        ({"node": "main_menu", "intent": "bill", "phrase": "  "}, "phrase"),
        ({"node": "main_menu", "intent": "bill"}, "phrase"),
    ],
)
def test_a_bad_adoption_is_422_and_changes_nothing(
    served: Served, body: dict[str, str], field: str
) -> None:
    before = served.flow.read_bytes()
    version = served.server.health()["flow_version"]
    status, fields = served.error("POST", "/v1/analytics/unrecognized/adopt", body=body)
    assert status == 422 and field in fields
    assert served.flow.read_bytes() == before
    assert served.server.health()["flow_version"] == version


def test_adopting_into_a_flow_file_over_the_yaml_bounds_is_a_422(served: Served) -> None:
    """The file on disk is read again for an adoption: one edited into a document over a
    bound is refused as a file that does not load (it was a RecursionError: a 500)."""
    before = served.flow.read_bytes()
    version = served.server.health()["flow_version"]
    body = {"node": "main_menu", "intent": "balance", "phrase": "what do I owe"}
    try:
        served.flow.write_text("[" * 1000 + "]" * 1000)
        status, kind, raw = served.request("POST", "/v1/analytics/unrecognized/adopt", body=body)
        assert status == 422 and kind == "application/problem+json", raw
        [field] = json.loads(raw)["error"]["fields"]
        assert field["field"] == "phrase"
        assert "does not load now: line 1: nested more than 64 levels deep" in field["message"]
    finally:
        served.flow.write_bytes(before)
    assert served.server.health()["flow_version"] == version  # still served as it was
