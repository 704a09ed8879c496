"""The API's blueprints, one per concern."""

from __future__ import annotations

from flask import Flask

from serving.api import catalog, interactions, ops, recommendations


def register_blueprints(app: Flask) -> None:
    for module in (recommendations, interactions, catalog, ops):
        app.register_blueprint(module.bp)
