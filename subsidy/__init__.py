"""The policy's money rules as dated, cited data, the engine that applies them, and the trace of every yuan."""
