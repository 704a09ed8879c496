"""Event confidence: weight per event type times time decay, the same rule in batch (Spark) and serving.

The Spark version lives in ``jobs/common/confidence.py`` and is tested against :func:`event_confidence`.
"""

from __future__ import annotations

import math

from recsys.config import EventsConfig


def event_confidence(event_type: str, quantity: int, age_days: float, cfg: EventsConfig) -> float:
    """Confidence contributed by one event.

    ``weight(event_type) * (min(quantity, quantity_cap) if purchase else 1) * 0.5 ** (age_days / half_life)``;
    events in the future (negative age) are not boosted.

    Example:
        >>> from recsys.config import EventsConfig
        >>> event_confidence("purchase", 2, 30.0, EventsConfig())
        8.0
    """
    weight = getattr(cfg.weights, event_type)
    if event_type == "purchase":
        weight *= min(max(quantity, 1), cfg.quantity_cap)
    return float(weight * math.pow(0.5, max(age_days, 0.0) / cfg.half_life_days))
