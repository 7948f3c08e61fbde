"""Request and response models of the subsidy engine: the evaluate contract and its extensions."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    StringConstraints,
    WithJsonSchema,
)

PartyKind = Literal["enterprise", "university", "research_institute", "new_rd_institution", "agency", "bank"]
ContractType = Literal["development", "transfer", "consulting", "service"]
Level = Literal["national", "provincial", "municipal"]
Grade = Literal["excellent", "good", "qualified", "unqualified"]  # 优秀 / 良好 / 合格 / 不合格

PARTY_KINDS: tuple[str, ...] = (
    "enterprise",
    "university",
    "research_institute",
    "new_rd_institution",
    "agency",
    "bank",
)
CONTRACT_TYPES: tuple[str, ...] = ("development", "transfer", "consulting", "service")

FEN = Decimal("0.01")
MAX_INTEGER_DIGITS = 15  # below 10^15 yuan: far above any real deal, far below Decimal's 28 digits
_YUAN_RE = re.compile(r"^[0-9]{1,15}(\.[0-9]{1,2})?$")
_YUAN_PATTERN = r"^[0-9]{1,15}(\.[0-9]{1,2})?$"


def parse_yuan(value: object) -> Decimal:
    """A non-negative yuan amount with at most 2 decimal places, from a decimal string (or an int / Decimal)."""
    if isinstance(value, (bool, float)):
        # A JSON number with a fraction is a binary float: the fen it carries is not exact.
        raise ValueError('amount must be a decimal string such as "1234.50", not a JSON number with a fraction')
    if isinstance(value, int):
        value = str(value)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise ValueError("amount must be a finite number")
        value = format(value, "f")
    if not isinstance(value, str):
        raise ValueError('amount must be a decimal string such as "1234.50"')
    text = value.strip()
    if _YUAN_RE.fullmatch(text):
        return Decimal(text)
    if text.startswith("-"):
        raise ValueError("amount must not be negative")
    if re.fullmatch(r"[0-9]+\.[0-9]{3,}", text):
        raise ValueError("amount has more than 2 decimal places (the fen is the smallest unit)")
    if re.fullmatch(r"[0-9]{16,}(\.[0-9]*)?", text):
        raise ValueError(f"amount has more than {MAX_INTEGER_DIGITS} integer digits")
    raise ValueError('amount must be a plain decimal string such as "1234.50" (digits, optional 1-2 decimals)')


def format_yuan(value: Decimal) -> str:
    """Two-decimal string of an amount already on the fen."""
    return str(value.quantize(FEN))


Yuan = Annotated[
    Decimal,
    PlainValidator(parse_yuan),
    PlainSerializer(format_yuan, return_type=str),
    WithJsonSchema({"type": "string", "pattern": _YUAN_PATTERN, "examples": ["150000.00"]}),
]
"""Input amount: a non-negative decimal string in yuan, at most 2 decimal places."""

STORED_LIMIT = Decimal("100000000000000")  # 10^14 yuan: Numeric(16, 2), the platform's money columns


def _fits_column(value: Decimal) -> Decimal:
    if value >= STORED_LIMIT:
        raise ValueError("amount has more than 14 integer digits (the most a stored amount holds)")
    return value


StoredYuan = Annotated[Yuan, AfterValidator(_fits_column)]
"""Input amount that the platform stores (contracts, payments, calls, evaluations): Yuan below 10^14."""

Money = Annotated[Decimal, PlainSerializer(format_yuan, return_type=str), WithJsonSchema({"type": "string"})]
"""Output amount: yuan as a two-decimal string (may be negative only for simulator differences)."""

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]

_MAX_ROWS = 10_000


class _In(BaseModel):
    # Unknown keys are errors: a misspelt flag silently read as absent would deny a subsidy.
    model_config = ConfigDict(extra="forbid", frozen=True)


# ---------------------------------------------------------------- the contract (names fixed by the issue)


class Party(_In):
    """A unit that may receive money: enterprise, university, institute, new R&D institution or agency."""

    id: Id
    kind: PartyKind = Field(
        description="enterprise 企业 | university 高校 | research_institute 科研院所 | "
        "new_rd_institution 新型研发机构 | agency 技术转移服务机构 | bank 金融机构 (a lender, 15.1)"
    )
    in_weihai: bool = Field(description="Registered / stationed in Weihai (威海本地 / 驻威).")
    has_rd_activity: bool | None = Field(None, description="Enterprise has R&D activity (有研发活动), 第4条.")
    public_institution: bool | None = Field(
        None, description="New R&D institution is a public institution (事业单位性质), 第4条."
    )
    filed: bool | None = Field(None, description="Agency is filed (备案) at municipal level or above, 第9条.")
    tech_sme: bool | None = Field(
        None, description="Enterprise is a national technology-based SME (国家科技型中小企业), 第15条."
    )
    early_stage_assessed: bool | None = Field(
        None, description="Early-stage / start-up enterprise assessed via the 科融信 platform (早期、初创期), 第15条."
    )


class Payment(_In):
    """One payment on a contract: the buyer paid (支付) and the seller received (到账) on this date."""

    paid_on: dt.date
    amount_yuan: Yuan


class Contract(_In):
    """A technology contract (技术合同) between a buyer and a seller, possibly brokered by an agency."""

    id: Id
    type: ContractType = Field(
        description="development 技术开发 | transfer 技术转让 | consulting 技术咨询 | service 技术服务"
    )
    buyer: Id = Field(description="Party id of the buyer (购买方).")
    seller: Id = Field(description="Party id of the seller.")
    agency: Id | None = Field(None, description="Party id of the brokering agency (技术转移服务机构), or null.")
    registered: bool = Field(description="Registered with the technology-contract registry (登记备案).")
    signed_on: dt.date
    amount_yuan: Yuan = Field(description="Contract amount; the payments may not exceed it.")
    payments: tuple[Payment, ...] = Field((), max_length=1000)


class Listing(_In):
    """A 双向揭榜 project: 技术攻关 (tackling, paid after acceptance) or 成果转化 (transformation, milestones)."""

    id: Id
    kind: Literal["tackling", "transformation"] = Field(
        description="tackling 技术攻关类 (事后补助) | transformation 成果转化类 (里程碑式资助)"
    )
    party: Id = Field(description="Party id of the recipient.")
    accepted: bool | None = Field(None, description="Passed comprehensive evaluation and acceptance (验收), 5.1.")
    transaction_yuan: Yuan | None = Field(None, description="Actual transaction amount (实际成交额), 5.1.")
    target_yuan: Yuan | None = Field(None, description="Listed target amount (张榜标的额), 5.2.")
    decided_on: dt.date | None = Field(
        None, description="Date of the decision (acceptance / 立项); when given it must fall in the year and window."
    )


# ---------------------------------------------------------------- extensions for the award and evaluation measures


class Activity(_In):
    """第2条: a filed industry–academia matchmaking event (产学研对接活动) and its performance evaluation."""

    id: Id
    party: Id = Field(description="Party id of the organiser.")
    filed: bool = Field(description="The activity is filed (备案活动).")
    selected: bool | None = Field(None, description="Chosen on merit (择优) after performance evaluation.")
    assessed_yuan: Yuan | None = Field(
        None, description="Amount proposed by the evaluation; absent: pending (the ceiling is only an upper limit)."
    )
    decided_on: dt.date | None = None


class Evaluation(_In):
    """第3、6、9条: an annual performance evaluation (年度绩效评价) of a cloud R&D centre, platform or agency."""

    id: Id
    measure: Literal["3", "6", "9.2"] = Field(
        description="3 云上研发中心 | 6 中试示范基地 / 概念验证中心 | 9.2 技术转移服务机构年度绩效评价"
    )
    party: Id
    facility: Literal["cloud_rd_center", "pilot_base", "proof_of_concept_center"] | None = Field(
        None,
        description="3: cloud_rd_center 云上研发中心; "
        "6: pilot_base 中试示范基地 | proof_of_concept_center 概念验证中心",
    )
    filed: bool | None = Field(
        None, description="6: under filing management at municipal level or above (纳入市级以上备案管理)."
    )
    selected: bool | None = Field(None, description="3, 6: chosen on merit (择优).")
    grade: Grade | None = Field(None, description="9.2: result 优秀 excellent | 良好 good | 合格 | 不合格.")
    assessed_yuan: Yuan | None = Field(
        None, description="Amount proposed by the evaluation; absent: pending (the ceiling is only an upper limit)."
    )
    provincial_yuan: Yuan | None = Field(
        None, description="9.2: provincial money for the same agency and year (省级补助); the levels do not stack."
    )
    decided_on: dt.date | None = None


class Recognition(_In):
    """第7、9、10条: a first recognition (首次认定 / 新获批) rewarded once."""

    id: Id
    measure: Literal["7", "9.1", "10.1"] = Field(
        description="7 国家级科技企业孵化器 | 9.1 山东省技术转移服务机构 | 10.1 技术转移人才培养基地"
    )
    party: Id
    level: Level = Field(description="national 国家级 | provincial 省级 | municipal 市级")
    first_time: bool = Field(description="First recognition / newly approved (首次认定 / 新获批).")
    assessed_yuan: Yuan | None = Field(
        None, description="Amount proposed; absent: pending (the ceiling is an upper limit)."
    )
    decided_on: dt.date | None = None


class Landing(_In):
    """第8条: an enterprise or team landed in Weihai directly through an exchange event (中韩创新大赛 etc.)."""

    id: Id
    party: Id
    event: str | None = Field(None, max_length=200, description="The event, e.g. 中韩创新大赛, 中日科技创新合作大会.")
    via_exchange_event: bool = Field(
        description="Landed directly through a science exchange event (直接通过…落地我市)."
    )
    registered: bool = Field(description="Completed registration (完成注册).")
    operating_normally: bool = Field(
        description="Continues normal production and operation (持续正常开展生产经营活动)."
    )
    physical_workload_yuan: Yuan = Field(description="Physical workload completed (实物工作量); 100万元(含)以上.")
    previously_awarded: bool = Field(False, description="Already received this one-off (一次性) subsidy.")
    assessed_yuan: Yuan | None = Field(None, description="Amount proposed; absent: pending.")
    decided_on: dt.date | None = None


class ExpertStudio(_In):
    """第14条: a foreign expert studio (外国专家工作室) assessed at the end of its construction period."""

    id: Id
    party: Id
    construction_completed: bool = Field(description="Construction period ended (建设期满).")
    grade: Grade = Field(description="Assessment result (考核评估); only excellent 优秀 is paid.")
    previously_awarded: bool = Field(False, description="Already received this one-off (一次性) subsidy.")
    decided_on: dt.date | None = None


class Training(_In):
    """第10条: a training base's fee waivers for brokers (技术经纪(理)人) trained, qualified and filed in a year."""

    id: Id
    party: Id = Field(description="Party id of the training base (技术转移人才培养基地).")
    base_level: Level = Field(description="Level of the base; provincial or above (省以上) is required.")
    qualified_and_filed: bool = Field(description="Trainees passed and were filed (培训合格备案).")
    trainees_work_in_weihai: bool = Field(description="Trainees do related work in Weihai (我市开展相关工作).")
    trainees: int = Field(0, ge=0, le=1_000_000, description="Number of trainees (for the record).")
    waived_fees_yuan: Yuan = Field(description="Training fees waived for those trainees (减免培训费用).")
    provincial_yuan: Yuan | None = Field(
        None, description="Provincial money for the same base and year (省级补助); the levels do not stack."
    )
    decided_on: dt.date | None = None


class Loan(_In):
    """第15条: a technology-achievement transformation loan (科技成果转化贷款) of an enterprise."""

    id: Id
    party: Id = Field(description="Party id of the borrowing enterprise.")
    bank: Id | None = Field(
        None, description="Party id of the lending bank (贷款银行): the recipient of 15.1 risk compensation."
    )
    filed_with_province: bool = Field(description="Filed with the provincial loan scheme (纳入省科技成果转化贷款备案).")
    balance_yuan: Yuan = Field(description="Outstanding loan balance (贷款余额).")
    non_performing_principal_yuan: Yuan | None = Field(
        None, description="Non-performing principal (不良本金) claimed for risk compensation (风险补偿), 15.1."
    )
    repaid_on_time: bool | None = Field(None, description="Principal and interest repaid on time (按时还本付息), 15.2.")
    interest_subsidy_yuan: Yuan | None = Field(
        None, description="Interest subsidy claimed under the provincial rules (贴息), 15.2."
    )
    decided_on: dt.date | None = None


class EvaluateRequest(_In):
    """Everything needed to evaluate one year: parties, contracts, listings and the award inputs."""

    year: int = Field(ge=2000, le=2100, description="The year evaluated (当年).")
    parties: tuple[Party, ...] = Field(max_length=_MAX_ROWS)
    contracts: tuple[Contract, ...] = Field((), max_length=_MAX_ROWS)
    listings: tuple[Listing, ...] = Field((), max_length=_MAX_ROWS)
    activities: tuple[Activity, ...] = Field((), max_length=_MAX_ROWS, description="第2条")
    evaluations: tuple[Evaluation, ...] = Field((), max_length=_MAX_ROWS, description="第3、6条, 9.2")
    recognitions: tuple[Recognition, ...] = Field((), max_length=_MAX_ROWS, description="第7条, 9.1, 10.1")
    landings: tuple[Landing, ...] = Field((), max_length=_MAX_ROWS, description="第8条")
    expert_studios: tuple[ExpertStudio, ...] = Field((), max_length=_MAX_ROWS, description="第14条")
    trainings: tuple[Training, ...] = Field((), max_length=_MAX_ROWS, description="10.2")
    loans: tuple[Loan, ...] = Field((), max_length=_MAX_ROWS, description="15.1, 15.2")


# ---------------------------------------------------------------- response


class TraceStep(BaseModel):
    """One readable line of the computation; values hold the figures as strings."""

    step: str = Field(description="parameter | eligibility | basis | rate | ceiling | non_stacking | floor | total")
    text: str
    clause: str | None = None
    values: dict[str, str] = Field(default_factory=dict)


class ItemPart(BaseModel):
    """What one source (contract, listing, record) contributes to an item."""

    source: str
    basis_yuan: Money
    amount_yuan: Money | None = Field(None, description="Per-source amount where a per-source ceiling applies.")
    ceiling_yuan: Money | None = None
    bound: bool = False


class NonStacking(BaseModel):
    """Which level's money was chosen where provincial and municipal money must not stack (不叠加享受)."""

    rule: str
    chosen: Literal["municipal", "provincial"]
    municipal_yuan: Money
    provincial_yuan: Money
    paid_yuan: Money = Field(
        description="What the city pays: the municipal amount, or under rule `difference` what it adds to the "
        "provincial money already received (就高不重复)."
    )
    reason: str


class Item(BaseModel):
    """What one party is entitled to under one measure for the year, with its trace."""

    measure: str
    clause: str
    title: str
    party: str
    amount_yuan: Money
    basis_yuan: Money
    sources: list[str]
    ceiling_yuan: Money | None = Field(None, description="The cap on this item as a whole.")
    ceiling_scope: Literal["per_party_year", "per_source", "fixed"] | None = None
    ceiling_bound: str | None = Field(None, description="Which ceiling bound the amount, if any.")
    non_stacking: NonStacking | None = None
    parts: list[ItemPart] = Field(default_factory=list)
    trace: list[TraceStep]


class Rejection(BaseModel):
    """One failed condition: a source gives the party nothing (or less) under a measure, and why."""

    measure: str
    clause: str
    party: str
    source: str
    condition: str = Field(description="Stable code of the failed condition.")
    reason: str


class Pending(BaseModel):
    """A source that meets every condition of an award measure but has no assessed amount yet: "最高X万元" is only
    an upper limit, so nothing is paid until the evaluation sets the amount (assessed_yuan)."""

    measure: str
    clause: str
    party: str
    source: str
    ceiling_yuan: Money = Field(description="The upper limit the assessed amount may not exceed.")
    reason: str


class NonMonetary(BaseModel):
    """A measure that pays nothing directly."""

    measure: str
    clause: str
    title: str
    note: str


class PolicyRef(BaseModel):
    """The parameter set used."""

    version: str
    title: str
    status: str
    effective_from: dt.date
    effective_to: dt.date


class Totals(BaseModel):
    """Sums over the items."""

    total_yuan: Money
    by_measure: dict[str, Money]


class EvaluateResponse(BaseModel):
    """One item per (measure, party), the rejections, and the measures that pay nothing directly."""

    year: int
    policy: PolicyRef
    items: list[Item]
    rejections: list[Rejection]
    pending: list[Pending] = Field(
        default_factory=list, description="Eligible award sources awaiting their assessed amount: never money yet."
    )
    non_monetary: list[NonMonetary]
    totals: Totals
