"""`GET /v1/models` and `GET /v1/models/{id}`: the one model this server serves, with its tools (404 for others)."""

from __future__ import annotations

from fastapi import APIRouter

from toolformer.serve.schemas import ERROR_RESPONSES, ModelCard, ModelList
from toolformer.serve.state import State

router = APIRouter()


@router.get("/v1/models", response_model=ModelList, responses=ERROR_RESPONSES)
async def models(state: State) -> ModelList:
    return ModelList(data=[state.model_card()])


@router.get("/v1/models/{model_id:path}", response_model=ModelCard, responses=ERROR_RESPONSES)
async def model(model_id: str, state: State) -> ModelCard:
    state.check_model(model_id)
    return state.model_card()
