"""Serve a tool-using model over an OpenAI-compatible HTTP API, with a browser playground (`toolformer serve`).

Importing this package is cheap; FastAPI, uvicorn and torch load with `toolformer.serve.app` and the backends.
"""
