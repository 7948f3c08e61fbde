"""Policy parameters as dated, cited data: one YAML file per policy version, validated strictly at load."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from subsidy.schemas import ContractType, PartyKind

PARAMS_DIR = Path(__file__).resolve().parent / "params"
DEFAULT_PARAMS_FILE = PARAMS_DIR / "weihai-2025-draft.yaml"

# Measure ids in the order of the text; money measures and the ones that pay nothing directly.
MEASURE_ORDER: tuple[str, ...] = (
    "1",
    "2",
    "3",
    "4.1",
    "4.2",
    "4.3",
    "5.1",
    "5.2",
    "6",
    "7",
    "8",
    "9.1",
    "9.2",
    "9.3",
    "10.1",
    "10.2",
    "10.3",
    "11",
    "12",
    "13",
    "14",
    "15.1",
    "15.2",
    "16",
)


class ParameterFileError(ValueError):
    """A parameter file that cannot be read or does not match the schema."""


class _Strict(BaseModel):
    # A misspelt or unknown key is an error, never silently ignored.
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Window(_Strict):
    """An effective window, both ends inclusive."""

    start: dt.date = Field(alias="from")
    end: dt.date = Field(alias="to")
    clause: str | None = None
    note: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Window:
        if self.start > self.end:
            raise ValueError(f"effective window starts ({self.start}) after it ends ({self.end})")
        return self

    def contains(self, day: dt.date) -> bool:
        """Whether the day lies in the window."""
        return self.start <= day <= self.end

    def overlaps_year(self, year: int) -> bool:
        """Whether any day of the year lies in the window."""
        return self.start <= dt.date(year, 12, 31) and self.end >= dt.date(year, 1, 1)

    def __str__(self) -> str:
        return f"{self.start} to {self.end}"


def _decimal(value: object) -> object:
    # YAML reads 0.05 as a float; its repr is the literal written in the file.
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    return value


class Param(_Strict):
    """One parameter value with its clause, the words it comes from, and its effective window."""

    unit: str
    clause: str = Field(min_length=1)
    quote: str | None = None
    note: str | None = None
    # Unset here means the measure's window, else the policy's; filled in at load.
    effective: Window | None = None

    @property
    def window(self) -> Window:
        """The resolved effective window."""
        if self.effective is None:  # pragma: no cover - always resolved by PolicyParameters
            raise ParameterFileError("parameter window not resolved")
        return self.effective

    def display(self) -> str:
        """The value as staff read it."""
        raise NotImplementedError

    def plain(self) -> str:
        """The value as a plain string for trace values."""
        raise NotImplementedError


class _DecimalParam(Param):
    value: Decimal

    @field_validator("value", mode="before")
    @classmethod
    def _from_yaml(cls, value: object) -> object:
        return _decimal(value)


class YuanParam(_DecimalParam):
    """An amount in yuan (a ceiling, a fixed award, a threshold)."""

    unit: Literal["yuan"]

    @field_validator("value")
    @classmethod
    def _on_the_fen(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or value < 0 or value != value.quantize(Decimal("0.01")):
            raise ValueError("a yuan amount must be non-negative with at most 2 decimal places")
        return value

    def display(self) -> str:
        return f"¥{self.value:,.2f}"

    def plain(self) -> str:
        return str(self.value.quantize(Decimal("0.01")))


class RatioParam(_DecimalParam):
    """A rate between 0 and 1 (0.05 is 5%)."""

    unit: Literal["ratio"]

    @field_validator("value")
    @classmethod
    def _between_0_and_1(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or not Decimal(0) <= value <= Decimal(1):
            raise ValueError("a ratio must lie between 0 and 1 (0.05 is 5%)")
        return value

    def display(self) -> str:
        return f"{(self.value * 100).normalize():f}%"

    def plain(self) -> str:
        return format(self.value, "f")


class FlagParam(Param):
    """A yes/no reading of a condition."""

    unit: Literal["flag"]
    value: StrictBool

    def display(self) -> str:
        return "yes" if self.value else "no"

    def plain(self) -> str:
        return "true" if self.value else "false"


class DaysParam(Param):
    """A deadline in days."""

    unit: Literal["days"]
    value: StrictInt = Field(ge=1, le=3650)

    def display(self) -> str:
        return f"{self.value} days"

    def plain(self) -> str:
        return str(self.value)


class Deadlines(_Strict):
    """Deadlines the platform watches in the deals it tracks (not money, but read beside the money rules)."""

    contract_registration_days: DaysParam


class KindsParam(Param):
    """The party kinds a measure pays."""

    unit: Literal["party_kinds"]
    value: tuple[PartyKind, ...] = Field(min_length=1)

    def display(self) -> str:
        return ", ".join(self.value)

    def plain(self) -> str:
        return ",".join(self.value)


class ContractTypesParam(Param):
    """The contract types a measure pays on."""

    unit: Literal["contract_types"]
    value: tuple[ContractType, ...] = Field(min_length=1)

    def display(self) -> str:
        return ", ".join(self.value)

    def plain(self) -> str:
        return ",".join(self.value)


class RuleParam(Param):
    """How provincial and municipal money that must not stack (不叠加享受) is chosen between."""

    unit: Literal["rule"]
    # difference: the unit ends with the higher of the two (就高不重复): the city pays what it adds to the provincial
    #   money already received, nothing when that is as much or more;
    # higher: the higher of the two levels is kept (ties keep the provincial money), the city paying its full amount
    #   on the understanding the provincial money is given up;
    # provincial_first: any provincial money excludes the municipal subsidy.
    value: Literal["difference", "higher", "provincial_first"]

    def display(self) -> str:
        return self.value

    def plain(self) -> str:
        return self.value


# ---------------------------------------------------------------- measures


class Measure(_Strict):
    """A money measure: its clause, a title, an optional window for all its parameters, and the parameters."""

    clause: str = Field(min_length=1)
    title: str = Field(min_length=1)
    effective: Window | None = None

    def parameters(self) -> Iterator[tuple[str, Param]]:
        """The measure's parameters by name, in declaration order."""
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, Param):
                yield name, value


class NonMonetaryMeasure(_Strict):
    """A measure that pays nothing directly (platforms, recommendations, reforms)."""

    clause: str = Field(min_length=1)
    title: str = Field(min_length=1)
    non_monetary: Literal[True]
    note: str = Field(min_length=1)
    quote: str | None = None


class CappedAwardMeasure(Measure):
    """第2、3、6、7条, 9.1: 择优 awards up to a ceiling per source (activity, centre, platform, recognition)."""

    ceiling: YuanParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class ContractMeasure(Measure):
    """第4条 (4.2): a rate on the year's contract payments, capped per party per year."""

    rate: RatioParam
    annual_ceiling: YuanParam
    contract_types: ContractTypesParam
    require_registered: FlagParam


class ContractFromResearchMeasure(ContractMeasure):
    """第4条 (4.1), 第9条 (9.3): as ContractMeasure, for contracts whose seller is a university or institute."""

    eligible_seller_kinds: KindsParam


class ListingMeasure(Measure):
    """第5条: a rate on a listing's amount, capped per listing."""

    rate: RatioParam
    ceiling: YuanParam


class LandingMeasure(Measure):
    """第8条: one-off subsidy up to a ceiling above an inclusive workload threshold."""

    ceiling: YuanParam
    workload_threshold: YuanParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class AgencyEvaluationMeasure(Measure):
    """第9条 (9.2): annual evaluation of agencies, ceiling by grade, provincial and municipal money not stacked."""

    ceiling_excellent: YuanParam
    ceiling_good: YuanParam
    non_stacking_rule: RuleParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class TrainingBaseAwardMeasure(Measure):
    """第10条 (10.1): award for a first recognition as a national or provincial training base."""

    ceiling_national: YuanParam
    ceiling_provincial: YuanParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class TrainingSubsidyMeasure(Measure):
    """第10条 (10.2): post-subsidy of fee waivers, capped per base per year, levels not stacked."""

    annual_ceiling: YuanParam
    non_stacking_rule: RuleParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class FixedAwardMeasure(Measure):
    """第14条: a fixed one-off amount."""

    amount: YuanParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class RiskCompensationMeasure(Measure):
    """第15条 (15.1): a share of non-performing principal, on a covered balance limited per enterprise."""

    rate: RatioParam
    rate_early_stage: RatioParam
    balance_limit: YuanParam
    municipal_share: RatioParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class InterestSubsidyMeasure(Measure):
    """第15条 (15.2): interest subsidy capped per enterprise per year."""

    ceiling: YuanParam
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


class Measures(_Strict):
    """Every measure of the text, keyed by its id; all are required."""

    m1: NonMonetaryMeasure = Field(alias="1")
    m2: CappedAwardMeasure = Field(alias="2")
    m3: CappedAwardMeasure = Field(alias="3")
    m4_1: ContractFromResearchMeasure = Field(alias="4.1")
    m4_2: ContractMeasure = Field(alias="4.2")
    m4_3: NonMonetaryMeasure = Field(alias="4.3")
    m5_1: ListingMeasure = Field(alias="5.1")
    m5_2: ListingMeasure = Field(alias="5.2")
    m6: CappedAwardMeasure = Field(alias="6")
    m7: CappedAwardMeasure = Field(alias="7")
    m8: LandingMeasure = Field(alias="8")
    m9_1: CappedAwardMeasure = Field(alias="9.1")
    m9_2: AgencyEvaluationMeasure = Field(alias="9.2")
    m9_3: ContractFromResearchMeasure = Field(alias="9.3")
    m10_1: TrainingBaseAwardMeasure = Field(alias="10.1")
    m10_2: TrainingSubsidyMeasure = Field(alias="10.2")
    m10_3: NonMonetaryMeasure = Field(alias="10.3")
    m11: NonMonetaryMeasure = Field(alias="11")
    m12: NonMonetaryMeasure = Field(alias="12")
    m13: NonMonetaryMeasure = Field(alias="13")
    m14: FixedAwardMeasure = Field(alias="14")
    m15_1: RiskCompensationMeasure = Field(alias="15.1")
    m15_2: InterestSubsidyMeasure = Field(alias="15.2")
    m16: NonMonetaryMeasure = Field(alias="16")

    def by_id(self, measure_id: str) -> Measure | NonMonetaryMeasure:
        """The measure with this id (e.g. "4.1")."""
        return getattr(self, "m" + measure_id.replace(".", "_"))  # type: ignore[no-any-return]

    def money(self) -> Iterator[tuple[str, Measure]]:
        """The money measures in text order."""
        for measure_id in MEASURE_ORDER:
            measure = self.by_id(measure_id)
            if isinstance(measure, Measure):
                yield measure_id, measure

    def non_monetary(self) -> Iterator[tuple[str, NonMonetaryMeasure]]:
        """The measures that pay nothing directly, in text order."""
        for measure_id in MEASURE_ORDER:
            measure = self.by_id(measure_id)
            if isinstance(measure, NonMonetaryMeasure):
                yield measure_id, measure


class PolicyParameters(_Strict):
    """One policy version: its identity, its default effective window, and every measure."""

    version: str = Field(min_length=1)
    title: str = Field(min_length=1)
    status: Literal["draft", "final"]
    source: str = Field(min_length=1)
    effective: Window
    deadlines: Deadlines
    measures: Measures

    @model_validator(mode="after")
    def _resolve_windows(self) -> PolicyParameters:
        # A parameter without its own window takes its measure's, else the policy's.
        if self.deadlines.contract_registration_days.effective is None:
            self.deadlines.contract_registration_days.effective = self.effective
        for _, measure in self.measures.money():
            default = measure.effective or self.effective
            for _, param in measure.parameters():
                if param.effective is None:
                    param.effective = default
        return self


# ---------------------------------------------------------------- loading


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping (PyYAML would keep the last silently)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
    seen: set[Any] = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return dict(loader.construct_mapping(node, deep=deep))


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _format_errors(path: Path | str, exc: ValidationError) -> str:
    lines = []
    for error in exc.errors():
        loc = ".".join(str(part) for part in error["loc"])
        lines.append(f"  {loc or '(top)'}: {error['msg']}")
    return f"{path}: does not match the parameter schema:\n" + "\n".join(lines)


def parse_parameters(
    raw: object,
    *,
    source: Path | str = "<data>",
    effective_from: dt.date | None = None,
    effective_to: dt.date | None = None,
) -> PolicyParameters:
    """Validate parsed YAML as a parameter set, optionally replacing the policy's default window."""
    if not isinstance(raw, dict):
        raise ParameterFileError(f"{source}: a parameter file is a mapping at the top level")
    data = dict(raw)
    if isinstance(data.get("measures"), dict):
        # An unquoted 4.1 or 2 is read by YAML as a number; the id is its text.
        data["measures"] = {str(key): value for key, value in data["measures"].items()}
    if effective_from is not None or effective_to is not None:
        window = dict(data.get("effective") or {})
        if effective_from is not None:
            window["from"] = effective_from
        if effective_to is not None:
            window["to"] = effective_to
        data["effective"] = window
    try:
        return PolicyParameters.model_validate(data)
    except ValidationError as exc:
        raise ParameterFileError(_format_errors(source, exc)) from None


def load_parameters(
    path: Path | str | None = None, *, effective_from: dt.date | None = None, effective_to: dt.date | None = None
) -> PolicyParameters:
    """Read and validate a parameter file (the packaged draft when no path is given)."""
    file = Path(path) if path is not None else DEFAULT_PARAMS_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ParameterFileError(f"{file}: cannot read: {exc.strerror or exc}") from None
    try:
        raw = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ParameterFileError(f"{file}: not valid YAML: {exc}") from None
    return parse_parameters(raw, source=file, effective_from=effective_from, effective_to=effective_to)


@lru_cache(maxsize=1)
def default_parameters() -> PolicyParameters:
    """The packaged parameter set, read once."""
    return load_parameters()
