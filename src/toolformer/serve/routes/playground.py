"""The playground page at `/`: a chat in the browser against this server (open even when API keys are set)."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import HTMLResponse

from toolformer.serve.state import State

router = APIRouter()


@router.get("/", response_class=HTMLResponse, include_in_schema=False)
async def index(state: State) -> HTMLResponse:
    return HTMLResponse(state.playground)
