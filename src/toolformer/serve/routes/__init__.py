"""The server's routers, in the order `create_app` includes them (which is the order the OpenAPI docs list them)."""

from __future__ import annotations

from toolformer.serve.routes import chat, completions, metrics, models, playground

ROUTERS = (playground.router, metrics.router, models.router, chat.router, completions.router)
