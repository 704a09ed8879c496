"""The per-app services (config, store, model, recommender, metrics) and how a view reaches them."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app

from recsys.config import Config
from serving.metrics import Metrics
from serving.model import ModelHolder
from serving.ondemand import Recommender
from serving.store import RedisStore

EXTENSION = "recsys"


@dataclass(frozen=True)
class Services:
    cfg: Config
    store: RedisStore
    models: ModelHolder
    recommender: Recommender
    metrics: Metrics


def services() -> Services:
    """The services of the current app (set up by ``create_app``)."""
    return current_app.extensions[EXTENSION]
