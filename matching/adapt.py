"""Adapt the encoder to the catalogue: contrastive fine-tuning of e5-small on (abstract → title) pairs, no labels.

An achievement's abstract reads like a need (a problem, a method, an application) and its title like what the index
holds; training the query side to find its own title among a batch of others teaches the encoder the catalogue's
vocabulary. sentence-transformers' MultipleNegativesRankingLoss (in-batch negatives), only the last few BERT layers
trained, one epoch, seeded. The result is an ordinary sentence-transformers folder in the model cache, named by a
fingerprint of (base model, pairs, settings), built once and atomically like the prepared default
(embedding._build_once), then exported to int8 ONNX the same way the default is; ``adapted-current.json`` in the
cache names the one `TECHMATCH_ENCODER_ADAPTED=true` serves.

The loop is plain torch rather than SentenceTransformerTrainer: the Trainer needs ``datasets`` and ``accelerate``,
two large dependencies for what is forty lines here.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from matching.embedding import (
    DEFAULT_MODEL_NAME,
    DEFAULT_PROMPTS,
    Int8GuardError,
    _build_once,
    _complete_marker,
    _dist_version,
    _export_onnx_int8,
    _file_sha256,
    _write_json,
    is_complete_onnx_dir,
    prepare_default_model,
)
from matching.text import normalise

log = logging.getLogger(__name__)

# Bump whenever what adapt writes changes (training loop, saved layout), so cached adaptations get rebuilt.
ADAPT_FORMAT_VERSION = 1
ADAPTED_PREFIX = f"{DEFAULT_MODEL_NAME}-adapted"
CURRENT_POINTER = "adapted-current.json"
_MARKER = "techmatch-model.json"
# Pairs shorter than this teach nothing (an abstract of a few characters is a title again).
MIN_QUERY_CHARS = 20
MIN_PASSAGE_CHARS = 4


@dataclass(frozen=True)
class AdaptConfig:
    """How the encoder is adapted; every field is part of the result's fingerprint."""

    layers: int = 4  # the last N BERT layers train; embeddings and the lower layers stay frozen
    epochs: int = 1
    batch_size: int = 32  # also the number of in-batch negatives + 1
    max_length: int = 128  # tokens per text while training (serving keeps the model's own limit)
    learning_rate: float = 2e-5
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    scale: float = 20.0  # MultipleNegativesRankingLoss's inverse temperature (its default)
    seed: int = 13

    def __post_init__(self) -> None:
        if self.layers < 1 or self.epochs < 1 or self.batch_size < 2 or self.max_length < 8:
            raise ValueError("layers and epochs must be >= 1, batch_size >= 2, max_length >= 8")
        if not 0 < self.learning_rate < 1 or not 0 <= self.warmup_ratio < 1:
            raise ValueError("learning_rate must be in (0, 1) and warmup_ratio in [0, 1)")


@dataclass(frozen=True)
class Pair:
    """One training example: the query side (an abstract) and the passage it should find (its title)."""

    query: str
    passage: str


class Int8Refused(RuntimeError):
    """The adaptation trained, but its int8 export falls below the cosine guard: only its fp32 folder is usable."""

    def __init__(self, adapted: AdaptedModel, reason: str) -> None:
        super().__init__(reason)
        self.adapted = adapted


@dataclass(frozen=True)
class AdaptedModel:
    """An adapted encoder in the cache: its fp32 sentence-transformers folder and its int8 ONNX export."""

    name: str
    fp32: Path
    onnx: Path

    @property
    def onnx_name(self) -> str:
        return f"{self.name}-onnx-int8"


def make_pairs(rows: Iterable[tuple[str | None, str | None]]) -> list[Pair]:
    """(title, abstract) rows → normalised, de-duplicated (abstract → title) pairs in a stable order.

    Pairs whose title is the abstract's own opening are dropped (FewCLUE rows get such titles in the demo loader).
    A title or an abstract seen before is dropped with its row: two rows sharing a title would be each other's
    in-batch negatives while being the same thing. Sorted before de-duplication, so the pairs (and the fingerprint)
    do not depend on the order a database returns rows in.
    """
    candidates: list[Pair] = []
    for title, abstract in rows:
        passage, query = normalise(title), normalise(abstract)
        if len(query) < MIN_QUERY_CHARS or len(passage) < MIN_PASSAGE_CHARS:
            continue
        if query.startswith(passage):  # a title cut from its own abstract's first sentence: nothing to learn
            continue
        candidates.append(Pair(query=query, passage=passage))
    seen_titles: set[str] = set()
    seen_abstracts: set[str] = set()
    pairs: list[Pair] = []
    for pair in sorted(candidates, key=lambda p: (p.passage, p.query)):
        if pair.passage in seen_titles or pair.query in seen_abstracts:
            continue
        seen_titles.add(pair.passage)
        seen_abstracts.add(pair.query)
        pairs.append(pair)
    return pairs


def fingerprint(pairs: Sequence[Pair], config: AdaptConfig, *, base: Path) -> str:
    """A stable hex digest of what an adaptation depends on: the base model, the pairs and the config."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"format": ADAPT_FORMAT_VERSION, "config": asdict(config)}, sort_keys=True).encode())
    digest.update(_file_sha256(base / _MARKER).encode())
    for pair in pairs:
        digest.update(pair.query.encode() + b"\0" + pair.passage.encode() + b"\1")
    return digest.hexdigest()


def adapted_name(digest: str) -> str:
    """The model name (and cache folder name) of the adaptation with this fingerprint."""
    return f"{ADAPTED_PREFIX}-{digest[:12]}"


def is_complete_adapted_dir(folder: Path) -> bool:
    """True when ``folder`` holds a fully written adaptation of the current format."""
    return _complete_marker(folder, ADAPT_FORMAT_VERSION) is not None


def train(
    *,
    base: Path,
    pairs: Sequence[Pair],
    config: AdaptConfig,
    folder: Path,
    progress: Callable[[int, int, float], None] | None = None,
) -> dict[str, Any]:
    """Fine-tune the model in ``base`` on ``pairs`` and save it as a sentence-transformers folder in ``folder``.

    Returns what the run did (steps, losses, seconds). Deterministic for a given base, pairs and config on one
    machine (seeded shuffling, dropout and initialisation; CPU kernels).
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
    from transformers import get_linear_schedule_with_warmup

    if len(pairs) < 2:
        raise ValueError(f"adapting needs at least 2 pairs (in-batch negatives), got {len(pairs)}")
    started = time.perf_counter()
    random.seed(config.seed)
    torch.manual_seed(config.seed)
    model = SentenceTransformer(str(base), device="cpu", local_files_only=True)
    served_max_length = model.max_seq_length
    model.max_seq_length = config.max_length
    bert: Any = model[0].auto_model  # a BertModel (transformers types it loosely)
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    layers = bert.encoder.layer
    if config.layers > len(layers):
        raise ValueError(f"the model has {len(layers)} layers; cannot train the last {config.layers}")
    for layer in layers[-config.layers :]:
        layer.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    loss_fn = MultipleNegativesRankingLoss(model, scale=config.scale)

    order = list(pairs)
    batches: list[list[Pair]] = []
    shuffler = random.Random(config.seed)
    for _ in range(config.epochs):
        shuffler.shuffle(order)
        epoch = [order[i : i + config.batch_size] for i in range(0, len(order), config.batch_size)]
        batches += [batch for batch in epoch if len(batch) >= 2]  # a one-pair batch has no negative
    optimizer = torch.optim.AdamW(trainable, lr=config.learning_rate, weight_decay=config.weight_decay)
    scheduler = get_linear_schedule_with_warmup(
        optimizer, num_warmup_steps=int(config.warmup_ratio * len(batches)), num_training_steps=len(batches)
    )
    query_prompt, passage_prompt = DEFAULT_PROMPTS["query"], DEFAULT_PROMPTS["passage"]
    losses: list[float] = []
    model.train()
    for step, batch in enumerate(batches, start=1):
        features = [
            model.preprocess([query_prompt + pair.query for pair in batch]),
            model.preprocess([passage_prompt + pair.passage for pair in batch]),
        ]
        loss = loss_fn(features, torch.empty(0))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        if progress is not None:
            progress(step, len(batches), losses[-1])
    model.eval()
    model.max_seq_length = served_max_length
    model.save(str(folder), create_model_card=False)
    head = losses[: max(1, len(losses) // 10)]
    tail = losses[-max(1, len(losses) // 10) :]
    return {
        "pairs": len(pairs),
        "steps": len(batches),
        "loss_first_tenth": round(sum(head) / len(head), 4),
        "loss_last_tenth": round(sum(tail) / len(tail), 4),
        "seconds": round(time.perf_counter() - started, 1),
        "torch": _dist_version("torch"),
        "sentence_transformers": _dist_version("sentence-transformers"),
    }


def prepare_adapted_model(
    cache_dir: Path,
    *,
    pairs: Sequence[Pair],
    config: AdaptConfig | None = None,
    progress: Callable[[int, int, float], None] | None = None,
    make_current: bool = True,
) -> AdaptedModel:
    """Adapt the default model on ``pairs`` once (cached by fingerprint), export it to int8, and return both folders.

    ``make_current``: point ``adapted-current.json`` at it, so that TECHMATCH_ENCODER_ADAPTED serves it.
    """
    config = config or AdaptConfig()
    base = prepare_default_model(Path(cache_dir))
    digest = fingerprint(pairs, config, base=base)
    name = adapted_name(digest)
    models = Path(cache_dir) / "models"
    fp32_target = models / name

    def build(folder: Path) -> None:
        report = train(base=base, pairs=pairs, config=config, folder=folder, progress=progress)
        files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
        _write_json(
            folder / _MARKER,
            {
                "format_version": ADAPT_FORMAT_VERSION,
                "name": name,
                "fingerprint": digest,
                "base": {"model": DEFAULT_MODEL_NAME, "marker_sha256": _file_sha256(base / _MARKER)},
                "config": asdict(config),
                "training": report,
                "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                "files": files,
            },
        )

    fp32 = _build_once(fp32_target, build=build, is_complete=lambda: is_complete_adapted_dir(fp32_target))
    adapted = AdaptedModel(name=name, fp32=fp32, onnx=models / f"{name}-onnx-int8")
    onnx_target = adapted.onnx
    try:
        _build_once(
            onnx_target,
            build=lambda folder: _export_onnx_int8(fp32, folder, name=adapted.onnx_name),
            is_complete=lambda: is_complete_onnx_dir(onnx_target, source=fp32),
        )
    except Int8GuardError as exc:
        # The int8 guard refused the export: the fp32 adaptation stands (kept, measurable on torch), never current.
        raise Int8Refused(adapted, str(exc)) from None
    if make_current:
        set_current(cache_dir, adapted)
    return adapted


def set_current(cache_dir: Path, adapted: AdaptedModel) -> None:
    """Point ``adapted-current.json`` at ``adapted`` (written to a temp file, then renamed: never half a pointer)."""
    models = Path(cache_dir) / "models"
    models.mkdir(parents=True, exist_ok=True)
    handle, tmp = tempfile.mkstemp(prefix=f".{CURRENT_POINTER}.", dir=models)
    with os.fdopen(handle, "w", encoding="utf-8") as out:
        json.dump({"name": adapted.name}, out)
    os.replace(tmp, models / CURRENT_POINTER)


def current_adapted(cache_dir: Path) -> AdaptedModel | None:
    """The adaptation ``adapted-current.json`` names, when it and its int8 export are complete; else None."""
    models = Path(cache_dir) / "models"
    try:
        name = json.loads((models / CURRENT_POINTER).read_text(encoding="utf-8"))["name"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(name, str) or not name.startswith(ADAPTED_PREFIX) or "/" in name:
        return None
    adapted = AdaptedModel(name=name, fp32=models / name, onnx=models / f"{name}-onnx-int8")
    if not is_complete_adapted_dir(adapted.fp32) or not is_complete_onnx_dir(adapted.onnx, source=adapted.fp32):
        return None
    return adapted
