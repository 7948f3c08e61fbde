"""Sources (JSONL, CSV, XLSX, HTTP feed) → validated records → idempotent upsert, with per-row errors."""
