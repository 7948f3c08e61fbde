"""The money rules: a pure function from a checked request and a parameter set to items, rejections and traces.

Amounts are Decimal yuan. Every amount is computed as rate × basis, then capped (min with the ceiling), then
floored to the fen (ROUND_DOWN), so no amount is ever above its ceiling. Rates apply to a party's yearly total,
not per contract, so splitting payments across contracts never changes the result. Inputs are walked in a
canonical order (ids, dates), so the result does not depend on the order of the request's lists.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_DOWN, Decimal
from typing import Protocol

from subsidy.parameters import (
    MEASURE_ORDER,
    ContractFromResearchMeasure,
    ContractMeasure,
    FlagParam,
    KindsParam,
    Measure,
    PolicyParameters,
    RatioParam,
    RuleParam,
    YuanParam,
)
from subsidy.schemas import (
    Contract,
    EvaluateRequest,
    EvaluateResponse,
    Item,
    ItemPart,
    NonMonetary,
    NonStacking,
    Party,
    Pending,
    PolicyRef,
    Rejection,
    Totals,
    TraceStep,
)

FEN = Decimal("0.01")
ZERO = Decimal("0")

# (passed, condition code, reason when it failed)
Check = tuple[bool, str, str]


def floor_fen(amount: Decimal) -> Decimal:
    """Floor to the fen (ROUND_DOWN): never round a subsidy up past what the rule gives."""
    return amount.quantize(FEN, rounding=ROUND_DOWN)


def money(amount: Decimal) -> str:
    """¥1,234.50; an intermediate with digits below the fen keeps them (¥0.0095)."""
    if amount == amount.quantize(FEN, rounding=ROUND_DOWN):
        return f"¥{amount:,.2f}"
    return f"¥{amount.normalize():,f}"


def plain(amount: Decimal) -> str:
    """1234.50; an intermediate with digits below the fen keeps them (0.0095)."""
    if amount == amount.quantize(FEN, rounding=ROUND_DOWN):
        return str(amount.quantize(FEN))
    return format(amount.normalize(), "f")


def _sum(values: Iterable[Decimal]) -> Decimal:
    return sum(values, ZERO)


class _Recipient(Protocol):
    eligible_kinds: KindsParam
    recipient_in_weihai: FlagParam


@dataclass
class _Part:
    """One source's contribution to a (measure, party) item."""

    source: str
    basis: Decimal
    steps: list[TraceStep]
    amount: Decimal | None = None  # set where a per-source ceiling applies
    ceiling: Decimal | None = None
    bound: bool = False
    provincial: Decimal = ZERO  # provincial money recorded with the source (不叠加)
    extra: dict[str, Decimal] = field(default_factory=dict)


@dataclass
class _Capped:
    """rate × basis, capped, floored, with the steps that say so."""

    raw: Decimal
    amount: Decimal
    bound: bool
    steps: list[TraceStep]


class _Run:
    """One evaluation: the request's year under one parameter set."""

    def __init__(self, request: EvaluateRequest, params: PolicyParameters) -> None:
        self.request = request
        self.params = params
        self.m = params.measures
        self.year = request.year
        self.parties: dict[str, Party] = {party.id: party for party in request.parties}
        self.items: list[Item] = []
        self.rejections: list[Rejection] = []
        self.pending: list[Pending] = []
        self.lenders: dict[str, str] = {}  # loan id → its lending bank's party id (15.1)

    # ------------------------------------------------------------ shared helpers

    def _clause(self, measure_id: str) -> str:
        return self.m.by_id(measure_id).clause

    def _reject(self, measure_id: str, party: str, source: str, condition: str, reason: str) -> None:
        clause = self._clause(measure_id)
        self.rejections.append(
            Rejection(
                measure=measure_id,
                clause=clause,
                party=party,
                source=source,
                condition=condition,
                reason=f"{clause} ({measure_id}): {reason}",
            )
        )

    def _failed(self, measure_id: str, party: str, source: str, checks: Iterable[Check]) -> bool:
        """Record a rejection for each failed check; True when any failed."""
        failed = False
        for passed, condition, reason in checks:
            if not passed:
                self._reject(measure_id, party, source, condition, reason)
                failed = True
        return failed

    def _recipient_checks(self, measure: _Recipient, party: Party) -> list[Check]:
        kinds = measure.eligible_kinds.value
        checks: list[Check] = [
            (party.kind in kinds, "party_kind", f"{party.id} is {party.kind}; this measure pays {', '.join(kinds)}")
        ]
        if measure.recipient_in_weihai.value:
            checks.append((party.in_weihai, "party_in_weihai", f"{party.id} is not in Weihai (威海)"))
        return checks

    def _date_checks(self, measure: Measure, decided_on: dt.date | None) -> list[Check]:
        """The decision falls in the year and every money parameter is in force then (or in the year)."""
        money_params = [(name, p) for name, p in measure.parameters() if isinstance(p, (YuanParam, RatioParam))]
        if decided_on is None:
            off = [(name, p) for name, p in money_params if not p.window.overlaps_year(self.year)]
            return [
                (False, "in_policy_window", f"{self.year} is outside the policy window ({name} in force {p.window})")
                for name, p in off[:1]
            ]
        checks: list[Check] = [
            (
                decided_on.year == self.year,
                "decided_in_year",
                f"decided on {decided_on}, not in the evaluated year {self.year}",
            )
        ]
        off = [(name, p) for name, p in money_params if not p.window.contains(decided_on)]
        checks += [
            (
                False,
                "in_policy_window",
                f"decided on {decided_on}, outside the policy window ({name} in force {p.window})",
            )
            for name, p in off[:1]
        ]
        return checks

    @staticmethod
    def _param_steps(measure: Measure) -> list[TraceStep]:
        steps = []
        for name, p in measure.parameters():
            quote = f" 「{p.quote}」" if p.quote else ""
            steps.append(
                TraceStep(
                    step="parameter",
                    clause=p.clause,
                    text=f"{name} = {p.display()} ({p.clause}{quote}; in force {p.window})",
                    values={
                        "name": name,
                        "value": p.plain(),
                        "unit": p.unit,
                        "clause": p.clause,
                        "effective_from": p.window.start.isoformat(),
                        "effective_to": p.window.end.isoformat(),
                    },
                )
            )
        return steps

    @staticmethod
    def _cap(
        basis: Decimal, rate: RatioParam | None, ceiling: Decimal, ceiling_name: str, clause: str, label: str
    ) -> _Capped:
        """rate × basis (or the basis itself), then min with the ceiling, then floored to the fen."""
        steps: list[TraceStep] = []
        if rate is None:
            raw = basis
        else:
            raw = basis * rate.value
            steps.append(
                TraceStep(
                    step="rate",
                    clause=rate.clause,
                    text=f"{label}{money(basis)} × {rate.display()} = {money(raw)}",
                    values={"basis_yuan": plain(basis), "rate": rate.plain(), "raw_yuan": plain(raw)},
                )
            )
        bound = raw > ceiling
        capped = min(raw, ceiling)
        if bound:
            text = f"{label}{money(raw)} is above the {ceiling_name} {money(ceiling)}: the ceiling binds"
        else:
            text = f"{label}{money(raw)} is within the {ceiling_name} {money(ceiling)}: not bound"
        steps.append(
            TraceStep(
                step="ceiling",
                clause=clause,
                text=text,
                values={
                    "ceiling": ceiling_name,
                    "ceiling_yuan": plain(ceiling),
                    "bound": "true" if bound else "false",
                    "capped_yuan": plain(capped),
                },
            )
        )
        amount = floor_fen(capped)
        steps.append(
            TraceStep(
                step="floor",
                text=f"{label}floored to the fen: {money(amount)}",
                values={"before_yuan": plain(capped), "amount_yuan": plain(amount)},
            )
        )
        return _Capped(raw=raw, amount=amount, bound=bound, steps=steps)

    def _assessed(
        self, assessed: Decimal | None, ceiling: Decimal, *, measure_id: str, party: str, source: str
    ) -> tuple[Decimal, TraceStep] | None:
        """The amount proposed on merit (择优); without one the source is pending, never money: "最高X万元" is an
        upper limit, not an amount."""
        if assessed is None:
            clause = self._clause(measure_id)
            self.pending.append(
                Pending(
                    measure=measure_id,
                    clause=clause,
                    party=party,
                    source=source,
                    ceiling_yuan=ceiling,
                    reason=f"{clause} ({measure_id}): {source} meets every condition; the amount awaits the "
                    f"evaluation's assessment (assessed_yuan), at most {money(ceiling)}",
                )
            )
            return None
        return assessed, TraceStep(
            step="basis",
            text=f"assessed amount {money(assessed)}",
            values={"basis_yuan": plain(assessed), "assessed": "true"},
        )

    def _capped_part(
        self,
        source: str,
        basis: Decimal,
        basis_step: TraceStep,
        rate: RatioParam | None,
        ceiling: Decimal,
        ceiling_name: str,
        clause: str,
        eligibility: str,
    ) -> _Part:
        capped = self._cap(basis, rate, ceiling, ceiling_name, clause, f"{source}: ")
        basis_step = basis_step.model_copy(
            update={"text": f"{source}: {basis_step.text}", "values": {"source": source, **basis_step.values}}
        )
        steps = [
            TraceStep(step="eligibility", clause=clause, text=f"{source}: {eligibility}", values={"source": source}),
            basis_step,
            *capped.steps,
        ]
        return _Part(source=source, basis=basis, steps=steps, amount=capped.amount, ceiling=ceiling, bound=capped.bound)

    def _add_item(
        self,
        measure_id: str,
        measure: Measure,
        party: str,
        parts: Sequence[_Part],
        amount: Decimal,
        basis: Decimal,
        steps: list[TraceStep],
        ceiling: Decimal | None,
        scope: str | None,
        bound: str | None,
        non_stacking: NonStacking | None = None,
    ) -> None:
        self.items.append(
            Item(
                measure=measure_id,
                clause=measure.clause,
                title=measure.title,
                party=party,
                amount_yuan=amount,
                basis_yuan=basis,
                sources=sorted(p.source for p in parts),
                ceiling_yuan=ceiling,
                ceiling_scope=scope,  # type: ignore[arg-type]
                ceiling_bound=bound,
                non_stacking=non_stacking,
                parts=[
                    ItemPart(
                        source=p.source, basis_yuan=p.basis, amount_yuan=p.amount, ceiling_yuan=p.ceiling, bound=p.bound
                    )
                    for p in parts
                ],
                trace=steps,
            )
        )

    def _finish_per_source(
        self,
        measure_id: str,
        measure: Measure,
        groups: dict[str, list[_Part]],
        ceiling_name: str,
        scope: str = "per_source",
    ) -> None:
        """One item per party: the sum of per-source amounts, each already capped and floored."""
        for party in sorted(groups):
            parts = sorted(groups[party], key=lambda p: p.source)
            amount = _sum(p.amount or ZERO for p in parts)
            basis = _sum(p.basis for p in parts)
            ceiling = _sum(p.ceiling or ZERO for p in parts)
            steps = self._param_steps(measure) + [s for p in parts for s in p.steps]
            steps.append(
                TraceStep(
                    step="total",
                    clause=measure.clause,
                    text=f"amount {money(amount)} = sum over {len(parts)} source(s): "
                    + " + ".join(f"{p.source} {money(p.amount or ZERO)}" for p in parts),
                    values={"amount_yuan": plain(amount), "basis_yuan": plain(basis)},
                )
            )
            bound_sources = [p.source for p in parts if p.bound]
            bound = f"{ceiling_name} on {', '.join(bound_sources)}" if bound_sources else None
            self._add_item(measure_id, measure, party, parts, amount, basis, steps, ceiling, scope, bound)

    # ------------------------------------------------------------ 第4条 (4.1, 4.2) and 第9条 (9.3): contracts

    def _contract_checks(self, measure: ContractMeasure, contract: Contract) -> list[Check]:
        types = measure.contract_types.value
        return [
            (
                contract.type in types,
                "contract_type",
                f"contract {contract.id} is a {contract.type} contract; this measure pays {', '.join(types)} "
                "(技术开发、技术转让)",
            ),
            (
                contract.registered or not measure.require_registered.value,
                "registered",
                f"contract {contract.id} is not registered (登记备案)",
            ),
        ]

    def _contract_claim(
        self,
        measure_id: str,
        measure: ContractMeasure,
        contract: Contract,
        recipient: str,
        checks: list[Check],
        eligibility: str,
        groups: dict[str, list[_Part]],
    ) -> None:
        """Collect the year's in-window payments of an eligible contract for its recipient."""
        if self._failed(measure_id, recipient, contract.id, checks):
            return
        money_params = (("rate", measure.rate), ("annual_ceiling", measure.annual_ceiling))
        counted, outside, other_years = [], [], []
        for payment in sorted(contract.payments, key=lambda p: (p.paid_on, p.amount_yuan)):
            if payment.paid_on.year != self.year:
                other_years.append(payment)
                continue
            off = [(name, p) for name, p in money_params if not p.window.contains(payment.paid_on)]
            if off:
                outside.append(
                    f"payment of {money(payment.amount_yuan)} on {payment.paid_on} is outside the "
                    f"policy window ({off[0][0]} in force {off[0][1].window})"
                )
            else:
                counted.append(payment)
        if outside:
            self._reject(measure_id, recipient, contract.id, "payment_in_policy_window", "; ".join(outside))
        if not counted:
            if not outside:
                self._reject(
                    measure_id,
                    recipient,
                    contract.id,
                    "paid_in_year",
                    f"no payment on contract {contract.id} in {self.year} (当年实际支付/到账金额 is nil)",
                )
            return
        basis = _sum(p.amount_yuan for p in counted)
        text = (
            f"{contract.id}: paid in {self.year}: "
            + ", ".join(f"{p.paid_on} {money(p.amount_yuan)}" for p in counted)
            + f" = {money(basis)}"
        )
        if other_years:
            text += "; not counted (other years): " + ", ".join(
                f"{p.paid_on} {money(p.amount_yuan)}" for p in other_years
            )
        steps = [
            TraceStep(
                step="eligibility",
                clause=measure.clause,
                text=f"{contract.id}: {eligibility}",
                values={
                    "source": contract.id,
                    "type": contract.type,
                    "registered": "true" if contract.registered else "false",
                    "signed_on": contract.signed_on.isoformat(),
                },
            ),
            TraceStep(
                step="basis",
                clause=measure.clause,
                text=text,
                values={"source": contract.id, "basis_yuan": plain(basis), "payments": str(len(counted))},
            ),
        ]
        groups.setdefault(recipient, []).append(_Part(source=contract.id, basis=basis, steps=steps))

    def _finish_annual(
        self, measure_id: str, measure: ContractMeasure, groups: dict[str, list[_Part]], per: str
    ) -> None:
        """One item per party: rate × the party's yearly total, capped by the yearly ceiling, floored."""
        for party in sorted(groups):
            parts = sorted(groups[party], key=lambda p: p.source)
            basis = _sum(p.basis for p in parts)
            ceiling = measure.annual_ceiling.value
            steps = self._param_steps(measure) + [s for p in parts for s in p.steps]
            steps.append(
                TraceStep(
                    step="basis",
                    clause=measure.clause,
                    text=f"basis {money(basis)}: payments in {self.year} over {len(parts)} contract(s) (当年实际金额)",
                    values={"basis_yuan": plain(basis), "contracts": str(len(parts))},
                )
            )
            capped = self._cap(basis, measure.rate, ceiling, f"annual ceiling {per}", measure.clause, "")
            steps += capped.steps
            self._add_item(
                measure_id,
                measure,
                party,
                parts,
                capped.amount,
                basis,
                steps,
                ceiling,
                "per_party_year",
                "annual_ceiling" if capped.bound else None,
            )

    def contracts(self) -> None:
        """4.1 buyer, 4.2 university / new R&D institution seller, 9.3 brokering agency."""
        m41, m42, m93 = self.m.m4_1, self.m.m4_2, self.m.m9_3
        g41: dict[str, list[_Part]] = {}
        g42: dict[str, list[_Part]] = {}
        g93: dict[str, list[_Part]] = {}
        for contract in sorted(self.request.contracts, key=lambda c: c.id):
            buyer, seller = self.parties[contract.buyer], self.parties[contract.seller]
            self._claim_41(m41, contract, buyer, seller, g41)
            self._claim_42(m42, contract, buyer, seller, g42)
            if contract.agency is not None:
                self._claim_93(m93, contract, buyer, seller, self.parties[contract.agency], g93)
        self._finish_annual("4.1", m41, g41, "per enterprise")
        self._finish_annual("4.2", m42, g42, "per unit")
        self._finish_annual("9.3", m93, g93, "per agency")

    def _buyer_checks(self, buyer: Party) -> list[Check]:
        return [
            (
                buyer.kind == "enterprise",
                "buyer_enterprise",
                f"buyer {buyer.id} is {buyer.kind}, not an enterprise (企业)",
            ),
            (buyer.in_weihai, "buyer_in_weihai", f"buyer {buyer.id} is not a Weihai enterprise (威海本地企业)"),
        ]

    def _claim_41(
        self,
        m: ContractFromResearchMeasure,
        contract: Contract,
        buyer: Party,
        seller: Party,
        groups: dict[str, list[_Part]],
    ) -> None:
        # 第4条: 威海有研发活动的企业 buying from 高校院所 (anywhere).
        kinds = m.eligible_seller_kinds.value
        checks = [
            *self._buyer_checks(buyer),
            (
                bool(buyer.has_rd_activity),
                "buyer_rd_activity",
                f"buyer {buyer.id} has no declared R&D activity (有研发活动)",
            ),
            (
                seller.kind in kinds,
                "seller_kind",
                f"seller {seller.id} is {seller.kind}, not {' or '.join(kinds)} (高校院所)",
            ),
            *self._contract_checks(m, contract),
        ]
        eligibility = (
            f"buyer {buyer.id} is a Weihai enterprise with R&D activity; seller {seller.id} is "
            f"a {seller.kind}; {contract.type} contract, "
            + ("registered (登记备案)" if contract.registered else "not registered")
        )
        self._contract_claim("4.1", m, contract, buyer.id, checks, eligibility, groups)

    def _claim_42(
        self, m: ContractMeasure, contract: Contract, buyer: Party, seller: Party, groups: dict[str, list[_Part]]
    ) -> None:
        # 第4条: 驻威高校 or 事业单位性质的新型研发机构 selling to a 威海本地企业; other institutes are not recipients.
        checks = [
            (
                seller.kind in ("university", "new_rd_institution"),
                "seller_kind",
                f"seller {seller.id} is {seller.kind}; only a university (高校) or a new R&D institution "
                "(新型研发机构) receives this subsidy",
            ),
            (
                seller.kind != "new_rd_institution" or bool(seller.public_institution),
                "seller_public_institution",
                f"new R&D institution {seller.id} is not a public institution (事业单位性质)",
            ),
            (seller.in_weihai, "seller_in_weihai", f"seller {seller.id} is not stationed in Weihai (驻威)"),
            *self._buyer_checks(buyer),
            *self._contract_checks(m, contract),
        ]
        eligibility = (
            f"seller {seller.id} is a Weihai {seller.kind}; buyer {buyer.id} is a Weihai enterprise; "
            f"{contract.type} contract, " + ("registered (登记备案)" if contract.registered else "not registered")
        )
        self._contract_claim("4.2", m, contract, seller.id, checks, eligibility, groups)

    def _claim_93(
        self,
        m: ContractFromResearchMeasure,
        contract: Contract,
        buyer: Party,
        seller: Party,
        agency: Party,
        groups: dict[str, list[_Part]],
    ) -> None:
        # 第9条: 备案技术转移服务机构 that landed a 高校院所 achievement in a 我市企业.
        kinds = m.eligible_seller_kinds.value
        checks = [
            (
                agency.kind == "agency",
                "agency_kind",
                f"{agency.id} is {agency.kind}, not a technology transfer agency (技术转移服务机构)",
            ),
            (bool(agency.filed), "agency_filed", f"agency {agency.id} is not filed (备案)"),
            (
                seller.kind in kinds,
                "seller_kind",
                f"seller {seller.id} is {seller.kind}, not {' or '.join(kinds)} (高校院所科技成果)",
            ),
            *self._buyer_checks(buyer),
            *self._contract_checks(m, contract),
        ]
        eligibility = (
            f"filed agency {agency.id} brokered {seller.kind} {seller.id} → Weihai enterprise "
            f"{buyer.id}; {contract.type} contract"
        )
        self._contract_claim("9.3", m, contract, agency.id, checks, eligibility, groups)

    # ------------------------------------------------------------ 第5条: two-way listings (双向揭榜)

    def listings(self) -> None:
        """5.1 技术攻关 after acceptance, 5.2 成果转化 on the listed target."""
        g51: dict[str, list[_Part]] = {}
        g52: dict[str, list[_Part]] = {}
        for listing in sorted(self.request.listings, key=lambda x: x.id):
            if listing.kind == "tackling":
                m, measure_id, groups = self.m.m5_1, "5.1", g51
                checks = [
                    (
                        listing.accepted is True,
                        "accepted",
                        f"listing {listing.id} has not passed evaluation and acceptance (验收)",
                    ),
                    (
                        listing.transaction_yuan is not None,
                        "transaction_amount",
                        f"listing {listing.id} gives no actual transaction amount (实际成交额)",
                    ),
                ]
                amount, label = listing.transaction_yuan, "actual transaction (实际成交额)"
            else:
                m, measure_id, groups = self.m.m5_2, "5.2", g52
                checks = [
                    (
                        listing.target_yuan is not None,
                        "target_amount",
                        f"listing {listing.id} gives no listed target amount (张榜标的额)",
                    )
                ]
                amount, label = listing.target_yuan, "listed target (张榜标的额)"
            checks += self._date_checks(m, listing.decided_on)
            if self._failed(measure_id, listing.party, listing.id, checks) or amount is None:
                continue
            basis_step = TraceStep(step="basis", text=f"{label} {money(amount)}", values={"basis_yuan": plain(amount)})
            eligibility = (
                "technology tackling listing, accepted (验收)"
                if listing.kind == "tackling"
                else "achievement transformation listing, milestone funding fixed at approval (立项)"
            )
            groups.setdefault(listing.party, []).append(
                self._capped_part(
                    listing.id,
                    amount,
                    basis_step,
                    m.rate,
                    m.ceiling.value,
                    "per-listing ceiling",
                    m.clause,
                    eligibility,
                )
            )
        self._finish_per_source("5.1", self.m.m5_1, g51, "per-listing ceiling")
        self._finish_per_source("5.2", self.m.m5_2, g52, "per-listing ceiling")

    # ------------------------------------------------------------ 第2、3、6条: 择优 awards after evaluation

    def activities(self) -> None:
        """第2条: filed matchmaking events chosen on merit, up to the ceiling each."""
        m = self.m.m2
        groups: dict[str, list[_Part]] = {}
        for activity in sorted(self.request.activities, key=lambda x: x.id):
            party = self.parties[activity.party]
            checks = [
                *self._recipient_checks(m, party),
                (activity.filed, "activity_filed", f"activity {activity.id} is not filed (备案活动)"),
                (
                    activity.selected is True,
                    "selected",
                    f"activity {activity.id} was not chosen on merit after performance evaluation (择优)",
                ),
                *self._date_checks(m, activity.decided_on),
            ]
            if self._failed("2", party.id, activity.id, checks):
                continue
            assessed = self._assessed(
                activity.assessed_yuan, m.ceiling.value, measure_id="2", party=party.id, source=activity.id
            )
            if assessed is None:
                continue
            basis, step = assessed
            groups.setdefault(party.id, []).append(
                self._capped_part(
                    activity.id,
                    basis,
                    step,
                    None,
                    m.ceiling.value,
                    "per-activity ceiling",
                    m.clause,
                    "filed activity, chosen on merit (择优) after performance evaluation",
                )
            )
        self._finish_per_source("2", m, groups, "per-activity ceiling")

    def evaluations(self) -> None:
        """第3条 cloud R&D centres, 第6条 pilot bases / proof-of-concept centres, 9.2 agencies."""
        g3: dict[str, list[_Part]] = {}
        g6: dict[str, list[_Part]] = {}
        for ev in sorted(self.request.evaluations, key=lambda x: x.id):
            party = self.parties[ev.party]
            if ev.measure == "9.2":
                self._agency_evaluation(ev.id, party, ev.grade, ev.assessed_yuan, ev.provincial_yuan, ev.decided_on)
                continue
            if ev.measure == "3":
                m, groups, ceiling_name = self.m.m3, g3, "per-centre ceiling"
                checks = [
                    (
                        ev.facility in (None, "cloud_rd_center"),
                        "facility",
                        f"{ev.id} is a {ev.facility}, not a cloud R&D centre (云上研发中心)",
                    )
                ]
                eligibility = "cloud R&D centre (云上研发中心) chosen on merit (择优) in the annual evaluation"
            else:
                m, groups, ceiling_name = self.m.m6, g6, "per-base ceiling"
                checks = [
                    (
                        ev.facility in ("pilot_base", "proof_of_concept_center"),
                        "facility",
                        f"{ev.id} is not a pilot base (中试示范基地) or proof-of-concept centre (概念验证中心)",
                    ),
                    (
                        ev.filed is True,
                        "filed",
                        f"{ev.id} is not under filing management at municipal level or above (纳入市级以上备案管理)",
                    ),
                ]
                eligibility = f"{ev.facility}, filed at municipal level or above, chosen on merit (择优)"
            checks = [
                *self._recipient_checks(m, party),
                *checks,
                (
                    ev.selected is True,
                    "selected",
                    f"{ev.id} was not chosen on merit in the annual performance evaluation (择优)",
                ),
                *self._date_checks(m, ev.decided_on),
            ]
            if self._failed(ev.measure, party.id, ev.id, checks):
                continue
            assessed = self._assessed(
                ev.assessed_yuan, m.ceiling.value, measure_id=ev.measure, party=party.id, source=ev.id
            )
            if assessed is None:
                continue
            basis, step = assessed
            groups.setdefault(party.id, []).append(
                self._capped_part(ev.id, basis, step, None, m.ceiling.value, ceiling_name, m.clause, eligibility)
            )
        self._finish_per_source("3", self.m.m3, g3, "per-centre ceiling")
        self._finish_per_source("6", self.m.m6, g6, "per-base ceiling")

    # ------------------------------------------------------------ 不叠加: provincial and municipal money

    def _choose_level(
        self, measure_id: str, rule: RuleParam, party: str, source: str, municipal: Decimal, provincial: Decimal
    ) -> NonStacking | None:
        """Apply the non-stacking rule; None (and a rejection) when the provincial money is kept and the city pays
        nothing."""
        clause = self._clause(measure_id)
        if provincial > 0 and (rule.value == "provincial_first" or provincial >= municipal):
            why = (
                "any provincial money for the year excludes the municipal subsidy"
                if rule.value == "provincial_first"
                else f"provincial {money(provincial)} ≥ municipal {money(municipal)}"
            )
            self._reject(
                measure_id,
                party,
                source,
                "non_stacking",
                f"provincial and municipal subsidies do not stack (不叠加享受), rule {rule.value}: {why}; "
                "the provincial money is kept and no municipal subsidy is paid",
            )
            return None
        paid = municipal
        if provincial > 0 and rule.value == "difference":
            paid = municipal - provincial
            reason = (
                f"rule difference: the provincial {money(provincial)} already received counts towards the municipal "
                f"{money(municipal)}; the city pays the difference {money(paid)}, so the unit ends with the higher "
                f"of the two and never both (就高不重复, 不叠加享受, {clause})"
            )
        elif provincial > 0:
            reason = (
                f"rule {rule.value}: municipal {money(municipal)} > provincial {money(provincial)}; the "
                f"municipal subsidy is paid and the provincial {money(provincial)} must not also be taken "
                f"(不叠加享受, {clause})"
            )
        else:
            reason = (
                f"no provincial money recorded for {self.year}: the municipal subsidy is paid (不叠加享受, {clause})"
            )
        return NonStacking(
            rule=rule.value,
            chosen="municipal",
            municipal_yuan=municipal,
            provincial_yuan=provincial,
            paid_yuan=paid,
            reason=reason,
        )

    def _agency_evaluation(
        self,
        source: str,
        party: Party,
        grade: str | None,
        assessed: Decimal | None,
        provincial: Decimal | None,
        decided_on: dt.date | None,
    ) -> None:
        # 第9条: 市级及以上备案 agencies; 优秀 up to 10万, 良好 up to 6万; 省市两级不叠加享受.
        m = self.m.m9_2
        checks = [
            *self._recipient_checks(m, party),
            (
                bool(party.filed),
                "agency_filed",
                f"agency {party.id} is not filed at municipal level or above (市级及以上备案)",
            ),
            (
                grade in ("excellent", "good"),
                "grade",
                f"evaluation result is {grade or 'not given'}; only excellent (优秀) or good (良好) is paid",
            ),
            *self._date_checks(m, decided_on),
        ]
        if self._failed("9.2", party.id, source, checks):
            return
        ceiling_param = m.ceiling_excellent if grade == "excellent" else m.ceiling_good
        ceiling_name = f"{'excellent (优秀)' if grade == 'excellent' else 'good (良好)'} ceiling"
        got = self._assessed(assessed, ceiling_param.value, measure_id="9.2", party=party.id, source=source)
        if got is None:
            return
        basis, step = got
        part = self._capped_part(
            source,
            basis,
            step,
            None,
            ceiling_param.value,
            ceiling_name,
            m.clause,
            f"filed agency {party.id}, annual evaluation {grade}",
        )
        amount = part.amount or ZERO
        choice = self._choose_level("9.2", m.non_stacking_rule, party.id, source, amount, provincial or ZERO)
        if choice is None:
            return
        steps = [
            *self._param_steps(m),
            *part.steps,
            TraceStep(
                step="non_stacking",
                clause=m.non_stacking_rule.clause,
                text=choice.reason,
                values={
                    "chosen": choice.chosen,
                    "municipal_yuan": plain(amount),
                    "provincial_yuan": plain(choice.provincial_yuan),
                    "paid_yuan": plain(choice.paid_yuan),
                },
            ),
        ]
        self._add_item(
            "9.2",
            m,
            party.id,
            [part],
            choice.paid_yuan,
            basis,
            steps,
            ceiling_param.value,
            "per_source",
            ceiling_name if part.bound else None,
            choice,
        )

    # ------------------------------------------------------------ 第7条, 9.1, 10.1: first recognitions

    def recognitions(self) -> None:
        """One-off awards for a first recognition, up to the ceiling of its level."""
        groups: dict[str, dict[str, list[_Part]]] = {"7": {}, "9.1": {}, "10.1": {}}
        for rec in sorted(self.request.recognitions, key=lambda x: x.id):
            party = self.parties[rec.party]
            if rec.measure == "7":
                m7 = self.m.m7
                measure: Measure = m7
                ceiling, ceiling_name = m7.ceiling.value, "ceiling"
                checks = [
                    *self._recipient_checks(m7, party),
                    (
                        rec.level == "national",
                        "level",
                        f"{rec.id} is {rec.level}; only a national incubator (国家级科技企业孵化器) is rewarded",
                    ),
                ]
                what = "newly approved national technology business incubator (新获批国家级科技企业孵化器)"
            elif rec.measure == "9.1":
                m91 = self.m.m9_1
                measure = m91
                ceiling, ceiling_name = m91.ceiling.value, "ceiling"
                checks = [
                    *self._recipient_checks(m91, party),
                    (
                        rec.level == "provincial",
                        "level",
                        f"{rec.id} is {rec.level}; the award is for a Shandong provincial agency "
                        "(山东省技术转移服务机构)",
                    ),
                ]
                what = "first recognised as a Shandong technology transfer agency (首次认定)"
            else:
                m101 = self.m.m10_1
                measure = m101
                national = rec.level == "national"
                ceiling = m101.ceiling_national.value if national else m101.ceiling_provincial.value
                ceiling_name = "national ceiling" if national else "provincial ceiling"
                checks = [
                    *self._recipient_checks(m101, party),
                    (
                        rec.level in ("national", "provincial"),
                        "level",
                        f"{rec.id} is {rec.level}; only a national or Shandong provincial training base is rewarded",
                    ),
                ]
                what = f"first recognised as a {rec.level} technology transfer talent training base (首次认定)"
            checks += [
                (
                    rec.first_time,
                    "first_time",
                    f"{rec.id} is not a first recognition / new approval (首次认定 / 新获批)",
                ),
                *self._date_checks(measure, rec.decided_on),
            ]
            if self._failed(rec.measure, party.id, rec.id, checks):
                continue
            assessed = self._assessed(rec.assessed_yuan, ceiling, measure_id=rec.measure, party=party.id, source=rec.id)
            if assessed is None:
                continue
            basis, step = assessed
            groups[rec.measure].setdefault(party.id, []).append(
                self._capped_part(rec.id, basis, step, None, ceiling, ceiling_name, measure.clause, what)
            )
        self._finish_per_source("7", self.m.m7, groups["7"], "ceiling")
        self._finish_per_source("9.1", self.m.m9_1, groups["9.1"], "ceiling")
        self._finish_per_source("10.1", self.m.m10_1, groups["10.1"], "level ceiling")

    # ------------------------------------------------------------ 第8条: landings through exchange events

    def landings(self) -> None:
        """One-off subsidy at or above the inclusive workload threshold."""
        m = self.m.m8
        threshold = m.workload_threshold.value
        groups: dict[str, list[_Part]] = {}
        for landing in sorted(self.request.landings, key=lambda x: x.id):
            party = self.parties[landing.party]
            workload = landing.physical_workload_yuan
            checks = [
                *self._recipient_checks(m, party),
                (
                    landing.via_exchange_event,
                    "via_exchange_event",
                    f"{landing.id} did not land directly through a science exchange event (中韩创新大赛等)",
                ),
                (landing.registered, "registered", f"{landing.id} has not completed registration (完成注册)"),
                (
                    landing.operating_normally,
                    "operating_normally",
                    f"{landing.id} is not in continuous normal operation (持续正常开展生产经营活动)",
                ),
                # 100万元(含)以上: the threshold itself qualifies.
                (
                    workload >= threshold,
                    "workload_threshold",
                    f"physical workload {money(workload)} is below {money(threshold)} (100万元(含)以上)",
                ),
                (
                    not landing.previously_awarded,
                    "one_off",
                    f"{landing.id} already received this one-off subsidy (一次性)",
                ),
                *self._date_checks(m, landing.decided_on),
            ]
            if self._failed("8", party.id, landing.id, checks):
                continue
            assessed = self._assessed(
                landing.assessed_yuan, m.ceiling.value, measure_id="8", party=party.id, source=landing.id
            )
            if assessed is None:
                continue
            basis, step = assessed
            event = f" ({landing.event})" if landing.event else ""
            groups.setdefault(party.id, []).append(
                self._capped_part(
                    landing.id,
                    basis,
                    step,
                    None,
                    m.ceiling.value,
                    "one-off ceiling",
                    m.clause,
                    f"landed through an exchange event{event}, registered and operating; physical workload "
                    f"{money(workload)} ≥ {money(threshold)} (含, inclusive)",
                )
            )
        self._finish_per_source("8", m, groups, "one-off ceiling")

    # ------------------------------------------------------------ 第14条: foreign expert studios

    def expert_studios(self) -> None:
        """A fixed one-off amount for a studio assessed excellent at the end of construction."""
        m = self.m.m14
        fixed = m.amount.value
        groups: dict[str, list[_Part]] = {}
        for studio in sorted(self.request.expert_studios, key=lambda x: x.id):
            party = self.parties[studio.party]
            checks = [
                *self._recipient_checks(m, party),
                (
                    studio.construction_completed,
                    "construction_completed",
                    f"{studio.id}: the construction period has not ended (建设期满)",
                ),
                (
                    studio.grade == "excellent",
                    "grade",
                    f"{studio.id}: assessment is {studio.grade}; only excellent (优秀) is paid",
                ),
                (
                    not studio.previously_awarded,
                    "one_off",
                    f"{studio.id} already received this one-off subsidy (一次性)",
                ),
                *self._date_checks(m, studio.decided_on),
            ]
            if self._failed("14", party.id, studio.id, checks):
                continue
            steps = [
                TraceStep(
                    step="eligibility",
                    clause=m.clause,
                    text=f"{studio.id}: foreign expert studio (外国专家工作室), construction ended, "
                    "assessed excellent (优秀)",
                    values={"source": studio.id},
                ),
                TraceStep(
                    step="basis",
                    clause=m.clause,
                    text=f"{studio.id}: fixed one-off amount {money(fixed)} (一次性给予)",
                    values={"source": studio.id, "amount_yuan": plain(fixed)},
                ),
            ]
            groups.setdefault(party.id, []).append(
                _Part(source=studio.id, basis=fixed, steps=steps, amount=fixed, ceiling=fixed)
            )
        self._finish_per_source("14", m, groups, "fixed amount", scope="fixed")

    # ------------------------------------------------------------ 10.2: training fee waivers, levels not stacked

    def trainings(self) -> None:
        """Post-subsidy of a base's fee waivers, capped per base per year, provincial money not stacked."""
        m = self.m.m10_2
        groups: dict[str, list[_Part]] = {}
        provincial: dict[str, Decimal] = {}
        for training in sorted(self.request.trainings, key=lambda x: x.id):
            party = self.parties[training.party]
            provincial[party.id] = provincial.get(party.id, ZERO) + (training.provincial_yuan or ZERO)
            checks = [
                *self._recipient_checks(m, party),
                (
                    training.base_level in ("national", "provincial"),
                    "base_level",
                    f"{training.id}: the base is {training.base_level}; provincial or above (省以上) is required",
                ),
                (
                    training.qualified_and_filed,
                    "qualified_and_filed",
                    f"{training.id}: the trainees are not qualified and filed (培训合格备案)",
                ),
                (
                    training.trainees_work_in_weihai,
                    "trainees_in_weihai",
                    f"{training.id}: the trainees do not work in Weihai (我市开展相关工作)",
                ),
                *self._date_checks(m, training.decided_on),
            ]
            if self._failed("10.2", party.id, training.id, checks):
                continue
            fees = training.waived_fees_yuan
            steps = [
                TraceStep(
                    step="basis",
                    clause=m.clause,
                    text=f"{training.id}: {training.base_level} base; {training.trainees} trainee(s) "
                    f"qualified and filed; training fees waived (减免培训费用) {money(fees)}",
                    values={"source": training.id, "basis_yuan": plain(fees)},
                )
            ]
            groups.setdefault(party.id, []).append(_Part(source=training.id, basis=fees, steps=steps))
        for party_id in sorted(groups):
            parts = sorted(groups[party_id], key=lambda p: p.source)
            basis = _sum(p.basis for p in parts)
            ceiling = m.annual_ceiling.value
            capped = self._cap(
                basis, None, ceiling, "annual ceiling per base", m.clause, f"fees waived in {self.year} "
            )
            source = ",".join(p.source for p in parts)
            choice = self._choose_level(
                "10.2", m.non_stacking_rule, party_id, source, capped.amount, provincial.get(party_id, ZERO)
            )
            if choice is None:
                continue
            steps = [
                *self._param_steps(m),
                *[s for p in parts for s in p.steps],
                *capped.steps,
                TraceStep(
                    step="non_stacking",
                    clause=m.non_stacking_rule.clause,
                    text=choice.reason,
                    values={
                        "chosen": choice.chosen,
                        "municipal_yuan": plain(capped.amount),
                        "provincial_yuan": plain(choice.provincial_yuan),
                        "paid_yuan": plain(choice.paid_yuan),
                    },
                ),
            ]
            self._add_item(
                "10.2",
                m,
                party_id,
                parts,
                choice.paid_yuan,
                basis,
                steps,
                ceiling,
                "per_party_year",
                "annual_ceiling" if capped.bound else None,
                choice,
            )

    # ------------------------------------------------------------ 第15条: loans

    def loans(self) -> None:
        """15.1 risk compensation on non-performing principal; 15.2 provincial interest subsidy."""
        m1, m2 = self.m.m15_1, self.m.m15_2
        g1: dict[str, list[_Part]] = {}
        g2: dict[str, list[_Part]] = {}
        for loan in sorted(self.request.loans, key=lambda x: x.id):
            party = self.parties[loan.party]
            base = [
                (
                    party.tech_sme is True,
                    "tech_sme",
                    f"{party.id} is not a national technology-based SME (国家科技型中小企业)",
                ),
                (
                    loan.filed_with_province,
                    "filed_with_province",
                    f"{loan.id} is not filed with the provincial transformation-loan scheme (省科技成果转化贷款备案)",
                ),
            ]
            npl = loan.non_performing_principal_yuan
            if npl is not None:  # a claim for risk compensation (paid to the lending bank)
                bank = self.parties.get(loan.bank) if loan.bank is not None else None
                checks = [
                    *self._recipient_checks(m1, party),
                    *base,
                    (
                        bank is not None,
                        "lending_bank",
                        f"{loan.id} names no lending bank: 15.1 compensates the lender's loss (风险补偿)",
                    ),
                    (
                        bank is None or bank.kind == "bank",
                        "bank_kind",
                        f"{loan.id}: the lender {loan.bank} is a {bank.kind if bank else '?'}, not a bank",
                    ),
                    *self._date_checks(m1, loan.decided_on),
                ]
                if not self._failed("15.1", party.id, loan.id, checks):
                    assert loan.bank is not None
                    self.lenders[loan.id] = loan.bank
                    g1.setdefault(party.id, []).append(
                        _Part(
                            source=loan.id,
                            basis=npl,
                            extra={"balance": loan.balance_yuan},
                            steps=[
                                TraceStep(
                                    step="basis",
                                    clause=m1.clause,
                                    text=f"{loan.id}: balance (贷款余额) {money(loan.balance_yuan)}, "
                                    f"non-performing principal (不良本金) {money(npl)}",
                                    values={
                                        "source": loan.id,
                                        "balance_yuan": plain(loan.balance_yuan),
                                        "non_performing_principal_yuan": plain(npl),
                                    },
                                )
                            ],
                        )
                    )
            subsidy = loan.interest_subsidy_yuan
            if subsidy is not None:  # a claim for the interest subsidy
                checks = [
                    *self._recipient_checks(m2, party),
                    *base,
                    (
                        loan.repaid_on_time is True,
                        "repaid_on_time",
                        f"{loan.id}: principal and interest not repaid on time (按时还本付息)",
                    ),
                    *self._date_checks(m2, loan.decided_on),
                ]
                if not self._failed("15.2", party.id, loan.id, checks):
                    g2.setdefault(party.id, []).append(
                        _Part(
                            source=loan.id,
                            basis=subsidy,
                            steps=[
                                TraceStep(
                                    step="basis",
                                    clause=m2.clause,
                                    text=f"{loan.id}: interest subsidy claimed (贴息) {money(subsidy)}",
                                    values={"source": loan.id, "basis_yuan": plain(subsidy)},
                                )
                            ],
                        )
                    )
        by_bank: dict[str, list[tuple[_Part, list[TraceStep]]]] = {}
        for party_id in sorted(g1):
            for lender, part, steps in self._risk_compensation(party_id, sorted(g1[party_id], key=lambda p: p.source)):
                by_bank.setdefault(lender, []).append((part, steps))
        for lender in sorted(by_bank):
            parts = [p for p, _ in by_bank[lender]]
            amount = _sum(p.amount or ZERO for p in parts)
            steps = [*self._param_steps(m1), *[s for _, st in by_bank[lender] for s in st]]
            steps.append(
                TraceStep(
                    step="total",
                    clause=m1.clause,
                    text=f"the city's part paid to the lending bank {lender}: {money(amount)} over "
                    f"{len(parts)} borrower(s)",
                    values={"amount_yuan": plain(amount)},
                )
            )
            self._add_item(
                "15.1",
                m1,
                lender,
                parts,
                amount,
                _sum(p.basis for p in parts),
                steps,
                _sum(p.ceiling or ZERO for p in parts),
                "per_source",
                "balance_limit" if any(p.bound for p in parts) else None,
            )
        for party_id in sorted(g2):
            parts = sorted(g2[party_id], key=lambda p: p.source)
            basis = _sum(p.basis for p in parts)
            capped = self._cap(basis, None, m2.ceiling.value, "ceiling per enterprise", m2.clause, "interest subsidy ")
            steps = [*self._param_steps(m2), *[s for p in parts for s in p.steps], *capped.steps]
            self._add_item(
                "15.2",
                m2,
                party_id,
                parts,
                capped.amount,
                basis,
                steps,
                m2.ceiling.value,
                "per_party_year",
                "ceiling" if capped.bound else None,
            )

    def _risk_compensation(self, party_id: str, parts: list[_Part]) -> list[tuple[str, _Part, list[TraceStep]]]:
        """第15条 for one borrowing enterprise: 70% (90% for 科融信-assessed early-stage SMEs) of the non-performing
        principal on a covered balance of at most 2000万 per enterprise, province and city together; the city's part
        (municipal_share) is paid to each lending bank, its principal's share of the compensable amount."""
        m = self.m.m15_1
        party = self.parties[party_id]
        limit = m.balance_limit.value
        balance = _sum(p.extra["balance"] for p in parts)
        npl = _sum(p.basis for p in parts)
        covered = min(balance, limit)
        compensable = min(npl, covered)
        early = party.early_stage_assessed is True
        rate = m.rate_early_stage if early else m.rate
        share = m.municipal_share.value
        bound = npl > covered and balance > limit
        head = [
            *[s for p in parts for s in p.steps],
            TraceStep(
                step="basis",
                clause=m.clause,
                text=f"{party_id}: covered balance = min(balance {money(balance)}, limit {money(limit)}) = "
                f"{money(covered)}; compensable principal = min(non-performing {money(npl)}, "
                f"covered {money(covered)}) = {money(compensable)}",
                values={
                    "borrower": party_id,
                    "balance_yuan": plain(balance),
                    "covered_yuan": plain(covered),
                    "non_performing_yuan": plain(npl),
                    "compensable_yuan": plain(compensable),
                },
            ),
        ]
        # Each lending bank's share of the compensable principal: pro rata to its non-performing principal, floored
        # to the fen, the remaining fen to the bank with the most (then the first by id).
        npl_by_bank: dict[str, Decimal] = {}
        loans_by_bank: dict[str, list[str]] = {}
        for p in parts:
            bank = self.lenders[p.source]
            npl_by_bank[bank] = npl_by_bank.get(bank, ZERO) + p.basis
            loans_by_bank.setdefault(bank, []).append(p.source)
        banks = sorted(npl_by_bank)
        shares = {b: floor_fen(compensable * npl_by_bank[b] / npl) if npl else ZERO for b in banks}
        first = max(banks, key=lambda b: (npl_by_bank[b], [-ord(c) for c in b]))
        shares[first] += compensable - _sum(shares.values())
        out = []
        for bank in banks:
            base = shares[bank]
            two_level = floor_fen(base * rate.value)
            city = floor_fen(two_level * share)
            province = two_level - city
            # The most the city can pay on this borrower whatever the split between banks: a true upper bound.
            ceiling = floor_fen(floor_fen(limit * rate.value) * share)
            steps = [
                *head,
                TraceStep(
                    step="rate",
                    clause=rate.clause,
                    text=f"{party_id} → {bank}: {money(base)} × {rate.display()} "
                    + ("(early-stage SME assessed via 科融信)" if early else "(standard rate)")
                    + f" = {money(two_level)}, province and city together (省市两级); the city's part "
                    f"{money(two_level)} × {m.municipal_share.display()} = {money(city)}, the province's "
                    f"{money(province)}",
                    values={
                        "borrower": party_id,
                        "bank": bank,
                        "compensable_yuan": plain(base),
                        "rate": rate.plain(),
                        "two_level_yuan": plain(two_level),
                        "municipal_yuan": plain(city),
                        "provincial_yuan": plain(province),
                    },
                ),
            ]
            part = _Part(
                source=",".join(sorted(loans_by_bank[bank])),
                basis=base,
                steps=[],
                amount=city,
                ceiling=ceiling,
                bound=bound,
            )
            out.append((bank, part, steps))
        return out

    # ------------------------------------------------------------ result

    def result(self) -> EvaluateResponse:
        order = {measure_id: i for i, measure_id in enumerate(MEASURE_ORDER)}
        items = sorted(self.items, key=lambda it: (order[it.measure], it.party))
        rejections = sorted(self.rejections, key=lambda r: (order[r.measure], r.party, r.source, r.condition, r.reason))
        by_measure: dict[str, Decimal] = {}
        for item in items:
            by_measure[item.measure] = by_measure.get(item.measure, ZERO) + item.amount_yuan
        return EvaluateResponse(
            year=self.year,
            policy=PolicyRef(
                version=self.params.version,
                title=self.params.title,
                status=self.params.status,
                effective_from=self.params.effective.start,
                effective_to=self.params.effective.end,
            ),
            items=items,
            rejections=rejections,
            pending=sorted(self.pending, key=lambda p: (order[p.measure], p.party, p.source)),
            non_monetary=[
                NonMonetary(measure=measure_id, clause=m.clause, title=m.title, note=m.note)
                for measure_id, m in self.params.measures.non_monetary()
            ],
            totals=Totals(total_yuan=_sum(it.amount_yuan for it in items), by_measure=by_measure),
        )


def evaluate_case(request: EvaluateRequest, params: PolicyParameters) -> EvaluateResponse:
    """Apply every money clause to the request's year. The request must have passed the reference checks."""
    run = _Run(request, params)
    run.contracts()
    run.listings()
    run.activities()
    run.evaluations()
    run.recognitions()
    run.landings()
    run.expert_studios()
    run.trainings()
    run.loans()
    return run.result()
