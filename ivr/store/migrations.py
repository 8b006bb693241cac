"""The schema, as numbered migrations applied in order when a store opens.

One logical schema for both databases. The only dialect differences are the column types
below ({ts}, {json}, {uuid}) and one JSON expression ({transcript_call_id}); everything else
(checks, partial indexes) is the same SQL.
Never edit an applied migration: add the next number.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Dialect = Literal["sqlite", "postgresql"]

TYPES: dict[Dialect, dict[str, str]] = {
    # SQLite keeps timestamps as fixed-width UTC ISO-8601 text, so text order is time order.
    # transcript_call_id: the call a callback was booked from (its transcript's "call_id"),
    # the same expression in the index and in the analytics queries that use it.
    "sqlite": {
        "ts": "TEXT",
        "json": "TEXT",
        "uuid": "TEXT",
        "transcript_call_id": "json_extract(transcript, '$.call_id')",
        "transcript_conversation_id": "json_extract(transcript, '$.conversation_id')",
    },
    "postgresql": {
        "ts": "TIMESTAMPTZ",
        "json": "JSONB",
        "uuid": "UUID",
        "transcript_call_id": "(transcript ->> 'call_id')",
        "transcript_conversation_id": "(transcript ->> 'conversation_id')",
    },
}


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]

    def sql(self, dialect: Dialect) -> list[str]:
        return [s.format(**TYPES[dialect]) for s in self.statements]


SCHEMA_MIGRATIONS = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at {ts} NOT NULL
)"""

MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "calls and turns",
        (
            """
            CREATE TABLE calls (
                id TEXT PRIMARY KEY,
                caller TEXT,
                transport TEXT NOT NULL,
                flow TEXT,
                flow_version TEXT,
                started_at {ts} NOT NULL,
                ended_at {ts},
                end_reason TEXT
            )""",
            "CREATE INDEX calls_started_at ON calls (started_at)",
            """
            CREATE TABLE turns (
                call_id TEXT NOT NULL REFERENCES calls (id) ON DELETE CASCADE,
                seq INTEGER NOT NULL,
                at {ts} NOT NULL,
                node TEXT,
                kind TEXT NOT NULL
                    CHECK (kind IN ('prompt', 'recognized', 'dtmf', 'no_input', 'no_match')),
                text TEXT,
                intent TEXT,
                confidence DOUBLE PRECISION,
                PRIMARY KEY (call_id, seq)
            )""",
        ),
    ),
    Migration(
        2,
        "callbacks",
        (
            """
            CREATE TABLE callbacks (
                id {uuid} PRIMARY KEY,
                number TEXT NOT NULL,
                due_at {ts} NOT NULL,
                status TEXT NOT NULL DEFAULT 'scheduled'
                    CHECK (status IN ('scheduled', 'claimed', 'completed', 'cancelled', 'expired')),
                reason TEXT,
                priority INTEGER NOT NULL DEFAULT 0,
                attempts INTEGER NOT NULL DEFAULT 0,
                max_attempts INTEGER NOT NULL DEFAULT 3,
                agent TEXT,
                outcome TEXT,
                transcript {json},
                lease_until {ts},
                created_at {ts} NOT NULL,
                updated_at {ts} NOT NULL
            )""",
            # One open callback per number: a second request updates the open one.
            """
            CREATE UNIQUE INDEX callbacks_one_open_per_number ON callbacks (number)
                WHERE status IN ('scheduled', 'claimed')""",
            "CREATE INDEX callbacks_due ON callbacks (due_at, id)",
            "CREATE INDEX callbacks_status_due ON callbacks (status, due_at, id)",
        ),
    ),
    Migration(
        3,
        "webhook outbox",
        (
            """
            CREATE TABLE outbox (
                id {uuid} PRIMARY KEY,
                type TEXT NOT NULL,
                payload {json} NOT NULL,
                created_at {ts} NOT NULL,
                attempts INTEGER NOT NULL DEFAULT 0,
                next_attempt_at {ts} NOT NULL,
                delivered_at {ts},
                last_error TEXT
            )""",
            """
            CREATE INDEX outbox_due ON outbox (next_attempt_at, id)
                WHERE delivered_at IS NULL""",
        ),
    ),
    Migration(
        4,
        "callback attempts",
        (
            # One row per attempt to reach the caller: who took it (the dispatcher, handing it
            # to a dialer, or an agent claiming it) and how it ended.
            """
            CREATE TABLE callback_attempts (
                callback_id {uuid} NOT NULL REFERENCES callbacks (id) ON DELETE CASCADE,
                attempt INTEGER NOT NULL,
                started_at {ts} NOT NULL,
                taken_by TEXT NOT NULL CHECK (taken_by IN ('dispatcher', 'agent')),
                agent TEXT,
                ended_at {ts},
                outcome TEXT,
                PRIMARY KEY (callback_id, attempt)
            )""",
        ),
    ),
    Migration(
        5,
        "analytics: utterance audio, survey score",
        (
            # The recording of an utterance nothing matched (DATA_DIR-relative path), for
            # grammar tuning; NULL for every other turn.
            "ALTER TABLE turns ADD COLUMN audio TEXT",
            # The caller's post-call survey answer; NULL when not asked or not answered.
            "ALTER TABLE calls ADD COLUMN survey INTEGER CHECK (survey BETWEEN 1 AND 5)",
            # Per-node figures and the unrecognized utterances of one node.
            "CREATE INDEX turns_node_kind ON turns (node, kind)",
            # Which calls booked a callback (containment, escalation reasons).
            "CREATE INDEX callbacks_call_id ON callbacks (({transcript_call_id}))",
        ),
    ),
    Migration(
        6,
        "call identity: provider call id, serving node",
        (
            # The id the far end gave the call (Twilio callSid, AudioSocket UUID); the call's
            # own id is the server's. NULL where the transport gives none.
            "ALTER TABLE calls ADD COLUMN provider_call_id TEXT",
            # Which server process served the call: after a crash, a node closes only the
            # calls it left open, never those of other nodes sharing the database.
            "ALTER TABLE calls ADD COLUMN node_id TEXT",
            "CREATE INDEX calls_open_by_node ON calls (node_id) WHERE ended_at IS NULL",
            "CREATE INDEX calls_provider_call_id ON calls (provider_call_id)",
        ),
    ),
    Migration(
        7,
        "nodes: heartbeats",
        (
            # Each server process's heartbeat: the store's health probe (a write that must
            # reach the database) and, for operators, which nodes write and since when.
            """
            CREATE TABLE nodes (
                id TEXT PRIMARY KEY,
                started_at {ts} NOT NULL,
                seen_at {ts} NOT NULL
            )""",
        ),
    ),
    Migration(
        8,
        "webhook delivery log",
        (
            # One row per POST of an event to one endpoint: what the console and the API
            # show an integrator whose receiver failed (the outbox keeps only the last error).
            """
            CREATE TABLE webhook_deliveries (
                event_id {uuid} NOT NULL REFERENCES outbox (id),
                url TEXT NOT NULL,
                at {ts} NOT NULL,
                status INTEGER,
                error TEXT,
                duration_ms INTEGER NOT NULL
            )""",
            "CREATE INDEX webhook_deliveries_event ON webhook_deliveries (event_id, at)",
            # The delivery log lists events newest first.
            "CREATE INDEX outbox_created ON outbox (created_at, id)",
        ),
    ),
    Migration(
        9,
        "revoked tokens",
        (
            # API tokens live in the configuration (IVR_API_TOKENS) as their SHA-256; `ivr
            # token revoke` adds the digest here, and every server sharing the database
            # refuses it from its next read of this table, without a restart.
            """
            CREATE TABLE revoked_tokens (
                sha256 TEXT PRIMARY KEY,
                name TEXT,
                revoked_at {ts} NOT NULL,
                reason TEXT
            )""",
        ),
    ),
    Migration(
        10,
        "text conversations",
        (
            # A text channel's conversation (REST chat, SMS; `ivr.chat`) with the customer's
            # number (E.164, as calls' callers and callbacks keep it: one customer across
            # channels) and its messages, both ways, in order.
            """
            CREATE TABLE conversations (
                id {uuid} PRIMARY KEY,
                channel TEXT NOT NULL,
                number TEXT,
                flow TEXT,
                flow_version TEXT,
                started_at {ts} NOT NULL,
                last_message_at {ts} NOT NULL,
                ended_at {ts},
                end_reason TEXT,
                survey INTEGER CHECK (survey BETWEEN 1 AND 5)
            )""",
            # An SMS finds its number's open conversation; the console lists by number.
            "CREATE INDEX conversations_number ON conversations (number, channel, started_at)",
            """
            CREATE TABLE conversation_messages (
                conversation_id {uuid} NOT NULL REFERENCES conversations (id),
                seq INTEGER NOT NULL,
                at {ts} NOT NULL,
                sender TEXT NOT NULL CHECK (sender IN ('customer', 'bot')),
                text TEXT NOT NULL,
                node TEXT,
                quick_replies {json},
                PRIMARY KEY (conversation_id, seq)
            )""",
        ),
    ),
    Migration(
        11,
        "complaints, contact topics",
        (
            # The complaint early warning (`ivr.nlu.complaint`): why a call or conversation
            # was found to be a complaint (reasons, what was said), and on the callback booked
            # from one (whose priority it raised); NULL: none.
            "ALTER TABLE calls ADD COLUMN complaint {json}",
            "ALTER TABLE conversations ADD COLUMN complaint {json}",
            "ALTER TABLE callbacks ADD COLUMN complaint {json}",
            # What each contact (call or conversation) asked about, by the customer's number:
            # a contact about the same topic within a day is a repeat (a complaint signal).
            """
            CREATE TABLE contact_topics (
                number TEXT NOT NULL,
                topic TEXT NOT NULL,
                at {ts} NOT NULL,
                channel TEXT NOT NULL,
                contact_id TEXT NOT NULL
            )""",
            "CREATE INDEX contact_topics_number ON contact_topics (number, at)",
        ),
    ),
    Migration(
        12,
        "channels in analytics, one customer across channels",
        (
            # What the dialog made of a customer's message, as a call's turn records it:
            # its kind (recognized, dtmf, or no_match when nothing matched) and intent.
            "ALTER TABLE conversation_messages ADD COLUMN kind TEXT",
            "ALTER TABLE conversation_messages ADD COLUMN intent TEXT",
            # Analytics read the conversations of a window; a conversation's callback is
            # found by its transcript's conversation id.
            "CREATE INDEX conversations_started_at ON conversations (started_at)",
            "CREATE INDEX callbacks_conversation_id ON callbacks (({transcript_conversation_id}))",
            # A customer's history: their calls by caller, newest first.
            "CREATE INDEX calls_caller ON calls (caller, started_at)",
        ),
    ),
)

assert [m.version for m in MIGRATIONS] == list(range(1, len(MIGRATIONS) + 1))
