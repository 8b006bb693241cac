"""Analytics from the recorded calls: containment and escalations, per-node recognition
figures, intent volume over time, unrecognized speech (with recordings), survey results; and
adopting an unrecognized phrase into the served flow."""

from ivr.analytics.facts import FlowFacts
from ivr.analytics.report import audio_url, intents, nodes, summary, unrecognized
from ivr.analytics.window import Bucket, Window

__all__ = [
    "Bucket",
    "FlowFacts",
    "Window",
    "audio_url",
    "intents",
    "nodes",
    "summary",
    "unrecognized",
]
