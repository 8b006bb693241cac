"""The integration REST API under /v1 (callbacks, calls, its OpenAPI document).

app[API] = ApiContext(callbacks, store, settings.api_tokens, tz, ...)   # in start-up
add_api_routes(app)
"""

from ivr.api.context import ApiContext, GrammarTools, Recordings
from ivr.api.routes import OPERATIONS, add_api_routes, document
from ivr.appkeys import API
from ivr.auth import Principal, hash_token, new_token, token_entry

__all__ = [
    "API",
    "OPERATIONS",
    "ApiContext",
    "GrammarTools",
    "Principal",
    "Recordings",
    "add_api_routes",
    "document",
    "hash_token",
    "new_token",
    "token_entry",
]
