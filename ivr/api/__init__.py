"""The integration REST API under /v1 (callbacks, calls, its OpenAPI document).

app[API] = ApiContext(callbacks, store, settings.api_tokens, tz)   # e.g. in cleanup_ctx
add_api_routes(app)
"""

from ivr.api.auth import Principal, hash_token, new_token, token_entry
from ivr.api.context import API, ApiContext
from ivr.api.routes import OPERATIONS, add_api_routes, document

__all__ = [
    "API",
    "OPERATIONS",
    "ApiContext",
    "Principal",
    "add_api_routes",
    "document",
    "hash_token",
    "new_token",
    "token_entry",
]
