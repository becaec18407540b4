"""Worked examples of extending toolformer: your own tool with its proposer (`unit_converter`)."""
