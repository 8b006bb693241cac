"""Text channels on the voice flows: the same dialog engine, flow file, intents, FAQ,
fulfillment and callbacks serve chat over REST and SMS (`ivr.api.conversations`).

conversations = Conversations(store, lambda: flow_store.flow, fulfillment, callbacks)
record, opening = await conversations.start("web", "+15551230001")
record, replies = await conversations.reply(record.id, "how much credit have I got")
"""

from ivr.chat.dialog import BotMessage, TextDialog
from ivr.chat.service import SMS, ConversationEnded, Conversations
from ivr.chat.text import quick_replies, typed_keys, voice_only, written

__all__ = [
    "SMS",
    "BotMessage",
    "ConversationEnded",
    "Conversations",
    "TextDialog",
    "quick_replies",
    "typed_keys",
    "voice_only",
    "written",
]
