"""Audience: subscribers, lists and interests; CSV import; segments and editions.

The only layer that writes subscriber and membership rows. ``from newsletter import audience``
gives the subscriber operations of :mod:`newsletter.audience.subscribers`.
"""

from newsletter.audience.subscribers import (
    EXPORT_COLUMNS,
    Subscriber,
    add,
    ensure_list,
    export,
    get,
    list_counts,
    list_id,
    query,
    record_event,
    remove,
    unsubscribe,
)

__all__ = [
    "EXPORT_COLUMNS",
    "Subscriber",
    "add",
    "ensure_list",
    "export",
    "get",
    "list_counts",
    "list_id",
    "query",
    "record_event",
    "remove",
    "unsubscribe",
]
