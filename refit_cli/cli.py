"""`refit`: the operator CLI. Works against AWS or any emulator named by AWS_ENDPOINT_URL.

    refit start [--full | --incremental] [--prefix data/train/x/] [--mode endpoint|batch]
                [--force-promote | --force-reject]   override the gate (recorded as forced)
    refit runs [--json] [--limit N]
    refit run RUN_ID
    refit models [--json] [--limit N]   lineage: Model Registry packages, their runs, the live one
    refit cost [--days N] [--json]   estimated USD per day and per model (refit.record_run.cost)
    refit predict [FILE]          CSV rows (no label) from FILE or stdin -> one prediction a line
    refit local up [--port N] [--state-dir D] [--spot-interruptions N] [--parameter K=V]
                                  the whole application on this machine (no AWS, no Docker)

The stack is found by name (``--stack``, else ``REFIT_STACK``, else ``stack_name`` in
samconfig.toml, else "refit") and its outputs give the bucket, state machine, table and endpoint.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from refit.ledger.run_records import RunRecords
from refit.record_run.cost import USD_DIGITS, format_usd
from refit.run_input import InvalidRunInput, parse_run_input

DEFAULT_STACK = "refit"


@dataclass(frozen=True)
class StackOutputs:
    """The stack outputs the CLI needs (template.yaml `Outputs`)."""

    stack_name: str
    bucket: str
    state_machine_arn: str
    runs_table: str
    endpoint_name: str

    @classmethod
    def load(cls, cloudformation: Any, stack_name: str) -> StackOutputs:
        stacks = cloudformation.describe_stacks(StackName=stack_name)["Stacks"]
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stacks[0].get("Outputs", [])}
        try:
            return cls(
                stack_name=stack_name,
                bucket=outputs["DataBucketName"],
                state_machine_arn=outputs["StateMachineArn"],
                runs_table=outputs["RunsTableName"],
                endpoint_name=outputs["EndpointName"],
            )
        except KeyError as missing:
            raise SystemExit(
                f"stack {stack_name} has no output {missing}: is it a refit stack?"
            ) from None


def default_stack_name(samconfig: Path = Path("samconfig.toml")) -> str:
    if os.environ.get("REFIT_STACK"):
        return os.environ["REFIT_STACK"]
    if samconfig.is_file():
        config = tomllib.loads(samconfig.read_text())
        name = config.get("default", {}).get("global", {}).get("parameters", {}).get("stack_name")
        if isinstance(name, str) and name:
            return name
    return DEFAULT_STACK


def build_execution_input(args: argparse.Namespace) -> dict[str, Any]:
    document: dict[str, Any] = {"source": "manual"}
    if args.full:
        document["trainingMode"] = "full"
    elif args.incremental:
        document["trainingMode"] = "incremental"
    if args.prefix:
        document["prefix"] = args.prefix
    if args.mode:
        document["deploymentMode"] = args.mode
    # Optional: callers that build the namespace themselves (the demo) may leave them out.
    if getattr(args, "force_promote", False):
        document["forceDecision"] = "promote"
    elif getattr(args, "force_reject", False):
        document["forceDecision"] = "reject"
    # Refuse bad input here, before an execution is started only to fail in PrepareRun.
    parse_run_input(document)
    return document


def rollback_execution_input(to_version: int | None) -> dict[str, Any]:
    """What ``refit rollback`` starts (refit.registry.rollback): the same input works by hand."""
    document: dict[str, Any] = {"source": "manual", "rollback": {}}
    if to_version is not None:
        document["rollback"]["toVersion"] = to_version
    parse_run_input(document)
    return document


def manual_execution_name(now: float) -> str:
    return (
        time.strftime("manual-%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    )


def _metric(run: dict[str, Any], side: str) -> str:
    value = (run.get("metrics") or {}).get(side)  # RecordRun stores both scores here
    return "-" if value is None else f"{value:.4g}"


def _cost(run: Mapping[str, Any]) -> Mapping[str, Any]:
    found = run.get("cost")
    return found if isinstance(found, Mapping) else {}


def _part(run: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    found = _cost(run).get(key)
    return found if isinstance(found, Mapping) else {}


def _instances(run: Mapping[str, Any]) -> str:
    training = _part(run, "training")
    if not training.get("instanceType"):
        return "-"
    return f"{training.get('instanceCount', '?')}×{training['instanceType']}"


def _deploy_hours(run: Mapping[str, Any]) -> float | None:
    """Endpoint instance-hours the rollout added, or the batch transform's instance-hours."""
    hours = _part(run, "endpointRollout").get("addedInstanceHours")
    if hours is None:
        hours = _part(run, "transform").get("instanceHours")
    return float(hours) if isinstance(hours, int | float) else None


def _run_total(run: Mapping[str, Any]) -> str:
    if not _cost(run):
        return "-"  # recorded before cost accounting, or still running
    return format_usd(_cost(run).get("totalUSD")).removeprefix("$")


def _percent(value: Any) -> str:
    # DynamoDB hands 70.0 back as 70: one decimal, whatever came back.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "-"
    return f"{value:.1f}"


def format_runs(runs: Sequence[dict[str, Any]]) -> str:
    header = (
        "run",
        "status",
        "mode",
        "rows",
        "challenger",
        "champion",
        "train s",
        "billable s",
        "spot %",
        "instances",
        "deploy h",
        "cost $",
    )
    rows = [header]
    for run in runs:
        data = run.get("data") or {}
        deploy_hours = _deploy_hours(run)
        rows.append(
            (
                str(run.get("runId", "?")),
                str(run.get("status", "?")),
                str(run.get("trainingMode", "-")),
                str(data.get("rows", "-")),
                _metric(run, "challenger"),
                _metric(run, "champion"),
                str(run.get("trainingTimeInSeconds", "-")),
                str(run.get("billableTimeInSeconds", "-")),
                _percent(run.get("spotSavingsPercent")),
                _instances(run),
                "-" if deploy_hours is None else f"{deploy_hours:.4f}",
                _run_total(run),
            )
        )
    return _table(rows)


def _table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows
    )


# --- refit models -----------------------------------------------------------------------------
def format_models(entries: Sequence[Mapping[str, Any]]) -> str:
    """``refit models``: one line per package, newest first; ``*`` marks the live one."""
    header = ("live", "version", "run", "status", "mode", "files", "rows", "metric", "challenger")
    rows = [header]
    for entry in entries:
        rows.append(
            (
                "*" if entry.get("live") else "",
                str(entry.get("version") or "?"),
                str(entry.get("runId") or "?"),
                str(entry.get("status") or "?"),
                str(entry.get("trainingMode") or "-"),
                str(entry.get("dataFiles") if entry.get("dataFiles") is not None else "-"),
                str(entry.get("dataRows") if entry.get("dataRows") is not None else "-"),
                str(entry.get("metric") or "-"),
                str(entry.get("challenger") or "-"),
            )
        )
    return _table(rows)


# --- refit cost -------------------------------------------------------------------------------
_SUMS = ("trainingUSD", "onDemandTrainingUSD", "spotSavedUSD", "deployInstanceHours", "deployUSD")


def _run_day(run: Mapping[str, Any]) -> str | None:
    moment = run.get("finishedAt") or run.get("startedAt")
    return moment[:10] if isinstance(moment, str) and len(moment) >= 10 else None


def _run_model(run: Mapping[str, Any]) -> str:
    """RecordRun's ``cost.model`` (the endpoint, or ``<stack>/batch``); older records: a guess."""
    model = _cost(run).get("model") or run.get("endpointName") or run.get("deploymentMode")
    return str(model) if model else "-"


def _number(value: Any) -> float:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else 0.0


def _add(totals: dict[str, Any], run: Mapping[str, Any]) -> None:
    training, rollout = _part(run, "training"), _part(run, "endpointRollout")
    transform = _part(run, "transform")
    totals["runs"] += 1
    totals["trainingSeconds"] += int(_number(training.get("trainingSeconds")))
    totals["billableSeconds"] += int(_number(training.get("billableSeconds")))
    totals["trainingUSD"] += _number(training.get("costUSD"))
    totals["onDemandTrainingUSD"] += _number(training.get("onDemandCostUSD"))
    totals["spotSavedUSD"] += _number(training.get("savingsUSD"))
    totals["deployInstanceHours"] += _number(_deploy_hours(run))
    totals["deployUSD"] += _number(rollout.get("costUSD")) + _number(transform.get("costUSD"))
    if _cost(run).get("totalUSD") is None:
        totals["unpricedRuns"] += 1


def _rounded(totals: dict[str, Any]) -> dict[str, Any]:
    done = {k: round(v, USD_DIGITS) if k in _SUMS else v for k, v in totals.items()}
    done["totalUSD"] = round(done["trainingUSD"] + done["deployUSD"], USD_DIGITS)
    return done


def cost_totals(runs: Sequence[Mapping[str, Any]], days: int, today: date) -> dict[str, Any]:
    """Finished runs of the last ``days`` days (UTC, by finishedAt), totalled per day, per model
    and overall. A run that could not be fully priced adds what was priced and is counted in
    ``unpricedRuns``, with its reasons under ``unpriced``."""
    first = today - timedelta(days=days - 1)
    counts = ("runs", "trainingSeconds", "billableSeconds", "unpricedRuns")
    empty = dict.fromkeys(counts, 0) | dict.fromkeys(_SUMS, 0.0)
    by_day: dict[str, dict[str, Any]] = {}
    by_model: dict[str, dict[str, Any]] = {}
    total = dict(empty)
    unpriced: list[dict[str, Any]] = []
    sources: set[tuple[str, str]] = set()
    for run in runs:
        day = _run_day(run)
        if run.get("status") == "RUNNING" or day is None or day < first.isoformat():
            continue
        model = _run_model(run)
        _add(by_day.setdefault(day, {"day": day, **empty}), run)
        _add(by_model.setdefault(model, {"model": model, **empty}), run)
        _add(total, run)
        cost = _cost(run)
        if cost.get("totalUSD") is None:
            reasons = cost.get("unpriced") or ["recorded without a cost estimate"]
            unpriced.append({"runId": run.get("runId"), "reasons": list(reasons)})
        if cost.get("priceSource"):
            sources.add((str(cost["priceSource"]), str(cost.get("pricesRetrievedOn", "?"))))
    return {
        "from": first.isoformat(),
        "to": today.isoformat(),
        "currency": "USD",
        "byDay": [_rounded(by_day[d]) for d in sorted(by_day, reverse=True)],
        "byModel": [_rounded(by_model[m]) for m in sorted(by_model)],
        "total": _rounded(total),
        "unpriced": unpriced,
        "priceSources": [{"source": s, "retrievedOn": r} for s, r in sorted(sources)],
    }


def format_cost(totals: Mapping[str, Any]) -> str:
    columns = (
        ("runs", "runs"),
        ("train s", "trainingSeconds"),
        ("billable s", "billableSeconds"),
        ("training $", "trainingUSD"),
        ("on-demand $", "onDemandTrainingUSD"),
        ("spot saved $", "spotSavedUSD"),
        ("deploy h", "deployInstanceHours"),
        ("deploy $", "deployUSD"),
        ("total $", "totalUSD"),
        ("unpriced", "unpricedRuns"),
    )

    def cells(group: Mapping[str, Any]) -> list[str]:
        return [
            f"{group[key]:.4f}" if isinstance(group[key], float) else str(group[key])
            for _, key in columns
        ]

    header = [title for title, _ in columns]
    lines = [f"Estimated SageMaker cost, {totals['from']} to {totals['to']} (UTC), in USD."]
    day_rows = [["day", *header]] + [[g["day"], *cells(g)] for g in totals["byDay"]]
    day_rows.append(["total", *cells(totals["total"])])
    lines += ["", _table(day_rows)]
    model_rows = [["model", *header]] + [[g["model"], *cells(g)] for g in totals["byModel"]]
    lines += ["", _table(model_rows)]
    lines += [
        "",
        "deploy h: endpoint instance-hours the blue/green rollouts added, or batch transform "
        "instance-hours. Training $ is billable seconds at the on-demand rate (spot savings are "
        "in the billable time). Totals leave out what could not be priced (see unpriced).",
    ]
    for source in totals["priceSources"]:
        lines.append(
            f"Prices: {source['source']} as of {source['retrievedOn']} "
            "(estimates; see layers/refit/refit/record_run/prices.json)."
        )
    for run in totals["unpriced"]:
        lines.append(f"Not fully priced: {run['runId']}: {'; '.join(run['reasons'])}")
    return "\n".join(lines)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="refit", description=__doc__.split("\n\n")[0])
    parser.add_argument("--stack", default=None, help="stack name (default: samconfig.toml)")
    commands = parser.add_subparsers(dest="command", required=True)

    start = commands.add_parser("start", help="start a run by hand")
    mode = start.add_mutually_exclusive_group()
    mode.add_argument("--full", action="store_true", help="retrain from scratch on all data")
    mode.add_argument("--incremental", action="store_true", help="continue from the champion")
    start.add_argument("--prefix", help="train on the data under this prefix of data/train/")
    start.add_argument("--mode", choices=("endpoint", "batch"), help="override deployment mode")
    forced = start.add_mutually_exclusive_group()
    forced.add_argument(
        "--force-promote",
        action="store_true",
        help="promote the challenger whatever the gate says (recorded as forced)",
    )
    forced.add_argument(
        "--force-reject",
        action="store_true",
        help="keep the champion whatever the gate says (recorded as forced)",
    )

    rollback = commands.add_parser(
        "rollback",
        help="put the previous approved model back on the endpoint (a run: canary, alarms, "
        "verification and cleanup as for a promotion)",
    )
    rollback.add_argument(
        "--to-version",
        type=_positive,
        help="the approved model package version to restore (default: the one before the live)",
    )

    runs = commands.add_parser("runs", help="list run records, newest first")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--limit", type=int, default=20)

    run = commands.add_parser("run", help="show one run record")
    run.add_argument("run_id")

    models = commands.add_parser("models", help="model lineage (Model Registry), newest first")
    models.add_argument("--json", action="store_true")
    models.add_argument("--limit", type=_positive, default=20)

    cost = commands.add_parser("cost", help="estimated cost per day and per model")
    cost.add_argument("--days", type=_positive, default=7, help="the last N days (default 7)")
    cost.add_argument("--json", action="store_true")

    predict = commands.add_parser("predict", help="send CSV rows to the endpoint")
    predict.add_argument("file", nargs="?", help="CSV without label column (default: stdin)")

    local = commands.add_parser("local", help="run the application on this machine (moto)")
    local_commands = local.add_subparsers(dest="local_command", required=True)
    up = local_commands.add_parser("up", help="start the local cloud, deploy, serve until Ctrl-C")
    up.add_argument("--port", type=int, default=4566, help="emulator port (default 4566)")
    up.add_argument("--state-dir", type=Path, help="keep logs and job files here")
    up.add_argument(
        "--spot-interruptions",
        type=int,
        default=0,
        metavar="N",
        help="interrupt the next spot training job N times",
    )
    up.add_argument(
        "--parameter",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="template parameter override (repeatable)",
    )

    args = parser.parse_args(argv)
    if args.command == "local":
        # Imported here only: the other commands need neither moto nor the local runtime.
        from local_cloud.cloud import main_local_up

        return main_local_up(args, args.stack or default_stack_name())
    import boto3  # imported late: `refit --help` stays instant

    stack = StackOutputs.load(boto3.client("cloudformation"), args.stack or default_stack_name())
    if args.command in ("start", "rollback"):
        try:
            document = (
                build_execution_input(args)
                if args.command == "start"
                else rollback_execution_input(args.to_version)
            )
        except InvalidRunInput as error:
            parser.error(str(error))
        response = boto3.client("stepfunctions").start_execution(
            stateMachineArn=stack.state_machine_arn,
            name=manual_execution_name(time.time()),
            input=json.dumps(document),
        )
        print(response["executionArn"])
    elif args.command == "cost":
        records = RunRecords(boto3.client("dynamodb"), stack.runs_table, stack.stack_name)
        # list_runs scans the whole table anyway; the date filter is cost_totals'.
        totals = cost_totals(records.list_runs(sys.maxsize), args.days, datetime.now(UTC).date())
        print(json.dumps(totals, indent=2) if args.json else format_cost(totals))
    elif args.command in ("runs", "run"):
        records = RunRecords(boto3.client("dynamodb"), stack.runs_table, stack.stack_name)
        if args.command == "runs":
            listed = records.list_runs(args.limit)
            print(json.dumps(listed, indent=2, default=str) if args.json else format_runs(listed))
        else:
            found = records.get_run(args.run_id)
            if found is None:
                print(f"no run {args.run_id}", file=sys.stderr)
                return 1
            print(json.dumps(found, indent=2, default=str))
    elif args.command == "models":
        from refit import layout  # imported late: Powertools' Logger
        from refit.registry import lineage

        records = RunRecords(boto3.client("dynamodb"), stack.runs_table, stack.stack_name)
        sagemaker = boto3.client("sagemaker")
        live = lineage.live_package_arn(sagemaker, records, stack.endpoint_name)
        group = layout.model_package_group_name(stack.stack_name)
        listing = lineage.lineage(sagemaker, records, group, args.limit, live)
        entries = [entry.to_dict() for entry in listing]
        print(json.dumps(entries, indent=2, default=str) if args.json else format_models(entries))
    elif args.command == "predict":
        body = Path(args.file).read_bytes() if args.file else sys.stdin.buffer.read()
        response = boto3.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=stack.endpoint_name, ContentType="text/csv", Accept="text/csv", Body=body
        )
        sys.stdout.write(response["Body"].read().decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
