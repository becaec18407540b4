"""Self-supervised data generation (paper §2): heuristics → sample → execute → filter → merge."""
