"""`refit`: the operator CLI. Works against AWS or any emulator named by AWS_ENDPOINT_URL.

    refit start [--full | --incremental] [--prefix data/train/x/] [--mode endpoint|batch]
    refit runs [--json] [--limit N]
    refit run RUN_ID
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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from refit.run_input import InvalidRunInput, parse_run_input
from refit.run_records import RunRecords

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
    # Refuse bad input here, before an execution is started only to fail in PrepareRun.
    parse_run_input(document)
    return document


def manual_execution_name(now: float) -> str:
    return (
        time.strftime("manual-%Y%m%dT%H%M%S", time.gmtime(now)) + f"-{int(now * 1000) % 1000:03d}"
    )


def _metric(run: dict[str, Any], side: str) -> str:
    value = (run.get("metrics") or {}).get(side)  # RecordRun stores both scores here
    return "-" if value is None else f"{value:.4g}"


def format_runs(runs: Sequence[dict[str, Any]]) -> str:
    header = ("run", "status", "mode", "rows", "challenger", "champion", "train s", "billable s")
    rows = [header]
    for run in runs:
        data = run.get("data") or {}
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
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows)


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

    runs = commands.add_parser("runs", help="list run records, newest first")
    runs.add_argument("--json", action="store_true")
    runs.add_argument("--limit", type=int, default=20)

    run = commands.add_parser("run", help="show one run record")
    run.add_argument("run_id")

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
        # Imported here only: the Lambda layer ships this module but never local_cloud.
        from local_cloud.cloud import main_local_up

        return main_local_up(args, args.stack or default_stack_name())
    import boto3  # imported late: `refit --help` stays instant

    stack = StackOutputs.load(boto3.client("cloudformation"), args.stack or default_stack_name())
    if args.command == "start":
        try:
            document = build_execution_input(args)
        except InvalidRunInput as error:
            parser.error(str(error))
        response = boto3.client("stepfunctions").start_execution(
            stateMachineArn=stack.state_machine_arn,
            name=manual_execution_name(time.time()),
            input=json.dumps(document),
        )
        print(response["executionArn"])
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
    elif args.command == "predict":
        body = Path(args.file).read_bytes() if args.file else sys.stdin.buffer.read()
        response = boto3.client("sagemaker-runtime").invoke_endpoint(
            EndpointName=stack.endpoint_name, ContentType="text/csv", Accept="text/csv", Body=body
        )
        sys.stdout.write(response["Body"].read().decode())
    return 0


if __name__ == "__main__":
    sys.exit(main())
