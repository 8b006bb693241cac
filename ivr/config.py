"""Service configuration: defaults, then a YAML file, then ``IVR_*`` environment variables."""

from __future__ import annotations

import os
import re
import secrets
import socket
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ivr.callerid import DEFAULT_REGION, caller_number, check_region
from ivr.webhooks.endpoints import WebhookEndpoint, check_secret, check_unique, parse_endpoints
from ivr.yamlio import YamlLimitError, load_yaml

if TYPE_CHECKING:
    from ivr.dialog.when import BusinessHours

_REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_dir(name: str) -> Path:
    """`./NAME` when run from a checkout or image that has it, else the one beside the package."""
    local = Path.cwd() / name
    return local if local.is_dir() else _REPO_ROOT / name


def _default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "ivr"


Scope = Literal[
    "calls.read",
    "callbacks.read",
    "callbacks.write",
    "analytics.read",
    "flows.read",
    "flows.write",
    "webhooks.read",
    "webhooks.write",
    "conversations.read",
    "conversations.write",
    "customers.read",
]
SCOPES: tuple[str, ...] = get_args(Scope)
"""API token scopes; "*" grants all."""


class ApiToken(BaseModel):
    """A bearer token as configured: its SHA-256 (the token itself is never stored)."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    scopes: list[Literal["*"] | Scope]


def _comma_list(value: object) -> object:
    """Environment form of a list: comma-separated (``a,b``); a YAML list passes through."""
    if isinstance(value, str):
        return [part.strip() for part in value.split(",") if part.strip()]
    return value


def _tokens(value: object) -> object:
    """``NAME:SHA256:SCOPE+SCOPE`` entries, comma-separated (IVR_API_TOKENS), or a YAML list
    of such strings or of {name, sha256, scopes} mappings."""
    items = _comma_list(value)
    if not isinstance(items, list):
        return items
    out: list[object] = []
    for item in items:
        if isinstance(item, str):
            parts = item.split(":")
            if len(parts) != 3:
                raise ValueError(f"API token entry {item!r}: expected NAME:SHA256:SCOPE+SCOPE")
            name, digest, scopes = parts
            item = {"name": name, "sha256": digest.lower(), "scopes": re.split(r"[+ ]", scopes)}
        out.append(item)
    return out


CommaList = Annotated[list[str], NoDecode, BeforeValidator(_comma_list)]


def _closure_list(value: object) -> object:
    """Closures as a comma list (IVR_CLOSURES) or a YAML list, whose bare dates YAML reads
    as dates: back to their text."""
    items = _comma_list(value)
    if isinstance(items, list):
        return [item.isoformat() if isinstance(item, date) else item for item in items]
    return items


ClosureList = Annotated[list[str], NoDecode, BeforeValidator(_closure_list)]


class QueueSettings(BaseModel):
    """A queue of agents with hours of their own (IVR_QUEUES): what it leaves out is the
    service's (business_hours, holidays_country, holidays_subdivision, closures); an empty
    holidays_country or closures list gives the queue none."""

    model_config = ConfigDict(extra="forbid")

    business_hours: str | None = None
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    closures: ClosureList | None = None


NODE_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="IVR_", extra="forbid")

    host: str = "0.0.0.0"
    port: int = Field(8080, ge=0, le=65535)
    audiosocket_port: int = Field(9092, ge=0, le=65535)
    # SIP (ivr/sip): signalling on UDP and TCP. Unset: 5060, or no SIP (a warning) when that
    # port is taken; 0: no SIP; any other port must be free, else start-up stops.
    sip_port: int | None = Field(None, ge=0, le=65535)
    sip_host: str | None = None  # default: host
    sip_media_address: str | None = None  # the SDP c= address; default: ours as callers see it
    rtp_ports: str = "10000-20000"  # each call takes an even port of this range for its RTP
    sip_ring_ms: int = Field(0, ge=0, le=60_000)  # ringing (180) before the 200 OK
    rtp_timeout_seconds: float = Field(10, gt=0)  # no RTP this long ends a call (not on hold)
    # Who may call over SIP (ivr/sip/access.py): source networks (comma-separated CIDRs;
    # empty: any), and digest credentials new calls must prove (USER:PASSWORD, comma-separated;
    # empty: none asked), in this realm.
    sip_allow: str = ""
    sip_users: str = Field("", repr=False)
    sip_realm: str = Field("ivr", pattern=r'^[^"\\\x00-\x1f]+$')
    # Live transfers (a flow's transfer node): the agents, as a SIP URI. A SIP call is sent
    # there by REFER; a media stream's provider gets it in the call.transfer_requested
    # webhook. Unset: transfer nodes without a target of their own go on to their `failed`.
    agent_uri: str | None = Field(None, min_length=1)
    transfer_timeout_seconds: float = Field(30, gt=0)  # for an agent to take the call
    # The HTTP API as agents' desktops reach it, for the transcript link a transfer carries
    # (PUBLIC_URL/v1/calls/<id>); default http://HOST:PORT (for 0.0.0.0: this host's name).
    public_url: str | None = Field(None, pattern=r"^https?://")
    data_dir: Path = Field(default_factory=_default_data_dir)
    grammar_dir: Path = Field(default_factory=lambda: _default_dir("grammars"))
    prompts_dir: Path = Field(default_factory=lambda: _default_dir("prompts"))

    # ASR: "auto" uses Vosk when a Vosk model is configured, else Whisper (whisper_model, or
    # the bundled tiny.en), else the built-in pocketsphinx engine.
    asr_engine: Literal["auto", "whisper", "vosk", "pocketsphinx"] = "auto"
    vosk_model: Path | None = None
    whisper_model: Path | None = None  # a faster-whisper (CTranslate2) model directory
    asr_workers: int = Field(default_factory=lambda: max(1, os.cpu_count() or 1), ge=1)
    asr_queue: int = Field(64, ge=1)  # jobs waiting for a worker before callers must wait
    # uvloop (libuv) costs the calls' event loop ~18 % less CPU, but the PostgreSQL kill -9
    # webhook redelivery test fails on it (tests/test_reliability.py): opt-in until found.
    event_loop: Literal["asyncio", "uvloop"] = "asyncio"

    flow: Path | None = None  # default: GRAMMAR_DIR/hotline.yaml
    # sqlite:///path, a path, or postgresql://… (default: DATA_DIR/ivr.db)
    database_url: str | None = None
    # This server among those sharing the database: after a crash it closes only the calls
    # it left open. Unique per node and stable across its restarts; default: made once in
    # DATA_DIR/node_id (see `ensure_node_id`). Set it where the data dir does not persist.
    node_id: str | None = Field(None, pattern=NODE_ID_PATTERN)
    # The store's heartbeat: how often readiness (/readyz) checks the database can be written.
    store_probe_seconds: float = Field(5, gt=0)
    # How often /metrics' outbox and callback counts are taken from the database.
    metrics_sample_seconds: float = Field(15, gt=0)

    # Call limits.
    max_calls: int = Field(200, ge=1)
    max_call_seconds: float = Field(1800, gt=0)
    # On SIGTERM, how long calls in progress may go on before they are cut.
    drain_seconds: float = Field(30, ge=0)
    idle_timeout_seconds: float = Field(10, gt=0)
    end_silence_ms: int = Field(600, ge=100, le=5000)
    interdigit_ms: int = Field(3000, ge=500)
    record_calls: bool = True  # both sides of each call to DATA_DIR/recordings/<call_id>.wav
    # Recordings and unrecognized utterances' audio older than this are deleted (0: kept).
    audio_retention_days: float = Field(90, ge=0)

    tts_voice: str | None = None
    tts_speed: int = Field(160, ge=60, le=400)  # words per minute

    # Agent callbacks: when agents work, in which zone callers' times are meant.
    timezone: str = "UTC"
    # The calendar starts at this instant (RFC 3339 with offset) and runs on: demos, tests.
    clock_start: datetime | None = None
    business_hours: str = "mon-fri 08:00-20:00, sat 09:00-17:00"
    # Days agents are out though business_hours say they work: the public holidays of a
    # country (ISO 3166-1, e.g. US) and its subdivision (e.g. CA), from the `holidays`
    # package, and dated closures: 2026-12-24, 2026-12-27/2027-01-01, each with an optional
    # name to say ("2026-12-24 our staff party").
    holidays_country: str | None = None
    holidays_subdivision: str | None = None
    closures: ClosureList = Field(default_factory=list)
    # Queues a flow's nodes name (`queue: billing`), each with its own hours; the rest is
    # the "default" queue above. YAML mapping, or JSON in IVR_QUEUES.
    queues: dict[str, QueueSettings] = Field(default_factory=dict)
    # Telephone numbers without + are this country's (ISO 3166-1): caller IDs, keyed
    # numbers, the VIP list and the API's numbers and filters are all kept in E.164.
    default_region: str = DEFAULT_REGION
    vip_numbers: CommaList = Field(default_factory=list)  # callbacks from these come first
    callback_max_attempts: int = Field(3, ge=1, le=20)
    callback_retry_minutes: float = Field(30, gt=0)  # after no answer / busy
    callback_expiry_hours: float = Field(72, gt=0)  # still not done this long after due
    dispatch_lease_seconds: float = Field(600, gt=0)  # a dialer reports back within this
    dispatch_interval_seconds: float = Field(1.0, gt=0)

    # Integration: webhooks and the HTTP API.
    # Each a URL, optionally with its own secret= and events= (ivr/webhooks/endpoints.py).
    webhook_urls: Annotated[list[WebhookEndpoint], NoDecode, BeforeValidator(parse_endpoints)] = (
        Field(default_factory=list)
    )
    webhook_secret: str | None = None
    webhook_timeout_seconds: float = Field(5, gt=0)
    webhook_max_attempts: int = Field(15, ge=1)  # then the event is parked, kept for replay
    # Text channels (ivr/chat): an SMS webhook (POST /v1/sms/twilio) must be signed with
    # this Twilio auth token (X-Twilio-Signature; unset: not checked); a conversation with
    # no message for this long ends, and the number's next SMS starts a new one.
    twilio_auth_token: str | None = Field(None, min_length=1, repr=False)
    conversation_idle_minutes: float = Field(30, gt=0)
    # The web chat (the /chat widget and its WebSocket /v1/chat; ivr/server/chat.py): other
    # sites that may embed the widget and open the socket (origins, comma-separated, e.g.
    # https://www.example.com; * any; empty: this server's own pages only), and the secret a
    # site signs its logged-in customer's number with (ivr/chat/identity.py; unset: a chat
    # without a token names no number, the flow asks for the account).
    chat_origins: str = ""
    chat_identity_secret: str | None = Field(None, min_length=16, repr=False)
    api_tokens: Annotated[list[ApiToken], NoDecode, BeforeValidator(_tokens)] = Field(
        default_factory=list
    )

    # Exposure of the HTTP server to clients that hold no token, and to slow ones.
    # Open connections per client address that have carried no valid API token (calls,
    # /metrics, /healthz and /readyz are not counted); over it a request is a 429. 0: no
    # limit (e.g. behind a proxy that limits, where every client has the proxy's address).
    max_anonymous_connections_per_client: int = Field(64, ge=0)
    max_feed_subscribers: int = Field(500, ge=1)  # live-feed WebSockets at once, all kinds
    # Failed token attempts (an unknown or revoked token) per client address (IPv6: its
    # /64) within the window; at the limit its requests that need a token are 429 for the
    # window (ivr/token_guard.py). 0: no limit (behind a proxy: every client has its address).
    max_token_failures_per_client: int = Field(10, ge=0)
    token_failure_window_seconds: float = Field(60, gt=0)
    # How often the server reads the revoked tokens (`ivr token revoke`) from the database.
    token_revocation_poll_seconds: float = Field(5, gt=0)
    # A connection must finish its request headers this long after it opens (or after its
    # previous response); an idle keep-alive connection is closed then too.
    header_timeout_seconds: float = Field(10, gt=0)

    # Logs (ivr/logs.py): "text" lines, or "json", one object a line (call id, caller, node,
    # event and request id as fields). The access log: "quiet" leaves out the successful
    # requests for console files (/console/static/), /metrics and the health probes (/livez,
    # /readyz, /healthz); "all" logs those too; "off" logs no request.
    log_format: Literal["text", "json"] = "text"
    access_log: Literal["quiet", "all", "off"] = "quiet"

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r} (use an IANA name)") from None
        return value

    @field_validator("clock_start")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("clock_start needs a UTC offset, e.g. 2030-01-06T03:00:00+00:00")
        return value

    @model_validator(mode="after")
    def _hours(self) -> Settings:
        self.business_calendar()  # each queue's hours, holidays and closures parse
        return self

    def business_calendar(self) -> dict[str, BusinessHours]:
        """Each queue's hours by its name: "default" (business_hours, holidays_country,
        holidays_subdivision, closures), then those of `queues`, each with what it leaves out
        from the default. ValueError naming the queue and what is wrong."""
        from ivr.dialog.closed import ClosedDays, ClosedError  # parsed where they are used
        from ivr.dialog.when import DEFAULT_QUEUE, BusinessHours, WhenError

        def hours(where: str, q: QueueSettings) -> BusinessHours:
            country = self.holidays_country if q.holidays_country is None else q.holidays_country
            if q.holidays_country is not None and q.holidays_subdivision is None:
                subdivision = None  # another country's: not the default's subdivision
            else:
                subdivision = q.holidays_subdivision or self.holidays_subdivision
            closures = self.closures if q.closures is None else q.closures
            try:
                closed = ClosedDays.parse(country, subdivision, closures)
                return BusinessHours.parse(
                    q.business_hours or self.business_hours, self.timezone, closed
                )
            except (WhenError, ClosedError) as exc:
                raise ValueError(f"{where}{exc}") from None

        out = {DEFAULT_QUEUE: hours("", QueueSettings())}
        for name, queue in self.queues.items():
            out[name] = hours(f"queue {name}: ", queue)
        return out

    @field_validator("queues")
    @classmethod
    def _queue_names(cls, value: dict[str, QueueSettings]) -> dict[str, QueueSettings]:
        from ivr.dialog.schema import QUEUE_PATTERN
        from ivr.dialog.when import DEFAULT_QUEUE

        for name in value:
            if name == DEFAULT_QUEUE:
                raise ValueError(
                    f"queue {name!r} is the service's own hours (business_hours...): name"
                    " the others only"
                )
            if not re.fullmatch(QUEUE_PATTERN, name):
                raise ValueError(f"queue name {name!r}: letters, digits, _ . - (64 at most)")
        return value

    @field_validator("chat_origins")
    @classmethod
    def _chat_origins(cls, value: str) -> str:
        for origin in filter(None, (o.strip() for o in value.split(","))):
            if origin != "*" and not re.fullmatch(r"https?://[^/?#\s]+", origin):
                raise ValueError(f"{origin!r} is not an origin (scheme://host[:port], or *)")
        return value

    @field_validator("default_region")
    @classmethod
    def _region(cls, value: str) -> str:
        return check_region(value)

    @model_validator(mode="after")
    def _vips(self) -> Settings:
        """The VIP list as numbers are booked: E.164, national ones as default_region's."""
        numbers = []
        for raw in self.vip_numbers:
            number = caller_number(raw, self.default_region)
            if number is None:
                raise ValueError(f"vip_numbers: {raw!r} is not a telephone number")
            numbers.append(number)
        self.vip_numbers = numbers
        return self

    @field_validator("rtp_ports")
    @classmethod
    def _rtp_ports(cls, value: str) -> str:
        low, _, high = value.partition("-")
        if not (low.strip().isdigit() and high.strip().isdigit()):
            raise ValueError(f"RTP port range {value!r}: expected LOW-HIGH, e.g. 10000-20000")
        if not 1024 <= int(low) < int(high) <= 65535:
            raise ValueError(f"RTP port range {value!r}: need 1024 <= LOW < HIGH <= 65535")
        return value

    @field_validator("webhook_urls")
    @classmethod
    def _endpoints(cls, value: list[WebhookEndpoint]) -> list[WebhookEndpoint]:
        check_unique(value)
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret(cls, value: str | None) -> str | None:
        return value if not value else check_secret(value)

    @property
    def api_url(self) -> str:
        """The API's base URL for links agents follow (IVR_PUBLIC_URL, else our address)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = socket.getfqdn() if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{f'[{host}]' if ':' in host else host}:{self.port}"

    @property
    def cache_dir(self) -> Path:
        return self.data_dir / "cache"

    @property
    def store_url(self) -> str:
        return self.database_url or str(self.data_dir / "ivr.db")

    @property
    def flow_path(self) -> Path:
        return self.flow or self.grammar_dir / "hotline.yaml"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"


class ConfigError(ValueError):
    pass


def ensure_node_id(settings: Settings) -> str:
    """IVR_NODE_ID, else the data directory's own id, made on first use: the hostname (to
    read) and a random suffix (two processes on one host, or containers sharing a hostname,
    must not take each other's calls for their own). Stable for as long as the data
    directory lives, which a node needs for its recordings and SQLite anyway."""
    if settings.node_id:
        return settings.node_id
    path = settings.data_dir / "node_id"
    for _ in range(2):  # a second time if another process wrote it first
        try:
            existing = path.read_text(encoding="utf-8").strip()
        except FileNotFoundError:
            pass
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read the node id: {exc}") from exc
        else:
            if not re.fullmatch(NODE_ID_PATTERN, existing):
                raise ConfigError(f"{path}: not a node id; remove the file or set IVR_NODE_ID")
            return existing
        host = re.sub(r"[^A-Za-z0-9.-]", "-", socket.gethostname())[:40].strip(".-") or "ivr"
        made = f"{host}-{secrets.token_hex(4)}"
        tmp = path.with_name(f".node_id.{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(made + "\n", encoding="utf-8")
            os.link(tmp, path)  # atomic, and never over an id another process just made
            return made
        except FileExistsError:
            continue
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write the node id: {exc}") from exc
        finally:
            tmp.unlink(missing_ok=True)
    raise ConfigError(f"{path}: cannot read the node id")


def load_settings(path: Path | None = None, **overrides: Any) -> Settings:
    """Settings from `path` (YAML) with environment variables and `overrides` on top."""
    data: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = load_yaml(path.read_text(encoding="utf-8")) or {}
        except YamlLimitError as exc:
            raise ConfigError(f"{path}: {exc}") from None
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise ConfigError(f"{path}: cannot read configuration: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of settings")
        data.update(loaded)
    # Environment variables beat the file: drop file keys that the environment sets.
    for key in list(data):
        if f"IVR_{key.upper()}" in os.environ:
            del data[key]
    data.update({k: v for k, v in overrides.items() if v is not None})
    try:
        return Settings(**data)
    except ValidationError as exc:
        problems = "; ".join(
            ": ".join(filter(None, (".".join(str(p) for p in err["loc"]), err["msg"])))
            for err in exc.errors()
        ).replace("Value error, ", "")
        raise ConfigError(f"{path or 'settings'}: {problems}") from exc
