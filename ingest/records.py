"""Row schemas: one raw row (file line, sheet row, feed item) → a validated, normalised need or achievement record."""

from __future__ import annotations

import enum
import hashlib
import json
import re
import unicodedata
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any, ClassVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from matching.text import normalise, tidy
from models.tables import IngestKind, ListingStatus, MaturityStage, OrgKind, TransferMode, Visibility

CENT = Decimal("0.01")
# The money columns are Numeric(16, 2): at most 14 digits before the point.
MONEY_LIMIT = Decimal(10) ** 14
# Amounts people write instead of a number in Chinese listings ("price on request"); they mean "no amount".
NEGOTIABLE = frozenset({"面议", "议价", "待定", "协商", "面谈", "电议"})
_UNITS = (
    ("亿元", Decimal(10) ** 8),
    ("亿", Decimal(10) ** 8),
    ("万元", Decimal(10) ** 4),
    ("万", Decimal(10) ** 4),
    ("元", Decimal(1)),
)
_AMOUNT = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)")
_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
# Keyword / mode / patent lists written as one cell: "a;b、c", "a，b", one per line.
_LIST_SPLIT = re.compile(r"[;；,，、|\n\r]+")
_PLAIN_NUMBER = re.compile(r"[\d.,\s]+")


# --- scalar parsers (also usable on their own) ----------------------------------------------------------------------


def parse_money(value: object) -> Decimal | None:
    """Yuan as an exact Decimal with 2 places: 1234.5, "1,234.50元", "12.5万", "¥300"; "面议" means no amount."""
    if isinstance(value, bool):
        raise ValueError(f"not an amount: {value!r}")
    if isinstance(value, Decimal):
        amount = value
    elif isinstance(value, int):
        amount = Decimal(value)
    elif isinstance(value, float):
        # repr() is the shortest literal that round-trips, i.e. what the spreadsheet or JSON showed (12.3, not 12.29…).
        amount = Decimal(repr(value))
    elif isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        if text in NEGOTIABLE:
            return None
        text = text.replace(",", "").replace(" ", "")
        for prefix in ("¥", "RMB", "CNY", "人民币"):
            text = text.removeprefix(prefix)
        scale = Decimal(1)
        for unit, factor in _UNITS:
            if text.endswith(unit):
                text, scale = text[: -len(unit)], factor
                break
        if not _AMOUNT.fullmatch(text):
            raise ValueError(f"not an amount: {value!r}")
        amount = Decimal(text) * scale
    else:
        raise ValueError(f"not an amount: {value!r}")
    if not amount.is_finite():
        raise ValueError(f"not an amount: {value!r}")
    if amount < 0:
        raise ValueError(f"must not be negative: {value!r}")
    if amount >= MONEY_LIMIT:
        raise ValueError(f"too large (at most 14 digits before the point): {value!r}")
    try:
        rounded = amount.quantize(CENT)
    except InvalidOperation as exc:  # pragma: no cover - guarded by the limit above
        raise ValueError(f"not an amount: {value!r}") from exc
    if rounded != amount:
        raise ValueError(f"more than 2 decimal places: {value!r}")
    return rounded


def parse_date(value: object) -> date:
    """A calendar date written YYYY-MM-DD (or a spreadsheet date cell)."""
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    if isinstance(value, str):
        text = unicodedata.normalize("NFKC", value).strip()
        if _ISO_DATE.fullmatch(text):
            try:
                return date.fromisoformat(text)
            except ValueError:
                raise ValueError(f"not a calendar date: {value!r}") from None
    raise ValueError(f"expected a date as YYYY-MM-DD, got {value!r}")


def split_list(value: object) -> list[Any]:
    """A list as given, or one cell split on ; ； , ， 、 | and line breaks."""
    if isinstance(value, str):
        return _LIST_SPLIT.split(value)
    if isinstance(value, list | tuple):
        return list(value)
    raise ValueError(f"expected a list or a separated string, got {type(value).__name__}")


# --- field types ----------------------------------------------------------------------------------------------------


def _text(value: object) -> str:
    # Numbers arrive from spreadsheets and JSON; a title of 2024 is still text.
    # Stored as typed, only tidied (tidy keeps case and line breaks); search folds case itself.
    if isinstance(value, str):
        return tidy(value)
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return tidy(repr(value) if isinstance(value, float) else str(value))


def _identifier(value: object) -> str:
    # Spreadsheet ids come back as numbers (1001 or 1001.0); identity is the text a person typed.
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        raise ValueError(f"expected an identifier, got {value!r}")
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float | Decimal) and value == int(value):
        return str(int(value))
    raise ValueError(f"expected an identifier, got {value!r}")


def _source(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected text, got {type(value).__name__}")
    return value.strip()


def _keywords(value: object) -> list[str]:
    out: list[str] = []
    for item in split_list(value):
        word = _text(item)
        if word and word not in out:
            out.append(word)
    return out


def _patents(value: object) -> list[str]:
    out: list[str] = []
    for item in split_list(value):
        # "ZL 2019 1 0123456.7" and "zl201910123456.7" are the same patent: upper case, no inner spaces.
        number = _text(item).upper().replace(" ", "")
        if number and number not in out:
            out.append(number)
    return out


def _bool(value: object) -> object:
    if isinstance(value, str):
        text = normalise(value)
        if text in {"是", "对", "√"}:
            return True
        if text in {"否", "不是", "×"}:
            return False
        return text
    return value


def _enum_alias(aliases: Mapping[str, str]) -> Callable[[object], object]:
    """A before-validator: normalise an enum cell and map Chinese labels to the stored value."""

    def convert(value: object) -> object:
        if isinstance(value, str):
            key = normalise(value)
            return aliases.get(key, key)
        return value

    return convert


_VISIBILITY = {"公开": "public", "不公开": "private", "非公开": "private", "保密": "private", "私有": "private"}
_STATUS = {
    "草稿": "draft",
    "发布": "published",
    "已发布": "published",
    "撤回": "withdrawn",
    "已撤回": "withdrawn",
    "下架": "withdrawn",
    "已下架": "withdrawn",
}
_MATURITY = {
    "概念": "concept",
    "概念验证": "concept",
    "实验室": "lab",
    "实验室阶段": "lab",
    "小试": "lab",
    "中试": "pilot",
    "中试阶段": "pilot",
    "产业化": "industrialised",
    "量产": "industrialised",
    "industrialized": "industrialised",
}
_TRANSFER = {
    "转让": "transfer",
    "技术转让": "transfer",
    "专利转让": "transfer",
    "许可": "licence",
    "技术许可": "licence",
    "专利许可": "licence",
    "license": "licence",
    "开发": "development",
    "技术开发": "development",
    "合作开发": "development",
    "作价入股": "equity",
    "入股": "equity",
    "技术入股": "equity",
    "咨询": "consulting",
    "技术咨询": "consulting",
    "技术服务": "consulting",
    "服务": "consulting",
}
_ORG_KIND = {
    "企业": "enterprise",
    "公司": "enterprise",
    "高校": "university",
    "大学": "university",
    "高等院校": "university",
    "科研院所": "research_institute",
    "研究院": "research_institute",
    "研究所": "research_institute",
    "新型研发机构": "new_rd_institution",
    "技术转移服务机构": "agency",
    "技术转移机构": "agency",
    "中介": "agency",
    "中介机构": "agency",
}


def _transfer_modes(value: object) -> list[object]:
    convert = _enum_alias(_TRANSFER)
    out: list[object] = []
    for item in split_list(value):
        if isinstance(item, str) and not item.strip():
            continue
        mode = convert(item)
        if mode not in out:
            out.append(mode)
    return out


Identifier = Annotated[str, BeforeValidator(_identifier), Field(min_length=1, max_length=200)]
SourceName = Annotated[str, BeforeValidator(_source), Field(min_length=1, max_length=100)]
Title = Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=500)]
LongText = Annotated[str, BeforeValidator(_text)]
ShortText = Annotated[str, BeforeValidator(_text), Field(max_length=100)]
OrgName = Annotated[str, BeforeValidator(_text), Field(min_length=1, max_length=200)]
Money = Annotated[Decimal | None, BeforeValidator(parse_money)]
IsoDate = Annotated[date, BeforeValidator(parse_date)]
Flag = Annotated[bool, BeforeValidator(_bool)]


# --- column names people use ----------------------------------------------------------------------------------------

_COMMON_KEYS = {
    "id": "external_id",
    "编号": "external_id",
    "外部编号": "external_id",
    "external id": "external_id",
    "标题": "title",
    "名称": "title",
    "项目名称": "title",
    "领域": "field",
    "技术领域": "field",
    "所属领域": "field",
    "行业领域": "field",
    "状态": "status",
    "来源": "source",
    "单位": "owner",
    "单位名称": "owner",
    "所属单位": "owner",
    "发布单位": "owner",
    "owner_name": "owner",
    "单位类型": "owner_kind",
    "单位性质": "owner_kind",
    "单位地区": "owner_region",
    "单位所在地": "owner_region",
    "是否威海": "owner_in_weihai",
    "是否威海单位": "owner_in_weihai",
}
_NEED_KEYS = _COMMON_KEYS | {
    "需求名称": "title",
    "需求标题": "title",
    "描述": "description",
    "需求描述": "description",
    "需求内容": "description",
    "内容": "description",
    "地区": "region",
    "所在地区": "region",
    "区域": "region",
    "预算": "budget_yuan",
    "预算(元)": "budget_yuan",
    "预算金额": "budget_yuan",
    "budget": "budget_yuan",
    "截止日期": "deadline",
    "截止时间": "deadline",
    "可见性": "visibility",
    "是否公开": "visibility",
    "企业名称": "owner",
    "需求单位": "owner",
}
_ACHIEVEMENT_KEYS = _COMMON_KEYS | {
    "成果名称": "title",
    "成果标题": "title",
    "摘要": "abstract",
    "简介": "abstract",
    "成果简介": "abstract",
    "描述": "abstract",
    "description": "abstract",
    "关键词": "keywords",
    "关键字": "keywords",
    "成熟度": "maturity_stage",
    "技术成熟度": "maturity_stage",
    "成果阶段": "maturity_stage",
    "转化方式": "transfer_modes",
    "合作方式": "transfer_modes",
    "交易方式": "transfer_modes",
    "价格": "price_yuan",
    "价格(元)": "price_yuan",
    "转让价格": "price_yuan",
    "price": "price_yuan",
    "专利号": "patent_numbers",
    "专利": "patent_numbers",
    "成果单位": "owner",
    "完成单位": "owner",
}
# Columns whose numbers are in 万元 (10,000 yuan), as bureau spreadsheets often are.
_WAN_KEYS = {"预算(万元)": "budget_yuan", "价格(万元)": "price_yuan", "转让价格(万元)": "price_yuan"}


def _canonical_key(key: object) -> str:
    return unicodedata.normalize("NFKC", str(key)).strip().lstrip("\ufeff").strip().lower()


def _blank(value: object) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


def _in_wan(value: object) -> object:
    if isinstance(value, int | float | Decimal) and not isinstance(value, bool):
        return f"{parse_money(value)}万"
    if isinstance(value, str) and _PLAIN_NUMBER.fullmatch(unicodedata.normalize("NFKC", value)):
        return f"{value}万"
    return value


# --- the records ----------------------------------------------------------------------------------------------------


class OwnerRecord(BaseModel):
    """The organisation a row names as its owner (matched by normalised name)."""

    model_config = ConfigDict(frozen=True)

    name: str
    kind: OrgKind | None
    region: str | None
    in_weihai: bool | None


class ListingRecord(BaseModel):
    """Fields shared by needs and achievements; empty cells count as absent, unknown columns are ignored."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    key_aliases: ClassVar[Mapping[str, str]] = _COMMON_KEYS
    default_owner_kind: ClassVar[OrgKind] = OrgKind.enterprise

    external_id: Identifier
    title: Title
    source: SourceName | None = None
    field: ShortText | None = None
    status: Annotated[ListingStatus, BeforeValidator(_enum_alias(_STATUS))] = ListingStatus.published
    owner: OrgName | None = None
    owner_kind: Annotated[OrgKind | None, BeforeValidator(_enum_alias(_ORG_KIND))] = None
    owner_region: ShortText | None = None
    owner_in_weihai: Flag | None = None

    @model_validator(mode="before")
    @classmethod
    def _canonical_columns(cls, data: Any) -> Any:
        # Column names as people write them (BOM, case, 中文 headers) → field names; blank cells → absent.
        if not isinstance(data, Mapping):
            return data
        out: dict[str, Any] = {}
        for key, value in data.items():
            if key is None or _blank(value):
                continue
            name = _canonical_key(key)
            if name in _WAN_KEYS:
                name, value = _WAN_KEYS[name], _in_wan(value)
            name = cls.key_aliases.get(name, name.replace(" ", "_"))
            out.setdefault(name, value)
        owner = out.get("owner")
        if isinstance(owner, Mapping):
            # Feeds often nest the owner: {"owner": {"name", "kind", "region", "in_weihai"}}; flat fields win.
            del out["owner"]
            for part in ("name", "kind", "region", "in_weihai"):
                if not _blank(owner.get(part)):
                    out.setdefault("owner" if part == "name" else f"owner_{part}", owner[part])
        return out

    def columns(self) -> dict[str, Any]:
        """The values of the table's content columns (not identity, not owner)."""
        raise NotImplementedError

    def owner_record(self) -> OwnerRecord | None:
        """The owner organisation, if the row names one."""
        if self.owner is None:
            return None
        return OwnerRecord(
            name=self.owner, kind=self.owner_kind, region=self.owner_region, in_weihai=self.owner_in_weihai
        )

    def content_hash(self) -> str:
        """sha1 over the canonical JSON of every content field (identity excluded): equal hash, nothing to write."""
        payload = self.model_dump(mode="json", exclude={"external_id", "source"})
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
        return hashlib.sha1(blob.encode("utf-8")).hexdigest()


class NeedRecord(ListingRecord):
    """An enterprise's technical need (技术需求) as ingested."""

    key_aliases: ClassVar[Mapping[str, str]] = _NEED_KEYS
    default_owner_kind: ClassVar[OrgKind] = OrgKind.enterprise

    description: LongText = ""
    region: ShortText | None = None
    budget_yuan: Money = None
    deadline: IsoDate | None = None
    visibility: Annotated[Visibility, BeforeValidator(_enum_alias(_VISIBILITY))] = Visibility.public

    def columns(self) -> dict[str, Any]:
        """The needs-table content columns."""
        return {
            "title": self.title,
            "description": self.description,
            "field": self.field,
            "region": self.region,
            "budget_yuan": self.budget_yuan,
            "deadline": self.deadline,
            "visibility": self.visibility,
            "status": self.status,
        }


class AchievementRecord(ListingRecord):
    """A research achievement (科技成果) as ingested."""

    key_aliases: ClassVar[Mapping[str, str]] = _ACHIEVEMENT_KEYS
    default_owner_kind: ClassVar[OrgKind] = OrgKind.university

    abstract: LongText = ""
    keywords: Annotated[list[str], BeforeValidator(_keywords)] = Field(default_factory=list)
    maturity_stage: Annotated[MaturityStage | None, BeforeValidator(_enum_alias(_MATURITY))] = None
    transfer_modes: Annotated[list[TransferMode], BeforeValidator(_transfer_modes)] = Field(default_factory=list)
    price_yuan: Money = None
    patent_numbers: Annotated[list[str], BeforeValidator(_patents)] = Field(default_factory=list)

    def columns(self) -> dict[str, Any]:
        """The achievements-table content columns (enum lists stored as their values)."""
        return {
            "title": self.title,
            "abstract": self.abstract,
            "keywords": list(self.keywords),
            "field": self.field,
            "maturity_stage": self.maturity_stage,
            "transfer_modes": [m.value if isinstance(m, enum.Enum) else m for m in self.transfer_modes],
            "price_yuan": self.price_yuan,
            "patent_numbers": list(self.patent_numbers),
            "status": self.status,
        }


RECORD_TYPES: dict[IngestKind, type[ListingRecord]] = {
    IngestKind.needs: NeedRecord,
    IngestKind.achievements: AchievementRecord,
}


def record_type(kind: IngestKind) -> type[ListingRecord]:
    """The row schema for a kind."""
    return RECORD_TYPES[IngestKind(kind)]
