"""Run models with tools: decoding that executes calls, and readers for the call formats models write."""
