"""Monitoring: `GET /health` (open) and `GET /metrics` (Prometheus text; needs a key when the server has keys)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from toolformer.serve.schemas import Health
from toolformer.serve.state import State

router = APIRouter()


@router.get("/health", response_model=Health)
async def health(state: State) -> Health:
    return Health(model=state.backend.name, backend=state.backend.kind, queued=state.batcher.depth)


@router.get("/metrics", include_in_schema=False)
async def prometheus(state: State) -> Response:
    return Response(state.metrics.render(), media_type=state.metrics.content_type)
