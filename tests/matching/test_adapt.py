"""Encoder adaptation: pairs, a real (tiny) training run, the cached adapted model and its selection."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import load_file

from matching.adapt import (
    CURRENT_POINTER,
    AdaptConfig,
    Int8Refused,
    Pair,
    adapted_name,
    current_adapted,
    fingerprint,
    is_complete_adapted_dir,
    make_pairs,
    prepare_adapted_model,
    train,
)
from matching.embedding import DEFAULT_MODEL_NAME, OnnxEmbedder, load_embedder

REPO = Path(__file__).resolve().parents[2]

ROWS = [
    (
        "锂离子电池正极材料制备方法",
        "本发明公开了一种锂离子电池正极材料的制备方法，采用共沉淀法合成前驱体，提高了循环稳定性。",
    ),
    ("海水淡化反渗透膜", "针对海水淡化过程中反渗透膜易污染的问题，制备了一种抗污染复合膜，通量提高百分之三十。"),
    ("基于深度学习的图像去噪", "提出一种基于卷积神经网络的图像去噪方法，在低照度条件下有效抑制噪声并保留细节纹理。"),
    ("风电齿轮箱故障诊断", "利用振动信号与小波包分解提取特征，实现风电机组齿轮箱早期故障的在线诊断与预警。"),
    ("农作物病虫害遥感监测", "基于多光谱遥感影像构建植被指数模型，对小麦条锈病发生范围和严重程度进行大面积监测。"),
    ("高强度铝合金焊接工艺", "研究了搅拌摩擦焊工艺参数对高强度铝合金接头组织与力学性能的影响，获得最优工艺窗口。"),
]
TINY = AdaptConfig(layers=1, batch_size=3, max_length=32, learning_rate=1e-4, warmup_ratio=0.0)


def test_pairs_are_normalised_deduplicated_and_stably_ordered():
    rows = [
        *ROWS,
        ("鋰離子電池正極材料製備方法", "另一段摘要，它的标题与第一行相同（繁体写法），应当被视为重复而舍弃。"),
        ("太短", "短摘要"),  # abstract under the minimum length
        # a title cut from the abstract's own first sentence
        ("提出一种基于卷积神经网络", "提出一种基于卷积神经网络的图像超分辨率重建方法，显著提升了重建质量。"),
        ("", "没有标题的一行摘要，它不能成为一对训练样本，因为没有可供检索的标题。"),
    ]
    pairs = make_pairs(rows)
    assert [p.passage for p in pairs] == sorted(p.passage for p in pairs)
    assert len(pairs) == len(ROWS)
    assert make_pairs(reversed(rows)) == pairs  # the order rows arrive in changes nothing
    assert all(isinstance(p, Pair) and len(p.query) >= 20 for p in pairs)
    # Normalised at the boundary: a traditional-script title is the same title.
    assert make_pairs([("鋰離子電池", ROWS[0][1])])[0].passage == "锂离子电池"


def test_fingerprint_follows_pairs_and_config(default_model_path: Path):
    pairs = make_pairs(ROWS)
    digest = fingerprint(pairs, TINY, base=default_model_path)
    assert digest == fingerprint(list(pairs), AdaptConfig(**TINY.__dict__), base=default_model_path)
    assert digest != fingerprint(pairs[:-1], TINY, base=default_model_path)
    assert digest != fingerprint(pairs, AdaptConfig(**{**TINY.__dict__, "seed": 14}), base=default_model_path)
    assert adapted_name(digest).startswith(f"{DEFAULT_MODEL_NAME}-adapted-")


def test_config_refuses_nonsense():
    with pytest.raises(ValueError):
        AdaptConfig(batch_size=1)
    with pytest.raises(ValueError):
        AdaptConfig(learning_rate=0)


def test_training_moves_only_the_last_layers_and_is_reproducible(default_model_path: Path, tmp_path: Path):
    pairs = make_pairs(ROWS)
    steps: list[tuple[int, int, float]] = []
    first, second = tmp_path / "a", tmp_path / "b"
    report = train(base=default_model_path, pairs=pairs, config=TINY, folder=first, progress=lambda *s: steps.append(s))
    train(base=default_model_path, pairs=pairs, config=TINY, folder=second)
    assert report["steps"] == 2 and [s[:2] for s in steps] == [(1, 2), (2, 2)]
    assert all(np.isfinite(s[2]) and s[2] > 0 for s in steps)

    base = load_file(str(default_model_path / "model.safetensors"))
    a, b = load_file(str(first / "model.safetensors")), load_file(str(second / "model.safetensors"))
    last = [k for k in base if ".layer.11." in k]
    frozen = [k for k in base if ".layer.0." in k or "embeddings" in k]
    assert last and frozen
    assert any(not np.array_equal(base[k], a[_key(a, k)]) for k in last)  # the trained layer moved
    assert all(np.array_equal(base[k], a[_key(a, k)]) for k in frozen)  # the frozen ones did not
    assert all(np.array_equal(a[k], b[k]) for k in a)  # same pairs, config and seed: the same weights

    # The saved folder is an ordinary sentence-transformers model with e5's prompts, usable as a custom model.
    embedder = load_embedder(model=str(first), cache_dir=tmp_path, encoder="torch")
    assert embedder.encode_queries(["海水淡化膜"]).shape == (1, 384)
    config = json.loads((first / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    assert config["prompts"]["query"] == "query: "


def _key(weights: dict[str, np.ndarray], base_key: str) -> str:
    # The saved state dict may name tensors with or without the "bert."/"embeddings." prefixes of the source.
    if base_key in weights:
        return base_key
    return next(k for k in weights if k.endswith(base_key.split(".", 1)[-1]))


@pytest.mark.slow
def test_adapt_command_caches_exports_and_serves_the_adapted_encoder(
    default_model_path: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
):
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    # The prepared base model, shared (not re-dequantised) through a link.
    os.symlink(default_model_path, cache / "models" / DEFAULT_MODEL_NAME)
    with caplog.at_level(logging.WARNING):
        before = load_embedder(model=None, cache_dir=cache, adapted=True, encoder="torch")
    assert before.name == DEFAULT_MODEL_NAME and "no adapted encoder is ready" in caplog.text

    env = {
        **os.environ,
        "TECHMATCH_CACHE_DIR": str(cache),
        "TECHMATCH_DATA_DIR": str(tmp_path / "data"),
        "TECHMATCH_ENVIRONMENT": "test",
        "HF_HUB_OFFLINE": "1",
    }
    env.pop("TECHMATCH_DATABASE_URL", None)
    args = ["encoder", "adapt", "--max-pairs", "6", "--layers", "1", "--batch-size", "3"]
    run = subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr
    assert "6 (abstract → title) pairs" in run.stdout and "step 2/2" in run.stdout

    adapted = current_adapted(cache)
    assert adapted is not None and adapted.fp32.is_dir() and adapted.onnx.is_dir()
    marker = json.loads((adapted.fp32 / "techmatch-model.json").read_text(encoding="utf-8"))
    assert marker["training"]["pairs"] == 6 and marker["config"]["layers"] == 1
    assert json.loads((cache / "models" / CURRENT_POINTER).read_text())["name"] == adapted.name

    served = load_embedder(model=None, cache_dir=cache, adapted=True, encoder="onnx-int8")
    assert isinstance(served, OnnxEmbedder) and served.name == adapted.onnx_name
    reference = served.fp32_reference()
    assert reference is not None and reference.name == adapted.name
    texts = ["海水淡化的膜材料", "一种基于深度学习的风电齿轮箱故障诊断方法"]
    cosines = (served.encode_queries(texts) * reference.encode_queries(texts)).sum(axis=1)
    assert cosines.min() >= 0.99  # the int8 export of the adaptation is checked like the default's

    # Cached by fingerprint: the same command again trains nothing.
    again = subprocess.run(
        [sys.executable, "-m", "app.cli", *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=600
    )
    assert again.returncode == 0 and "step " not in again.stdout


@pytest.mark.slow
def test_an_adaptation_whose_int8_export_is_refused_keeps_its_fp32_folder_and_is_not_served(
    default_model_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """The int8 guard (cosine to fp32 on a fixed sample) refuses the export — here made strict enough that any
    quantisation fails it, as the full adaptation's export (min cosine 0.974) fails the real one: the trained fp32
    folder stays, usable on torch and named in the error, and nothing points TECHMATCH_ENCODER_ADAPTED at it."""
    cache = tmp_path / "cache"
    (cache / "models").mkdir(parents=True)
    os.symlink(default_model_path, cache / "models" / DEFAULT_MODEL_NAME)
    monkeypatch.setattr("matching.embedding.MIN_INT8_COSINE", 1.01)
    pairs = make_pairs(ROWS)[:4]
    with pytest.raises(Int8Refused) as refused:
        prepare_adapted_model(cache, pairs=pairs, config=AdaptConfig(layers=1, batch_size=2))
    adapted = refused.value.adapted
    assert is_complete_adapted_dir(adapted.fp32) and "too far from fp32" in str(refused.value)
    assert current_adapted(cache) is None and not (cache / "models" / CURRENT_POINTER).exists()
    fp32 = load_embedder(model=str(adapted.fp32), cache_dir=cache, encoder="torch")
    assert fp32.encode_queries(["海水淡化的膜材料"]).shape == (1, 384)
