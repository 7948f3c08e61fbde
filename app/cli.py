"""The `techmatch` command line: serve, ingest, pull, index, users, demo, eval, subsidy."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Annotated, Any

import typer

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

cli = typer.Typer(
    help="techmatch: technology supply/demand matching.", no_args_is_help=True, pretty_exceptions_enable=False
)
index_cli = typer.Typer(help="Search index maintenance.", no_args_is_help=True)
cli.add_typer(index_cli, name="index")
users_cli = typer.Typer(help="Users and organisations (no server needed).", no_args_is_help=True)
cli.add_typer(users_cli, name="users")
rank_cli = typer.Typer(help="The learned re-ranker.", no_args_is_help=True)
cli.add_typer(rank_cli, name="rank")
encoder_cli = typer.Typer(help="The text encoder: adapt it to the catalogue.", no_args_is_help=True)
cli.add_typer(encoder_cli, name="encoder")
push_cli = typer.Typer(help="Targeted push: batches of leads and their deliveries.", no_args_is_help=True)
cli.add_typer(push_cli, name="push")
deals_cli = typer.Typer(help="Deals: reconciliation with the registration office, alerts.", no_args_is_help=True)
cli.add_typer(deals_cli, name="deals")
grades_cli = typer.Typer(help="Graded need → achievement pairs (what ranking learns from).", no_args_is_help=True)
cli.add_typer(grades_cli, name="grades")

KindOpt = Annotated[str, typer.Option("--kind", help="achievements or needs")]


def _settings():  # type: ignore[no-untyped-def]
    from core.settings import get_settings

    return get_settings()


def _kind(kind: str):  # type: ignore[no-untyped-def]
    from models.tables import IngestKind

    try:
        return IngestKind(kind)
    except ValueError:
        raise typer.BadParameter(f"--kind must be achievements or needs, not {kind!r}") from None


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@cli.command()
def serve(
    host: str = "127.0.0.1",
    port: int = 8000,
    reload: bool = False,
    workers: Annotated[int, typer.Option(min=1, help="server processes (each follows the change feed)")] = 1,
) -> None:
    """Run the HTTP service (migrates the DB, loads the model, brings the index level with the change feed first).

    Several workers use both cores under concurrent load: a query's Python parts hold one process's GIL.
    """
    import uvicorn
    from pydantic import ValidationError

    # Refuse unsafe settings (production without an admin token) in one line, before uvicorn starts: inside the
    # app's lifespan the same refusal is a traceback after the imports.
    try:
        _settings()
    except ValidationError as exc:
        _fail("; ".join(str(err["msg"]).removeprefix("Value error, ") for err in exc.errors()))
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    uvicorn.run("app.main:create_app", factory=True, host=host, port=port, reload=reload, workers=workers)


def _runtime(*, sync: bool = False):  # type: ignore[no-untyped-def]
    from app.runtime import build_runtime

    return build_runtime(_settings(), sync=sync)


def _follow(runtime, *, progress: bool) -> None:  # type: ignore[no-untyped-def]
    """Bring the index level with the change feed; when a running server holds the index, it does that itself."""
    report = runtime.follower.catch_up(progress=progress)
    if report.role != "writer":
        holder = runtime.follower.lease.holder()
        typer.echo(f"index: followed by the running process (pid {holder}); these changes are searchable there shortly")
        return
    for target, rep in report.applied.items():
        typer.echo(
            f"index {target}: {rep.added} added, {rep.updated} updated, {rep.removed} removed, "
            f"{rep.unchanged} unchanged"
        )


def _sync(runtime, *, progress: bool) -> None:  # type: ignore[no-untyped-def]
    """Reconcile the whole index with the DB (explicit maintenance); needs the index lease."""
    from catalog.indexing import sync_indexes
    from models.db import session_scope

    if not runtime.follower.lease.try_acquire():
        runtime.close()
        _fail(
            f"the index is held by a running process (pid {runtime.follower.lease.holder()}), which follows the "
            "database by itself; stop it first to reconcile or rebuild"
        )
    with session_scope(runtime.session_factory) as session:
        reports = sync_indexes(session=session, indexes=runtime.indexes, progress=progress)
    for target, rep in reports.items():
        typer.echo(
            f"index {target}: {rep.added} added, {rep.updated} updated, {rep.removed} removed, "
            f"{rep.unchanged} unchanged"
        )


@cli.command()
def ingest(
    files: Annotated[list[Path], typer.Argument(help="JSONL, CSV or XLSX files", exists=True, dir_okay=False)],
    kind: KindOpt = "achievements",
    source: Annotated[str | None, typer.Option(help="source name (default: the file name)")] = None,
    batch_size: int = 200,
    progress: bool = True,
) -> None:
    """Load needs or achievements from files: idempotent upsert, bad rows named, then the index follows."""
    from ingest.service import format_errors, format_summary, ingest_file

    ingest_kind = _kind(kind)  # validate before the model loads
    runtime = _runtime()
    rejected = 0
    for path in files:
        summary = ingest_file(
            session_factory=runtime.write_session_factory,
            kind=ingest_kind,
            path=path,
            source=source,
            batch_size=batch_size,
            progress=progress,
        )
        typer.echo(f"{path}: {format_summary(summary)}")
        if summary.rejected:
            typer.echo(format_errors(summary), err=True)
        rejected += summary.rejected
    _follow(runtime, progress=progress)
    runtime.close()
    if rejected:
        raise typer.Exit(1)


@cli.command()
def pull(
    url: str,
    kind: KindOpt = "achievements",
    source: Annotated[
        str | None, typer.Option(help="source name (default: the feed URL's scheme, host and path, no credentials)")
    ] = None,
    every: Annotated[float | None, typer.Option(help="pull again every N seconds (scheduled feed)")] = None,
    max_runs: Annotated[int | None, typer.Option(help="stop after this many pulls with --every")] = None,
    max_pages: Annotated[int | None, typer.Option(help="fail a pull that needs more pages [default: 1000]")] = None,
    max_body_mib: Annotated[
        float | None, typer.Option(help="fail a page whose body is larger than this many MiB [default: 20]")
    ] = None,
    retries: Annotated[
        int | None,
        typer.Option(help="with --every: retries of a page on timeouts, refused connections, 5xx [default: 4]"),
    ] = None,
) -> None:
    """Pull a JSON feed over HTTP from its stored since-cursor, then update the index; --every keeps pulling."""
    from core.errors import DomainError
    from ingest.feed import MAX_BODY_BYTES, MAX_PAGES, RETRIES, FeedError, pull_feed, pull_feed_every
    from ingest.service import IngestSummary, format_errors, format_summary

    feed_kind = _kind(kind)
    page_cap = MAX_PAGES if max_pages is None else max_pages
    body_cap = MAX_BODY_BYTES if max_body_mib is None else int(max_body_mib * 2**20)
    runtime = _runtime()

    def report(summary: IngestSummary) -> None:
        # summary.location has the URL's credentials masked; the URL as typed may hold a key.
        typer.echo(f"{summary.location}: {format_summary(summary)}")
        if summary.rejected:
            typer.echo(format_errors(summary), err=True)
        _follow(runtime, progress=False)

    def warn(exc: FeedError) -> None:
        typer.secho(f"warning: {exc.detail}; trying again in {every:g} s", fg=typer.colors.YELLOW, err=True)
        _follow(runtime, progress=False)  # what landed before the failure is kept and searchable

    session_factory = runtime.write_session_factory
    try:
        if every is None:
            # A one-off pull fails fast (exit 2) and leaves retrying to whatever runs it again.
            summary = pull_feed(
                session_factory=session_factory,
                url=url,
                kind=feed_kind,
                source=source,
                max_pages=page_cap,
                max_body_bytes=body_cap,
            )
            report(summary)
        else:
            # Transient errors are retried with backoff, a pull that still fails is reported and the next tick
            # comes as usual; a permanent error (wrong URL, refused key) ends the loop with exit 2.
            pull_feed_every(
                session_factory=session_factory,
                url=url,
                kind=feed_kind,
                source=source,
                interval_s=every,
                max_runs=max_runs,
                max_pages=page_cap,
                max_body_bytes=body_cap,
                retries=RETRIES if retries is None else retries,
                on_summary=report,
                on_error=warn,
            )
    except DomainError as exc:
        _follow(runtime, progress=False)  # what landed before the failure is kept and searchable
        runtime.close()
        _fail(exc.detail)
    runtime.close()


@index_cli.command("rebuild")
def index_rebuild() -> None:
    """Drop the index files and rebuild both indexes from the DB (re-embeds everything)."""
    import shutil

    from catalog.follower import Lease

    settings = _settings()
    lease = Lease(settings.index_dir / "writer.lock")
    if not lease.try_acquire():
        _fail(f"the index is held by a running process (pid {lease.holder()}); stop it first to rebuild")
    for target in ("achievements", "needs"):
        shutil.rmtree(settings.index_dir / target, ignore_errors=True)
    lease.release()
    runtime = _runtime()
    _sync(runtime, progress=True)
    runtime.close()


@index_cli.command("sync")
def index_sync() -> None:
    """Reconcile the index with every row of the DB (embeds only new or changed rows); the feed needs no help."""
    runtime = _runtime()
    _sync(runtime, progress=True)
    runtime.close()


@cli.command()
def demo(
    all_: Annotated[bool, typer.Option("--all", help="load every demo record (about 16k achievements)")] = False,
    achievements: Annotated[int, typer.Option(help="how many achievements in the default subset")] = 1500,
    progress: bool = True,
) -> None:
    """Load demo needs and achievements (real corpora from ../shared/data when present, else the shipped sample)."""
    from ingest.demo import load_demo

    runtime = _runtime()
    summaries = load_demo(
        session_factory=runtime.write_session_factory,
        data_dir=runtime.settings.shared_data_dir,
        limit=None if all_ else achievements,
        progress=progress,
    )
    for line in summaries:
        typer.echo(line)
    _follow(runtime, progress=progress)
    runtime.close()


@cli.command("eval")
def eval_(
    benchmark: Annotated[list[str] | None, typer.Option("--benchmark", "-b", help="A and/or B")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the figures as JSON")] = False,
    cv: Annotated[
        bool, typer.Option("--cv", help="add 5-fold cross-validated figures (fusion tuned inside the folds)")
    ] = False,
    qrels: Annotated[
        str,
        typer.Option(
            "--qrels", help="benchmarks (A-dev and B from ../shared) or reviews (the experts' merged grades in the DB)"
        ),
    ] = "benchmarks",
    reference: Annotated[
        Path | None,
        typer.Option(
            "--reference",
            help="a second encoder's model folder (fp32, e.g. an adaptation's), scored beside the configured one "
            "in the same run; with --cv, on the same folds",
        ),
    ] = None,
) -> None:
    """Benchmarks A-dev and B (nDCG@10, Recall@50, pool nDCG@10), or the serving rankers on the experts' grades."""
    if qrels == "reviews":
        if reference is not None:
            raise typer.BadParameter("--reference compares encoders on the benchmarks, not on --qrels reviews")
        _eval_reviews(as_json=as_json)
        return
    if qrels != "benchmarks":
        raise typer.BadParameter(f"--qrels must be benchmarks or reviews, not {qrels!r}")
    from app.runtime import load_embedder
    from matching.calibration import Thresholds
    from matching.eval import format_table, run_eval
    from matching.index import tuning_from_settings

    settings = _settings()
    if not settings.shared_data_dir.is_dir():
        _fail(f"shared data folder {settings.shared_data_dir} is absent; eval needs it")
    second: Any = "auto"
    if reference is not None:
        if not reference.is_dir():
            raise typer.BadParameter(f"--reference {reference} is not a model folder")
        second = load_embedder(settings.model_copy(update={"embedding_model": str(reference), "encoder": "torch"}))
    results = run_eval(
        benchmarks=tuple(benchmark or ("A", "B")),
        embedder=load_embedder(settings),
        data_dir=settings.shared_data_dir,
        cache_dir=settings.cache_dir,
        reference=second,
        cross_validate=cv,
        cross_validate_reference=reference is not None,
        served="rerank-logistic-cv" if settings.ranker == "learned" else "hybrid-fusion-cv",
        thresholds=Thresholds(strong=settings.strength_strong, possible=settings.strength_possible),
        **tuning_from_settings(settings),
    )
    typer.echo(json.dumps(results, indent=2, ensure_ascii=False) if as_json else format_table(results))


def _eval_reviews(*, as_json: bool) -> None:
    """Today's hybrid and single-signal rankers over the live index, on every merged expert grade."""
    from models.db import session_scope
    from workflow.review.service import evaluate_current

    runtime = _runtime()
    with session_scope(runtime.session_factory) as session:
        figures = evaluate_current(session=session, indexes=runtime.indexes, ranker_version=runtime.ranker_version)
    if as_json:
        typer.echo(json.dumps(figures, indent=2, ensure_ascii=False))
        return
    if not figures["queries"]:
        _fail("no expert grades yet: a need counts once one of its pairs is graded 1 or more")
    typer.echo(f"expert grades: {figures['pairs']} graded pairs, {figures['queries']} needs")
    typer.echo(f"{'ranker@version':<34} {'nDCG@10':>8} {'Recall@50':>10} {'judged@10':>10}")
    for name, values in figures["by_ranker"].items():
        line = f"{values['ndcg@10']:>8.4f} {values['recall@50']:>10.4f} {values['judged@10']:>10.2f}"
        typer.echo(f"{name:<34} {line}")


@rank_cli.command("train")
def rank_train(
    out: Annotated[Path | None, typer.Option(help="where to write the model [default: TECHMATCH_RANKER_MODEL]")] = None,
    source: Annotated[
        list[str] | None, typer.Option(help="graded pairs to learn from: review, push, benchmark [default: all]")
    ] = None,
    benchmark: Annotated[
        str | None, typer.Option(help="A: learn from benchmark A-dev's qrels in ../shared instead (the shipped model)")
    ] = None,
) -> None:
    """Fit the logistic re-ranker (seeded, reproducible) and save it as JSON; TECHMATCH_RANKER=learned serves it."""
    from matching.rerank import SHIPPED

    settings = _settings()
    target = out or settings.ranker_model or SHIPPED
    if benchmark is not None:
        if benchmark.upper() != "A":
            raise typer.BadParameter("only benchmark A has graded need → achievement pairs")
        from app.runtime import load_embedder
        from matching.dense import CachingEmbedder
        from matching.index import ranker_version, tuning_from_settings
        from matching.rerank import train_on_benchmark_a

        tuning = tuning_from_settings(settings)
        tuning.pop("reranker", None)
        embedder = CachingEmbedder(load_embedder(settings), cache_dir=settings.cache_dir)
        fusion = ranker_version(tuning, model=embedder.name)
        path = train_on_benchmark_a(
            settings.shared_data_dir,
            embedder=embedder,
            tuning=tuning,
            out=target,
            fusion_version=fusion if out is None and settings.ranker_model is None else None,
        )
        typer.echo(f"re-ranker trained on benchmark A-dev: {path}")
        if out is None and settings.ranker_model is None:
            typer.echo(f"and the calibration of the fusion {fusion}: matching/resources/calibration-fusion.json")
        return
    from core.errors import DomainError
    from models.db import session_scope
    from models.tables import GradeSource
    from workflow.ranking.service import train_from_grades

    try:
        sources = [GradeSource(s) for s in (source or [g.value for g in GradeSource])]
    except ValueError:
        raise typer.BadParameter(f"--source must be among {[g.value for g in GradeSource]}") from None
    runtime = _runtime()
    try:
        with session_scope(runtime.session_factory) as session:
            model = train_from_grades(
                session=session,
                indexes=runtime.indexes,
                sources=sources,
                out=target,
                ranker_version=runtime.ranker_version,
            )
    except DomainError as exc:
        _fail(exc.detail)
    typer.echo(f"re-ranker {model.version} trained on {model.trained_on}: {target}")


@encoder_cli.command("adapt")
def encoder_adapt(
    shared: Annotated[
        bool, typer.Option(help="also learn from the open corpora in ../shared (CSL, patents, CSL keywords)")
    ] = False,
    layers: Annotated[int, typer.Option(help="train the last N BERT layers")] = 4,
    epochs: int = 1,
    batch_size: int = 32,
    seed: int = 13,
    max_pairs: Annotated[int | None, typer.Option(help="learn from the first N pairs only (a quick trial)")] = None,
    current: Annotated[bool, typer.Option(help="make it the one TECHMATCH_ENCODER_ADAPTED serves")] = True,
) -> None:
    """Adapt e5-small to the catalogue (published achievements' abstract → title, plus the shipped corpus); cached."""
    from catalog.service import published_title_abstracts
    from ingest.demo import open_corpus_pairs, shipped_achievements
    from matching.adapt import AdaptConfig, Int8Refused, make_pairs, prepare_adapted_model

    settings = _settings()
    if shared and not settings.shared_data_dir.is_dir():
        _fail(f"--shared: the shared data folder {settings.shared_data_dir} is absent")
    try:
        config = AdaptConfig(layers=layers, epochs=epochs, batch_size=batch_size, seed=seed)
    except ValueError as exc:
        raise typer.BadParameter(str(exc)) from None
    with _db_session() as session:
        rows = published_title_abstracts(session=session)
    rows += [(r["title"], r.get("abstract", "")) for r in shipped_achievements()]
    if shared:
        rows += list(open_corpus_pairs(settings.shared_data_dir))
    pairs = make_pairs(rows)[:max_pairs]
    typer.echo(f"{len(pairs)} (abstract → title) pairs from {len(rows)} rows")

    def report(step: int, total: int, loss: float) -> None:
        if step == 1 or step % 20 == 0 or step == total:
            typer.echo(f"step {step}/{total}  loss {loss:.3f}")

    try:
        adapted = prepare_adapted_model(
            settings.cache_dir, pairs=pairs, config=config, progress=report, make_current=current
        )
    except ValueError as exc:
        _fail(str(exc))
    except Int8Refused as exc:
        typer.echo(f"adapted encoder {exc.adapted.name}: {exc.adapted.fp32} (fp32)")
        typer.echo(
            f"its int8 export is refused ({exc}), so it is not served; measure it against the base, fp32 both, "
            f"with `TECHMATCH_ENCODER=torch techmatch eval --cv -b A --reference {exc.adapted.fp32}`"
        )
        if current:
            _fail("not made current: TECHMATCH_ENCODER_ADAPTED serves an int8 export that passes the guard")
        return
    typer.echo(f"adapted encoder {adapted.name}: {adapted.fp32} (fp32), {adapted.onnx} (int8)")
    if current:
        typer.echo("serve it with TECHMATCH_ENCODER_ADAPTED=true, then `techmatch index rebuild` to re-embed")


@grades_cli.command("import")
def grades_import(
    benchmark: Annotated[str, typer.Option(help="A: benchmark A's dev qrels from ../shared")] = "A",
    progress: bool = True,
) -> None:
    """Load benchmark A-dev's graded pairs (grade = level − 1) with their needs and achievements; idempotent."""
    from ingest.service import format_summary
    from workflow.ranking.grades import BATCH, import_benchmark_a

    if benchmark.upper() != "A":
        raise typer.BadParameter("only benchmark A has graded need → achievement pairs")
    settings = _settings()
    if not settings.shared_data_dir.is_dir():
        _fail(f"shared data folder {settings.shared_data_dir} is absent; the import reads benchmark A from it")
    runtime = _runtime()
    done = import_benchmark_a(session_factory=runtime.write_session_factory, data_dir=settings.shared_data_dir)
    typer.echo(f"achievements: {format_summary(done.achievements)}")
    typer.echo(f"needs: {format_summary(done.needs)}")
    skipped = ", ".join(f"{n} {why}" for why, n in done.skipped.items()) or "none"
    typer.echo(
        f"graded pairs (benchmark, {BATCH}): {done.added} added, {done.existing} already there; skipped: {skipped}"
    )
    _follow(runtime, progress=progress)
    runtime.close()


@push_cli.command("run")
def push_run() -> None:
    """Run a push batch now over every active subscription, then send its deliveries (what the schedule does)."""
    from accounts.policy import CLI
    from models.db import session_scope
    from models.tables import BatchTrigger
    from workflow.push import delivery
    from workflow.push.service import run_batch

    runtime = _runtime()
    _follow(runtime, progress=False)
    with session_scope(runtime.write_session_factory) as session:
        batch = run_batch(
            session=session,
            indexes=runtime.indexes,
            ranker_version=runtime.ranker_version,
            trigger=BatchTrigger.staff,
            max_leads=runtime.settings.push_max_leads,
            actor=CLI,
        )
        batch_id, leads, report = batch.id, batch.leads, list(batch.report)
    typer.echo(f"push batch {batch_id}: {leads} leads")
    for line in report:
        typer.echo(
            f"  subscription {line['subscription_id']} (organisation {line['organisation_id']}): "
            + (line.get("error") or f"{line['delivered']} delivered, {line['already_pushed']} already pushed")
        )
    sent = delivery.deliver_due(
        session_factory=runtime.write_session_factory, config=delivery.DeliveryConfig.from_settings(runtime.settings)
    )
    typer.echo(f"deliveries: {len(sent.sent)} sent, {len(sent.retrying)} to retry, {len(sent.failed)} failed")
    runtime.close()


@push_cli.command("deliver")
def push_deliver() -> None:
    """Send the deliveries that are due (webhooks, e-mail); the server's scheduler does this every few seconds."""
    from models.db import make_engine, make_sessionmaker, migrate
    from workflow.push import delivery

    settings = _settings()
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    sent = delivery.deliver_due(
        session_factory=make_sessionmaker(engine, writer=True), config=delivery.DeliveryConfig.from_settings(settings)
    )
    typer.echo(f"deliveries: {len(sent.sent)} sent, {len(sent.retrying)} to retry, {len(sent.failed)} failed")
    engine.dispose()


@deals_cli.command("reconcile")
def deals_reconcile(
    file: Annotated[Path, typer.Argument(help="the registration office's list (XLSX or CSV)", dir_okay=False)],
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """List every difference between the registration office's contracts and the platform's deals."""
    from core.errors import DomainError
    from workflow.deals.reconcile import read_registry, reconcile

    try:
        rows, errors = read_registry(file)
    except DomainError as exc:
        _fail(exc.detail)
    with _db_session() as session:
        report = reconcile(session, rows, errors).as_dict()
    if as_json:
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
        return
    typer.echo(f"{report['rows']} rows, {report['matched']} matched to a deal")
    for m in report["mismatches"]:
        where = f"{m['registration_no']} deal {m['deal_id']} {m['field']}"
        typer.echo(f"  differs  {where}: platform {m['platform']!r}, registry {m['registry']!r}")
    for r in report["registered_without_deal"]:
        typer.echo(
            f"  no deal  {r['registration_no']} (row {r['row']}): {r['buyer']} ← {r['seller']} ¥{r['amount_yuan']}"
        )
    for r in report["missing_from_registry"]:
        typer.echo(f"  unlisted {r['registration_no']} deal {r['deal_id']} registered {r['registered_on']}")
    for e in report["errors"]:
        typer.echo(f"  row {e['row']}: {e['field'] or '(row)'}: {e['reason']}", err=True)
    if report["errors"]:
        raise typer.Exit(1)


def _db_session():  # type: ignore[no-untyped-def]
    """A committed-at-exit session on the configured database (migrated first); no model, no index."""
    from models.db import make_engine, make_sessionmaker, migrate, session_scope

    settings = _settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    migrate(engine)
    return session_scope(make_sessionmaker(engine, writer=True))


@users_cli.command("create")
def users_create(
    username: Annotated[str, typer.Option(help="login name")],
    role: Annotated[str, typer.Option(help="enterprise, university, agency, expert, staff or admin")],
    organisation_id: Annotated[int | None, typer.Option(help="the user's organisation (see `users orgs`)")] = None,
    display_name: Annotated[str, typer.Option()] = "",
    expertise: Annotated[str, typer.Option(help="an expert's fields, in words")] = "",
    password: Annotated[
        str, typer.Option(prompt=True, hide_input=True, confirmation_prompt=True, envvar="TECHMATCH_NEW_PASSWORD")
    ] = "",
) -> None:
    """Create a user (the password is prompted for, or read from TECHMATCH_NEW_PASSWORD)."""
    from pydantic import ValidationError

    from accounts.policy import CLI
    from accounts.schemas import UserCreate
    from accounts.service import create_user
    from core.errors import DomainError

    try:
        data = UserCreate(
            username=username,
            password=password,
            role=role,  # type: ignore[arg-type]
            organisation_id=organisation_id,
            display_name=display_name,
            expertise=expertise,
        )
        with _db_session() as session:
            user = create_user(session=session, data=data, actor=CLI)
            typer.echo(json.dumps({"id": user.id, "username": user.username, "role": str(user.role)}))
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except DomainError as exc:
        _fail(f"{exc.field + ': ' if exc.field else ''}{exc.detail}")


@users_cli.command("org")
def users_org(
    name: Annotated[str, typer.Option()],
    kind: Annotated[str, typer.Option(help="enterprise, university, research_institute, new_rd_institution, agency")],
    region: Annotated[str | None, typer.Option()] = None,
    in_weihai: Annotated[bool, typer.Option("--in-weihai/--elsewhere")] = False,
) -> None:
    """Register an organisation."""
    from pydantic import ValidationError

    from accounts.policy import CLI
    from accounts.schemas import OrganisationCreate
    from accounts.service import create_organisation
    from core.errors import DomainError

    try:
        data = OrganisationCreate(name=name, kind=kind, region=region, in_weihai=in_weihai)  # type: ignore[arg-type]
        with _db_session() as session:
            org = create_organisation(session=session, data=data, actor=CLI)
            typer.echo(json.dumps({"id": org.id, "name": org.name, "kind": str(org.kind)}, ensure_ascii=False))
    except ValidationError as exc:
        _fail("; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors()))
    except DomainError as exc:
        _fail(f"{exc.field + ': ' if exc.field else ''}{exc.detail}")


def _recorded(year: int) -> tuple[Any, dict[str, str | None]]:
    """A year of the platform's recorded deals as the engine's request, and each party's district."""
    from workflow.ledger.service import build_inputs, party_key

    with _db_session() as session:
        inputs = build_inputs(session, year)
        regions = {party_key(org.id): org.region for org in inputs.organisations.values()}
    for skipped in inputs.skipped:
        typer.echo(f"deal {skipped['deal_id']} left out: {skipped['reason']}", err=True)
    return inputs.request, regions


def _mount_subsidy() -> None:
    from subsidy import cli as subsidy_cli
    from subsidy.cli import subsidy_app

    subsidy_cli.recorded_loader = _recorded
    cli.add_typer(subsidy_app, name="subsidy", help="Subsidy rules: evaluate cases, simulate parameter changes.")


def main() -> None:
    """Console-script entry point."""
    _mount_subsidy()
    cli(prog_name="techmatch")


if __name__ == "__main__":
    main()
