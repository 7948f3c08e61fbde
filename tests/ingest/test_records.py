"""Row schemas: exact money, strict dates, lists from one cell, Chinese labels, normalised text, stable hashes."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from pydantic import ValidationError

from ingest.records import AchievementRecord, NeedRecord, parse_money
from models.tables import ListingStatus, MaturityStage, OrgKind, TransferMode, Visibility


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("100", Decimal("100.00")),
        (12.3, Decimal("12.30")),
        (Decimal("0.1"), Decimal("0.10")),
        (7, Decimal("7.00")),
        ("12.5万", Decimal("125000.00")),
        ("12.5万元", Decimal("125000.00")),
        ("1,234,567.89元", Decimal("1234567.89")),
        ("￥３００", Decimal("300.00")),
        ("1.2亿", Decimal("120000000.00")),
        ("1.230", Decimal("1.23")),  # a trailing zero is not a third decimal place
        ("面议", None),
    ],
)
def test_money_parses_exactly(raw: object, expected: Decimal | None) -> None:
    got = parse_money(raw)
    assert got == expected
    if expected is not None:
        assert isinstance(got, Decimal)
        assert str(got) == str(expected)


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        ("abc", "not an amount"),
        ("12.345", "more than 2 decimal places"),
        (-5, "negative"),
        ("1e20", "not an amount"),
        (True, "not an amount"),
        (Decimal("NaN"), "not an amount"),
        ("100000000000000", "too large"),
    ],
)
def test_money_rejects(raw: object, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_money(raw)


def test_minimal_need_gets_defaults() -> None:
    need = NeedRecord.model_validate({"external_id": " n1 ", "title": "标题"})
    assert need.external_id == "n1"
    assert need.visibility is Visibility.public
    assert need.status is ListingStatus.published
    assert need.columns()["description"] == ""
    assert need.owner_record() is None


def test_text_is_normalised_and_blank_cells_are_absent() -> None:
    need = NeedRecord.model_validate(
        {
            "external_id": "n1",
            "title": "鋰電池隔膜　ＡＢＣ",
            "description": "  耐熱性\n\n  測試 ",
            "region": "",
            "budget_yuan": "  ",
            "deadline": None,
            "owner": "威海市（環翠區）某公司",
        }
    )
    assert need.title == "锂电池隔膜 ABC"  # case kept for display; search folds it
    assert need.description == "耐热性\n\n测试"  # paragraphs kept
    assert need.region is None and need.budget_yuan is None and need.deadline is None
    assert need.owner == "威海市(环翠区)某公司"


def test_chinese_headers_and_labels_map_to_fields() -> None:
    need = NeedRecord.model_validate(
        {
            "\ufeff编号": 1001,
            "需求名称": "海洋牧场监测",
            "需求描述": "描述",
            "预算（万元）": "12.5",
            "截止日期": "2026-01-31",
            "是否公开": "不公开",
            "状态": "草稿",
            "企业名称": "某公司",
            "单位类型": "企业",
            "是否威海": "否",
            "备注": "unknown columns are ignored",
        }
    )
    assert need.external_id == "1001"
    assert need.title == "海洋牧场监测"
    assert need.budget_yuan == Decimal("125000.00")
    assert need.deadline == date(2026, 1, 31)
    assert need.visibility is Visibility.private
    assert need.status is ListingStatus.draft
    assert need.owner_record() is not None
    assert need.owner_record().kind is OrgKind.enterprise
    assert need.owner_record().in_weihai is False


def test_achievement_lists_from_one_cell() -> None:
    ach = AchievementRecord.model_validate(
        {
            "external_id": "a1",
            "title": "t",
            "keywords": "海水淡化;膜材料、反滲透，膜材料",
            "maturity_stage": "中试",
            "transfer_modes": "转让;许可;licence",
            "patent_numbers": "zl 2019 1 0123456.7；ZL202010654321.X",
        }
    )
    assert ach.keywords == ["海水淡化", "膜材料", "反渗透"]
    assert ach.maturity_stage is MaturityStage.pilot
    assert ach.transfer_modes == [TransferMode.transfer, TransferMode.licence]
    assert ach.columns()["transfer_modes"] == ["transfer", "licence"]
    assert ach.patent_numbers == ["ZL201910123456.7", "ZL202010654321.X"]

    listed = AchievementRecord.model_validate({"external_id": "a2", "title": "t", "keywords": ["a", " b ", ""]})
    assert listed.keywords == ["a", "b"]


@pytest.mark.parametrize(
    ("raw", "field", "message"),
    [
        ({"external_id": "x"}, "title", "Field required"),
        ({"title": "t"}, "external_id", "Field required"),
        ({"external_id": "x", "title": "t", "deadline": "2026/01/31"}, "deadline", "YYYY-MM-DD"),
        ({"external_id": "x", "title": "t", "deadline": "2026-02-30"}, "deadline", "not a calendar date"),
        ({"external_id": "x", "title": "t", "visibility": "secret"}, "visibility", "'public' or 'private'"),
        ({"external_id": "x", "title": "t" * 501}, "title", "at most 500"),
        ({"external_id": "x", "title": ["a list"]}, "title", "expected text"),
    ],
)
def test_need_rejections_name_the_field(raw: dict, field: str, message: str) -> None:
    with pytest.raises(ValidationError) as caught:
        NeedRecord.model_validate(raw)
    errors = caught.value.errors()
    assert [e["loc"][0] for e in errors] == [field]
    assert message in errors[0]["msg"]


def test_bad_transfer_mode_names_the_item() -> None:
    with pytest.raises(ValidationError) as caught:
        AchievementRecord.model_validate({"external_id": "x", "title": "t", "transfer_modes": ["转让", "gift"]})
    assert caught.value.errors()[0]["loc"] == ("transfer_modes", 1)


def test_content_hash_is_canonical_and_sees_every_content_field() -> None:
    base = {"external_id": "n1", "title": "锂电池", "budget_yuan": "12.5"}
    h = NeedRecord.model_validate(base).content_hash()
    assert len(h) == 40
    # Same content written differently: same hash (normalised text, money to 2 places, traditional script).
    assert NeedRecord.model_validate({**base, "title": "鋰電池", "budget_yuan": Decimal("12.50")}).content_hash() == h
    # Identity is not content.
    assert NeedRecord.model_validate({**base, "external_id": "other", "source": "s"}).content_hash() == h
    assert NeedRecord.model_validate({**base, "title": "锂电池2"}).content_hash() != h
    assert NeedRecord.model_validate({**base, "budget_yuan": "12.51"}).content_hash() != h
    assert NeedRecord.model_validate({**base, "owner_region": "威海"}).content_hash() != h


def test_a_nested_owner_object_is_read_like_flat_owner_fields() -> None:
    ach = AchievementRecord.model_validate(
        {
            "external_id": "a1",
            "title": "t",
            "owner": {"name": "哈爾濱工業大學（威海）", "kind": "高校", "region": "威海", "in_weihai": True},
        }
    )
    owner = ach.owner_record()
    assert owner is not None
    assert (owner.name, owner.kind, owner.region, owner.in_weihai) == (
        "哈尔滨工业大学(威海)",
        OrgKind.university,
        "威海",
        True,
    )
