"""Developer tools: golden sharding files."""
