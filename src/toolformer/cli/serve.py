"""`toolformer serve`: the model behind an OpenAI-compatible API, its tools running inside the server."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from toolformer.cli.common import (
    BACKEND_HELP,
    CORPUS_HELP,
    MODEL_HELP,
    NO_LOG_HELP,
    TOOLS_HELP,
    clean_errors,
    err_console,
    run_log,
    tool_options,
)
from toolformer.cli.options import config_command, opt
from toolformer.serve.config import API_KEY_ENV, ServeConfig


def _serve_config(**values: Any) -> ServeConfig:
    """The server's config from its options: the reply default stays within the cap, the call cap above max_calls."""
    defaults = ServeConfig()
    return ServeConfig(
        **values,
        default_max_tokens=min(defaults.default_max_tokens, values["max_tokens_cap"]),
        max_calls_cap=max(values["max_calls"], defaults.max_calls_cap),
    )


def _key_list(keys: list[str] | None) -> list[str]:
    """`--api-key` given any number of times (or $TOOLFORMER_API_KEY), as the config's list."""
    return list(keys or [])


@clean_errors
@config_command(
    ServeConfig,
    opt("api_keys", "--api-key", param="api_key", default=None, envvar=API_KEY_ENV, convert=_key_list),
    opt("max_concurrency_per_key", param="max_concurrency"),
    order="model host port api_keys tools backend batching parallel max_batch max_calls max_tokens_cap max_concurrency_per_key "
    "max_request_bytes request_timeout examples corpus mt_model log_level",
    skip="default_max_tokens max_calls_cap batch_wait_ms workers",
    build=_serve_config,
)
def serve(
    config: ServeConfig,
    model: str = typer.Option(None, "--model", "-m", help=MODEL_HELP),
    host: str = typer.Option("127.0.0.1", help="Address to listen on (0.0.0.0 for every interface)."),
    port: int = typer.Option(8000, help="Port to listen on."),
    tools: str = typer.Option(None, "--tools", "-t", help=TOOLS_HELP),
    backend: str = typer.Option("auto", "--backend", help=BACKEND_HELP),
    corpus: Path = typer.Option(None, help=CORPUS_HELP),
    mt_model: str = typer.Option(None, help="Translation model for MT (directory or hub id)."),
    log_level: str = typer.Option("info", help="Server log level: debug, info, warning, error."),
    no_log: bool = typer.Option(False, "--no-log", help=NO_LOG_HELP),
) -> None:
    """Serve the model over an OpenAI-compatible API, tools running inside the server: `toolformer serve`.

    Then point any OpenAI client at http://HOST:PORT/v1, or open http://HOST:PORT/ for the playground.
    """
    import uvicorn

    from toolformer.serve.app import create_app
    from toolformer.serve.backend import load_backend

    with err_console.status("loading model"):
        be = load_backend(
            model, tools, backend=backend, max_batch=config.max_batch, **tool_options(corpus, mt_model)
        )
    err_console.print(
        f"[dim]{be.name} ({be.kind}) with {', '.join(be.tools.names()) or 'no tools'}; "
        f"API at http://{host}:{port}/v1, playground at http://{host}:{port}/"
        f"{'; API key required' if config.api_keys else ''}[/dim]",
        highlight=False,
    )
    uvicorn.run(create_app(be, config, run_log(no_log)), host=host, port=port, log_level=log_level.lower())
