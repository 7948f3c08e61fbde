"""`techmatch subsidy`: evaluate a case file, or simulate a parameter change over cases."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
import yaml
from pydantic import ValidationError
from rich.console import Console
from rich.table import Table

from core.errors import DomainError
from subsidy import service
from subsidy.parameters import ParameterFileError, PolicyParameters, load_parameters
from subsidy.schemas import EvaluateRequest
from subsidy.simulate import BudgetLine, Budgets, SimulationReport, simulate

subsidy_app = typer.Typer(
    help="Subsidy rules: evaluate cases, simulate parameter changes.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)

# Installed by the app's CLI (app/cli.py), which reads the platform's database: a year → the engine's request over
# its recorded deals, and each party id's district (region). This package itself never reads the database.
RecordedLoader = Callable[[int], tuple[EvaluateRequest, dict[str, str | None]]]
recorded_loader: RecordedLoader | None = None

ParamsOpt = Annotated[
    Path | None, typer.Option("--params", help="Parameter YAML (default: the packaged draft).", dir_okay=False)
]
YearOpt = Annotated[int | None, typer.Option("--year", help="Evaluate this year instead of the case's.")]
FromOpt = Annotated[
    dt.datetime | None,
    typer.Option("--effective-from", formats=["%Y-%m-%d"], help="Policy window start (default from the YAML)."),
]
ToOpt = Annotated[
    dt.datetime | None,
    typer.Option("--effective-to", formats=["%Y-%m-%d"], help="Policy window end (default from the YAML)."),
]


def _fail(message: str) -> NoReturn:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _field(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(case)"


def _params(path: Path | None, start: dt.datetime | None = None, end: dt.datetime | None = None) -> PolicyParameters:
    try:
        return load_parameters(
            path, effective_from=start.date() if start else None, effective_to=end.date() if end else None
        )
    except ParameterFileError as exc:
        _fail(str(exc))


def _request(path: Path, year: int | None) -> EvaluateRequest:
    """Read a case (JSON, or YAML by extension) and validate it; --year replaces its year."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc.strerror or exc}")
    try:
        raw = yaml.safe_load(text) if path.suffix.lower() in (".yaml", ".yml") else json.loads(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        _fail(f"{path}: not valid {'YAML' if path.suffix.lower() in ('.yaml', '.yml') else 'JSON'}: {exc}")
    if not isinstance(raw, dict):
        _fail(f"{path}: a case is a JSON object")
    if "request" in raw and "year" not in raw:
        raw = raw["request"]  # a test case (tests/subsidy/cases): its request is the case
        if not isinstance(raw, dict):
            _fail(f"{path}: its request is not an object")
    if year is not None:
        raw = {**raw, "year": year}
    try:
        request = EvaluateRequest.model_validate(raw)
        service.check_references(request=request)
    except ValidationError as exc:
        lines = [f"  {_field(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        _fail(f"{path}: invalid case:\n" + "\n".join(lines))
    except DomainError as exc:
        _fail(f"{path}: invalid case: {exc.field}: {exc.detail}" if exc.field else f"{path}: {exc.detail}")
    return request


@subsidy_app.command("evaluate")
def evaluate_command(
    case: Annotated[
        Path, typer.Argument(help="Case file: the evaluate request as JSON (or YAML).", exists=True, dir_okay=False)
    ],
    params: ParamsOpt = None,
    year: YearOpt = None,
    effective_from: FromOpt = None,
    effective_to: ToOpt = None,
) -> None:
    """Evaluate one case and print the response as JSON (items, traces, rejections)."""
    policy = _params(params, effective_from, effective_to)
    request = _request(case, year)
    response = service.evaluate(request=request, params=policy)
    typer.echo(response.model_dump_json(indent=2))


def _yuan(value: Any) -> str:
    return f"{value:,.2f}"


def _table(
    title: str, first: str, lines: list[BudgetLine], total: BudgetLine, report: SimulationReport, *, labels: bool
) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(first, no_wrap=True)
    if labels:
        table.add_column("clause / title", no_wrap=True, overflow="ellipsis", max_width=44)
    table.add_column(f"current ({report.current_version})", justify="right", no_wrap=True)
    table.add_column(f"alternative ({report.alternative_version})", justify="right", no_wrap=True)
    table.add_column("difference", justify="right", no_wrap=True)
    budgeted = any(line.budget_yuan is not None for line in [*lines, total])
    if budgeted:
        table.add_column("budget", justify="right", no_wrap=True)
        table.add_column("over budget", justify="right", no_wrap=True)
    for line in [*lines, None, total]:
        if line is None:
            table.add_section()
            continue
        label = [line.label] if labels else []
        if line is total and labels:
            label = [""]
        table.add_row(
            line.key if line is not total else "Total",
            *label,
            _yuan(line.current_yuan),
            _yuan(line.alternative_yuan),
            f"{line.difference_yuan:+,.2f}",
            *(
                [
                    "" if line.budget_yuan is None else _yuan(line.budget_yuan),
                    "" if line.over_budget_yuan is None else _yuan(line.over_budget_yuan),
                ]
                if budgeted
                else []
            ),
        )
    return table


@subsidy_app.command("simulate")
def simulate_command(
    params: Annotated[Path, typer.Option("--params", help="The alternative parameter YAML.", dir_okay=False)],
    cases: Annotated[
        list[Path] | None,
        typer.Argument(help="Case files (evaluate requests, or test cases with a `request`).", dir_okay=False),
    ] = None,
    recorded: Annotated[
        int | None,
        typer.Option("--recorded", help="Also price the platform's recorded deals of this year (its database)."),
    ] = None,
    budgets: Annotated[
        Path | None,
        typer.Option(
            "--budgets", dir_okay=False, help="YAML budgets: measures / parties / regions (district) / total, in yuan."
        ),
    ] = None,
    current: Annotated[
        Path | None,
        typer.Option("--current", dir_okay=False, help="The current parameter YAML (default: the packaged draft)."),
    ] = None,
    year: YearOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON instead of tables.")] = False,
) -> None:
    """Print budget totals per measure, per party and per district under the current and the alternative
    parameters, over case files and/or a year of the platform's recorded deals, each against its budget."""
    now = _params(current)
    alternative = _params(params)
    for path in cases or []:
        if not path.is_file():
            _fail(f"{path}: no such file")
    requests = [_request(path, year) for path in cases or []]
    regions: dict[str, str | None] | None = None
    if recorded is not None:
        if recorded_loader is None:  # pragma: no cover - the app's CLI always installs it
            _fail("--recorded needs the platform's database: run it as `techmatch subsidy simulate`")
        request, regions = recorded_loader(recorded)
        requests.append(request)
    if not requests:
        _fail("nothing to simulate: give case files and/or --recorded YEAR")
    plan = _budgets(budgets) if budgets is not None else None
    report = simulate(requests=requests, current=now, alternative=alternative, budgets=plan, regions=regions)
    if as_json:
        typer.echo(report.model_dump_json(indent=2))
        return
    console = Console(width=160)
    console.print(
        _table(
            f"Budget per measure, {report.cases} case(s) (yuan)",
            "measure",
            report.by_measure,
            report.total,
            report,
            labels=True,
        )
    )
    console.print(_table("Budget per party (yuan)", "party", report.by_party, report.total, report, labels=False))
    if report.by_region:
        console.print(
            _table("Budget per district (yuan)", "district", report.by_region, report.total, report, labels=False)
        )


def _budgets(path: Path) -> Budgets:
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return Budgets.model_validate(raw)
    except OSError as exc:
        _fail(f"{path}: cannot read: {exc.strerror or exc}")
    except yaml.YAMLError as exc:
        _fail(f"{path}: not valid YAML: {exc}")
    except ValidationError as exc:
        lines = [f"  {_field(tuple(e['loc']))}: {e['msg']}" for e in exc.errors()]
        _fail(f"{path}: invalid budgets:\n" + "\n".join(lines))
