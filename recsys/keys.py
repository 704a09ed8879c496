"""Redis key names shared by the bulk load (writer) and the serving API (reader).

One module builds every key so the two roles cannot disagree on a prefix or on how a category name is
escaped. The contract (types, TTLs, values) is documented in ``docs/redis.md``.

Example:
    >>> user_recs_key("u42")
    'recommendations:user:u42'
    >>> popular_key("Home & Garden")
    'popular:category:home%20%26%20garden'
    >>> popular_key()
    'popular:global'
"""

from __future__ import annotations

from urllib.parse import quote

from recsys.schema import check_id

PREFIX_USER_RECS = "recommendations:user:"
PREFIX_SIMILAR = "similar:item:"
PREFIX_POPULAR_CATEGORY = "popular:category:"
POPULAR_GLOBAL_KEY = "popular:global"
PREFIX_PRODUCT = "product:"
PREFIX_HISTORY = "history:user:"
PREFIX_EVENT = "event:"
MODEL_KEY = "model:current"
# The default stream name; the effective one is ``cfg.serving.stream_key``.
STREAM_KEY = "interactions:stream"

# Fields of the model:current hash, written last by the load job.
MODEL_FIELDS: tuple[str, ...] = ("model_version", "als_bundle", "loaded_at", "users", "keys")

# Characters kept verbatim in a category key piece; everything else is percent-encoded (UTF-8).
_CATEGORY_SAFE = "-_."
CATEGORY_MAX_LEN = 200


def user_recs_key(user_id: str) -> str:
    """``recommendations:user:{user_id}``; raises ``ValidationError`` naming ``user_id`` on a bad id."""
    return PREFIX_USER_RECS + check_id("user_id", user_id)


def similar_key(product_id: str) -> str:
    """``similar:item:{product_id}``; raises ``ValidationError`` naming ``product_id`` on a bad id."""
    return PREFIX_SIMILAR + check_id("product_id", product_id)


def product_key(product_id: str) -> str:
    """``product:{product_id}`` (a hash of the catalogue fields)."""
    return PREFIX_PRODUCT + check_id("product_id", product_id)


def history_key(user_id: str) -> str:
    """``history:user:{user_id}`` (a list, newest first)."""
    return PREFIX_HISTORY + check_id("user_id", user_id)


def event_key(event_id: str) -> str:
    """``event:{event_id}``: the dedup marker of a POSTed event."""
    return PREFIX_EVENT + check_id("event_id", event_id)


def category_slug(category: str) -> str:
    """The key-safe form of a free-text category name: trimmed, lowercased, unsafe characters percent-encoded.

    Letters, digits and ``- _ .`` are kept; spaces, ``:``, ``*``, ``{``, ``}`` (Redis Cluster hash tags) and
    every non-ASCII byte are percent-encoded, so the slug is unambiguous and never splits a key.

    Args:
        category: The category as stored in the products table.

    Returns:
        The slug used in ``popular:category:{slug}``.

    Raises:
        ValueError: ``category`` is not a string, is blank or is longer than 200 characters.

    Example:
        >>> category_slug("  Kitchen/Dining ")
        'kitchen%2Fdining'
    """
    if not isinstance(category, str) or not category.strip():
        raise ValueError(f"category must be a non-blank string (got {category!r:.80})")
    if len(category) > CATEGORY_MAX_LEN:
        raise ValueError(f"category longer than {CATEGORY_MAX_LEN} characters: {category!r:.80}")
    return quote(category.strip().lower(), safe=_CATEGORY_SAFE)


def popular_key(category: str | None = None) -> str:
    """``popular:global`` for ``None``, else ``popular:category:{category_slug(category)}``."""
    if category is None:
        return POPULAR_GLOBAL_KEY
    return PREFIX_POPULAR_CATEGORY + category_slug(category)
