"""`techmatch subsidy evaluate` and `simulate` through Typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml
from typer.testing import CliRunner

from subsidy.cli import subsidy_app
from tests.subsidy.conftest import CASES, draft_yaml, write_yaml
from tests.subsidy.test_validation import BASE

runner = CliRunner()


def _case(tmp_path: Path, data: dict[str, Any] = BASE, name: str = "case.json") -> Path:
    path = tmp_path / name
    path.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return path


def test_evaluate_prints_the_response_as_json(tmp_path: Path) -> None:
    result = runner.invoke(subsidy_app, ["evaluate", str(_case(tmp_path))])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert {(it["measure"], it["party"], it["amount_yuan"]) for it in body["items"]} >= {("4.1", "E1", "50.00")}


def test_evaluate_with_year_and_params(tmp_path: Path) -> None:
    data = draft_yaml()
    data["version"] = "alt"
    data["measures"]["4.1"]["rate"]["value"] = "0.10"
    alt = write_yaml(tmp_path / "alt.yaml", data)
    result = runner.invoke(subsidy_app, ["evaluate", str(_case(tmp_path)), "--params", str(alt)])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    assert body["policy"]["version"] == "alt"
    assert next(it for it in body["items"] if it["measure"] == "4.1")["amount_yuan"] == "100.00"
    result = runner.invoke(subsidy_app, ["evaluate", str(_case(tmp_path)), "--year", "2026"])
    assert result.exit_code == 0
    # The contract was paid in 2025; only the undated listing counts in 2026.
    assert [it["measure"] for it in json.loads(result.stdout)["items"]] == ["5.1"]


def test_evaluate_with_a_moved_window_rejects_early_payments(tmp_path: Path) -> None:
    result = runner.invoke(subsidy_app, ["evaluate", str(_case(tmp_path)), "--effective-from", "2025-02-15"])
    assert result.exit_code == 0, result.output
    body = json.loads(result.stdout)
    reasons = [r["reason"] for r in body["rejections"] if r["condition"] == "payment_in_policy_window"]
    assert reasons and all("2025-02-01 is outside the policy window" in reason for reason in reasons)
    assert next(it for it in body["items"] if it["measure"] == "4.1")["amount_yuan"] == "20.00"  # 5% of 400


def test_evaluate_accepts_a_yaml_case(tmp_path: Path) -> None:
    request = yaml.safe_load((CASES / "05_listings.yaml").read_text(encoding="utf-8"))["request"]
    path = tmp_path / "case.yaml"
    path.write_text(yaml.safe_dump(request, allow_unicode=True), encoding="utf-8")
    result = runner.invoke(subsidy_app, ["evaluate", str(path)])
    assert result.exit_code == 0, result.output


def test_evaluate_reports_invalid_cases(tmp_path: Path) -> None:
    bad = json.loads(json.dumps(BASE))
    bad["contracts"][0]["amount_yuan"] = "1.234"
    result = runner.invoke(subsidy_app, ["evaluate", str(_case(tmp_path, bad))])
    assert result.exit_code == 2 and "contracts[0].amount_yuan" in result.stderr
    bad = json.loads(json.dumps(BASE))
    bad["contracts"][0]["buyer"] = "X"
    result = runner.invoke(subsidy_app, ["evaluate", str(_case(tmp_path, bad))])
    assert result.exit_code == 2 and "contracts[0].buyer" in result.stderr
    (tmp_path / "broken.json").write_text("{", encoding="utf-8")
    result = runner.invoke(subsidy_app, ["evaluate", str(tmp_path / "broken.json")])
    assert result.exit_code == 2 and "not valid JSON" in result.stderr


def test_evaluate_reports_a_bad_parameter_file(tmp_path: Path) -> None:
    data = draft_yaml()
    data["measures"]["5.1"]["ceilling"] = data["measures"]["5.1"].pop("ceiling")
    bad = write_yaml(tmp_path / "bad.yaml", data)
    result = runner.invoke(subsidy_app, ["evaluate", str(_case(tmp_path)), "--params", str(bad)])
    assert result.exit_code == 2 and "measures.5.1.ceilling" in result.stderr


def _alternative(tmp_path: Path) -> Path:
    data = draft_yaml()
    data["version"] = "alt-2026"
    data["measures"]["4.1"]["rate"]["value"] = "0.08"
    data["measures"]["5.2"]["ceiling"]["value"] = "1000000"
    return write_yaml(tmp_path / "alt.yaml", data)


def test_simulate_prints_a_side_by_side_budget(tmp_path: Path) -> None:
    cases = [_case(tmp_path), tmp_path / "listings.json"]
    request = yaml.safe_load((CASES / "05_listings.yaml").read_text(encoding="utf-8"))["request"]
    cases[1].write_text(json.dumps(request, ensure_ascii=False), encoding="utf-8")
    result = runner.invoke(subsidy_app, ["simulate", "--params", str(_alternative(tmp_path)), *map(str, cases)])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Budget per measure" in out and "Budget per party" in out
    assert "weihai-2025-draft" in out and "alt-2026" in out
    assert "+30.00" in out  # 4.1: 8% instead of 5% of 1,000
    # 5.2 capped at 1,000,000 per listing: P3 2,246,913.57 → 1,246,913.57, P4 2,000,000.00 → 1,000,000.00.
    assert "-2,000,000.00" in out and "-1,000,000.00" in out
    assert "-1,999,970.00" in out  # the total


def test_simulate_json(tmp_path: Path) -> None:
    result = runner.invoke(
        subsidy_app, ["simulate", "--params", str(_alternative(tmp_path)), "--json", str(_case(tmp_path))]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    line = next(line for line in report["by_measure"] if line["key"] == "4.1")
    assert (line["current_yuan"], line["alternative_yuan"], line["difference_yuan"]) == ("50.00", "80.00", "30.00")
    assert report["total"]["difference_yuan"] == "30.00"
    assert {line["key"] for line in report["by_party"]} == {"E1", "U1", "A1"}


def test_simulate_reads_the_shipped_test_cases_as_cases(tmp_path: Path) -> None:
    # The README's example: the test cases carry their request under `request`.
    cases = sorted(CASES.glob("*.yaml"))
    result = runner.invoke(subsidy_app, ["simulate", "--params", str(_alternative(tmp_path)), *map(str, cases)])
    assert result.exit_code == 0, result.output
    assert f"{len(cases)} case(s)" in result.stdout


def test_simulate_against_budgets(tmp_path: Path) -> None:
    budgets = write_yaml(
        tmp_path / "budgets.yaml", {"measures": {"4.1": "60"}, "parties": {"E1": "100"}, "total": "1000"}
    )
    result = runner.invoke(
        subsidy_app,
        [
            "simulate",
            "--params",
            str(_alternative(tmp_path)),
            "--budgets",
            str(budgets),
            "--json",
            str(_case(tmp_path)),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    line = next(line for line in report["by_measure"] if line["key"] == "4.1")
    assert (line["budget_yuan"], line["over_budget_yuan"]) == ("60.00", "20.00")  # 8% of 1,000 = 80 against 60
    party = next(line for line in report["by_party"] if line["key"] == "E1")
    assert party["over_budget_yuan"] == "0.00"
    bad = write_yaml(tmp_path / "bad.yaml", {"measures": {"4.1": 60.5}})
    result = runner.invoke(
        subsidy_app, ["simulate", "--params", str(_alternative(tmp_path)), "--budgets", str(bad), str(_case(tmp_path))]
    )
    assert result.exit_code != 0 and "measures.4.1" in result.output
