"""The one Settings object: env prefix TECHMATCH_, defaults that run the embedded mode."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Runtime configuration; every field can be set as TECHMATCH_<NAME>."""

    model_config = SettingsConfigDict(env_prefix="TECHMATCH_", extra="ignore")

    environment: Literal["development", "test", "production"] = "development"
    data_dir: Path = REPO_ROOT / "var"
    cache_dir: Path = Path.home() / ".cache" / "techmatch"
    database_url: str | None = None
    # The bootstrap admin credential (a Bearer token with the admin role); users and their tokens come after it.
    admin_token: str | None = None
    # Bearer tokens from POST /api/v1/tokens live this long; failed logins per username are limited per window.
    token_ttl_hours: float = Field(default=24 * 30, gt=0)
    login_max_failures: int = Field(default=5, ge=1)
    login_window_seconds: float = Field(default=15 * 60, gt=0)
    # Signs the pages' session cookies; unset: derived from admin_token, else a random key kept in data_dir.
    secret_key: str | None = None
    # Any sentence-transformers folder; empty means the prepared multilingual-e5-small.
    embedding_model: str | None = None
    embedding_batch_size: int = 32
    # How the bundled e5-small encodes: "onnx-int8" (ONNX Runtime, int8 weights exported at set-up: a few ms a
    # query, cosine >= 0.99 to fp32) or "torch" (the fp32 model). An index embedded by one is refused by the other
    # until `techmatch index rebuild`. A custom embedding_model always runs on torch.
    encoder: Literal["onnx-int8", "torch"] = "onnx-int8"
    # Serve the bundled e5-small as adapted to the catalogue by `techmatch encoder adapt` (matching/adapt.py) when
    # that has been run; the base model until then. Like a change of encoder, the switch needs an index rebuild.
    encoder_adapted: bool = False
    # ONNX Runtime threads per encoder pass; 0 = one per physical core.
    encoder_threads: int = Field(default=0, ge=0)
    # Threads one query's three lists (BM25 words, BM25 bigrams, encoder + dense) run on side by side, in each
    # process (segment engines); 1 runs them one after another.
    query_threads: int = Field(default=2, ge=1)
    # Shared data folder (real corpora for demo, eval and benchmarks); absent on a fresh clone elsewhere.
    shared_data_dir: Path = REPO_ROOT.parent / "shared" / "data"

    # Every process polls the change feed this often (seconds); a write waits up to write_visible_timeout for its
    # own change to be searchable before answering (the answer says whether it is).
    index_poll_interval: float = 0.2
    write_visible_timeout: float = 2.0

    # The embedded index engine: append-only segments with background merges (a write costs O(that write)), or the
    # older whole-generation files (every write rewrites the index; kept for comparison in benchmarks), or the
    # scale-out adapter: segments for words, vectors in PostgreSQL + pgvector shared by every replica.
    index_engine: Literal["segments", "generations", "pgvector"] = "segments"
    # pgvector engine: the PostgreSQL holding the vectors (default: database_url, which must then be PostgreSQL with
    # the vector extension), the prefix of its table names, and the HNSW search breadth.
    vector_database_url: str | None = None
    vector_namespace: str = "techmatch"
    pgvector_ef_search: int = 200
    # Segments are merged in the background, tiered: this many of one size tier (log_factor of their rows) become
    # one; past the cap the smallest are merged whatever their tier.
    index_merge_factor: int = 4
    index_max_segments: int = 24
    # In an index of at least bm25_common_min_docs live docs (where segments also start to search HNSW graphs),
    # query terms in more than bm25_common_df of them do not choose a BM25 list's candidates; they still score every
    # candidate (matching/maxscore.py, `common`; measured in benchmarks/common_terms.py and live_index.py). Smaller
    # indexes, benchmarks A and B among them, rank with exact lists.
    bm25_common_df: float | None = Field(default=0.05, gt=0.0, le=1.0)
    bm25_common_min_docs: int = Field(default=50_000, ge=0)

    # Targeted push: at most this many new leads per subscription per batch.
    push_max_leads: int = Field(default=5, ge=1, le=100)
    # Deals without a transition for this many days are listed as stale (GET /api/v1/deals/alerts).
    deal_stale_days: int = Field(default=30, ge=1)
    # The server runs push batches on this cron schedule (minute hour day month weekday, or six fields with seconds
    # first, in scheduler_timezone; None: only by hand) and sends due deliveries every delivery_interval_s;
    # scheduler=False runs neither in this process.
    scheduler: bool = True
    scheduler_timezone: str = "Asia/Shanghai"
    push_schedule: str | None = "0 8 * * mon"
    delivery_interval_s: float = Field(default=30.0, gt=0)
    # Deliveries (webhook, e-mail) are retried with exponential backoff: delivery_backoff_s, doubling, capped; after
    # delivery_max_attempts they are marked failed (visible to staff, retried by hand).
    delivery_max_attempts: int = Field(default=8, ge=1)
    delivery_backoff_s: float = Field(default=60.0, gt=0)
    delivery_backoff_max_s: float = Field(default=6 * 3600.0, gt=0)
    webhook_timeout_s: float = Field(default=10.0, gt=0)
    # The SMTP relay e-mail deliveries go through (None: e-mail deliveries fail visibly until one is set).
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_sender: str = "techmatch@localhost"
    smtp_starttls: bool = False
    smtp_username: str | None = None
    smtp_password: str | None = None

    # Index: exact search below this many vectors, HNSW above (generation engine).
    hnsw_threshold: int = 50_000
    hnsw_m: int = 32
    hnsw_ef_search: int = 128
    # How the segment engine's HNSW graphs store their copy of the vectors: fp16 halves it (and the RSS its
    # searches map); scores stay the fp32 ones to ~1e-4 (README: "1M memory").
    hnsw_storage: Literal["fp16", "fp32"] = "fp16"
    # Tombstones + delta above this fraction of the HNSW graph trigger a rebuild from stored vectors.
    hnsw_max_stale_fraction: float = 0.2

    # Ranking, tuned on benchmark A (dev half) and benchmark B with `python -m matching.eval` (see README):
    # z-scored weighted sum of jieba-word BM25, character-bigram BM25 and e5 cosine.
    fusion: Literal["weighted", "rrf"] = "weighted"
    fusion_normalisation: Literal["zscore", "minmax"] = "zscore"
    weight_lexical_words: float = 0.4
    weight_lexical_chars: float = 0.3
    weight_dense: float = 0.3
    rrf_k: int = 60
    candidate_depth: int = 200
    # A need's title is its densest statement: repeated in the BM25 query, and the whole query vector (1.0: the
    # title alone is encoded, one short encoder pass; below 1 the text is encoded too and mixed in, twice the cost
    # and more for long needs: A-dev 0.2033 / B 0.5159 at 0.7 against 0.2014 / 0.5158 at 1.0, int8).
    query_title_boost: int = 2
    query_title_vector_weight: float = 1.0
    bm25_k1: float = 1.2
    bm25_b: float = 0.75
    # "learned" (the default): the logistic re-ranker orders the fused candidates (matching/rerank.py;
    # ranker_model, else the shipped matching/resources/ranker-logistic.json trained on A-dev). Chosen by 5-fold
    # cross-validation: A-dev nDCG@10 0.2025 held out against the fold-tuned fusion's 0.188, and 0.5062 on B, which
    # it never saw (the fusion: 0.5158). "fusion": the weighted sum above orders them.
    ranker: Literal["fusion", "learned"] = "learned"
    ranker_model: Path | None = None
    # Match strength (matching/calibration.py): a hit's calibrated probability of being a real match (graded 2+)
    # is "strong" from strength_strong, "possible" from strength_possible, else "weak"; a query whose best hit is
    # weak is answered as such. Held out on A-dev (5-fold), hits so labelled were real matches 20% / 25% / 7% of
    # the time (A counts unjudged pairs as not relevant: lower bounds); on B, unseen, 90% / 12% / 7.5%.
    # calibration_model: a calibration file fitted for the served ranker (default: the re-ranker's own, or the
    # shipped one of the default fusion).
    strength_strong: float = Field(default=0.35, ge=0.0, le=1.0)
    strength_possible: float = Field(default=0.15, ge=0.0, le=1.0)
    calibration_model: Path | None = None

    @property
    def resolved_database_url(self) -> str:
        """The SQLAlchemy URL: TECHMATCH_DATABASE_URL or a SQLite file under data_dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{self.data_dir / 'techmatch.sqlite3'}"

    @property
    def index_dir(self) -> Path:
        """Where the search index files live."""
        return self.data_dir / "index"

    @model_validator(mode="after")
    def _refuse_unsafe(self) -> Settings:
        if self.environment == "production" and (not self.admin_token or len(self.admin_token) < 16):
            raise ValueError("TECHMATCH_ADMIN_TOKEN of at least 16 characters is required in production")
        for name in ("weight_lexical_words", "weight_lexical_chars", "weight_dense"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0")
        return self


class _Holder:
    settings: Settings | None = None


def get_settings() -> Settings:
    """The process-wide settings (read from the environment once)."""
    if _Holder.settings is None:
        _Holder.settings = Settings()
    return _Holder.settings


def reset_settings(settings: Settings | None = None) -> Settings:
    """Replace the process-wide settings (tests, CLI options)."""
    _Holder.settings = settings or Settings()
    return _Holder.settings
