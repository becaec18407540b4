"""Tools a model can call: the Tool type, the registry, the paper's five built-ins and MCP/Python tool loading.

Importing this package is cheap: bm25s, torch, transformers and mcp are imported only when a tool first needs them.
"""

from toolformer.tools.base import Tool, ToolOutput, tool
from toolformer.tools.registry import BUILTIN_NAMES, ToolRegistry, builtin_tools, load_tools

__all__ = ["BUILTIN_NAMES", "Tool", "ToolOutput", "ToolRegistry", "builtin_tools", "load_tools", "tool"]
