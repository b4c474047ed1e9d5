"""Figure 5: API calls to find the champion and to plan cleanup, with 10 vs 10,000 past models.

moto in-process; the domain functions get injected clients, as the handlers give them. Every
call is counted with botocore's ``before-call`` event on the SageMaker and DynamoDB clients.

Each account holds the stack's runs table (template.yaml's ``RunsTable``), the history of
``past`` runs (run records), ``past`` models and ``past`` endpoint configs that are not this
stack's live resources (a shared account's other models, or refit's own long-deleted ones
that a listing-based cleanup would still page through), ``past`` packages in the stack's Model
Registry group (approved long ago), and the live set: the endpoint on the current run's config,
``PreviousModelsToKeep`` rollback pairs and ``stale`` older owned pairs that cleanup has to
delete. Every owned pair is registered as an approved package, as RecordRun leaves a promotion.

- champion: ``refit.registry.champion.resolve_champion`` (endpoint mode) — target: the same number
  of calls at 10 and 10,000;
- cleanup: ``refit.cleanup_resources.cleanup.clean_up`` after a promotion — target: the same at 10
  and 10,000 (history does not count), and each stale pair adds the same number of calls
  (proportional to what is live, checked with 3 and 6 stale pairs).
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from bench.report import Row, reproduce
from bench.template import template, template_defaults

STACK = "refit-bench"
TABLE = "refit-bench-runs"
ENDPOINT = "refit-bench-endpoint"
REGION = "us-east-1"
ROLE = "arn:aws:iam::123456789012:role/refit-bench-sagemaker"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:3.0-5"
GROUP = f"{STACK}-models"  # refit.layout.model_package_group_name
SIZES = {False: (10, 10_000), True: (10, 1_000)}
STALE = (3, 6)


@dataclass
class Calls:
    by_operation: Counter[str]

    @property
    def total(self) -> int:
        return sum(self.by_operation.values())

    def text(self) -> str:
        return ", ".join(f"{name} {count}" for name, count in sorted(self.by_operation.items()))


class Account:
    """One moto account with the stack's table and a history of ``past`` runs."""

    def __init__(self, past: int) -> None:
        import boto3

        from refit.config import Settings
        from refit.ledger.run_records import RunRecords

        session = boto3.Session(region_name=REGION)
        self.sagemaker: Any = session.client("sagemaker")
        self.dynamodb: Any = session.client("dynamodb")
        properties = template()["Resources"]["RunsTable"]["Properties"]
        self.dynamodb.create_table(
            TableName=TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=properties["AttributeDefinitions"],
            KeySchema=properties["KeySchema"],
            GlobalSecondaryIndexes=properties["GlobalSecondaryIndexes"],
        )
        self.records = RunRecords(self.dynamodb, TABLE, STACK)
        self.sagemaker.create_model_package_group(
            ModelPackageGroupName=GROUP, Tags=[{"Key": "refit:stack", "Value": STACK}]
        )
        defaults = template_defaults()
        self.settings = Settings.from_env(
            {
                "STACK_NAME": STACK,
                "DATA_BUCKET": "refit-bench-data",
                "RUNS_TABLE": TABLE,
                "SAGEMAKER_ROLE_ARN": ROLE,
                "TRAINING_IMAGE_URI": IMAGE,
                "ENDPOINT_NAME": ENDPOINT,
                "PREVIOUS_MODELS_TO_KEEP": str(defaults["PreviousModelsToKeep"]),
            }
        )
        self.day = 0
        self.packages: dict[str, str] = {}  # model name -> its package
        self._history(past)

    def _history(self, past: int) -> None:
        items = [
            {
                "PutRequest": {
                    "Item": {
                        "pk": {"S": f"RUN#past-{n:05d}"},
                        "sk": {"S": "RUN"},
                        "runId": {"S": f"past-{n:05d}"},
                        "status": {"S": "PROMOTED"},
                    }
                }
            }
            for n in range(past)
        ]
        for start in range(0, len(items), 25):
            self.dynamodb.batch_write_item(RequestItems={TABLE: items[start : start + 25]})
        other = [{"Key": "refit:stack", "Value": "another-team"}]
        for n in range(past):
            name = f"past-{n:05d}"
            self.approved_package(f"s3://refit-bench-data/{name}.tar.gz")
            self.sagemaker.create_model(
                ModelName=name,
                ExecutionRoleArn=ROLE,
                PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://other/{name}.tar.gz"},
                Tags=other,
            )
            self.sagemaker.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[self._variant(name)],
                Tags=other,
            )

    @staticmethod
    def _variant(model: str) -> dict[str, Any]:
        return {
            "VariantName": "AllTraffic",
            "ModelName": model,
            "InstanceType": "ml.m5.large",
            "InitialInstanceCount": 1,
        }

    def approved_package(self, model_data_url: str) -> str:
        """A package in the stack's group, approved (as RecordRun leaves a promoted run's)."""
        return str(
            self.sagemaker.create_model_package(
                ModelPackageGroupName=GROUP,
                InferenceSpecification={
                    "Containers": [{"Image": IMAGE, "ModelDataUrl": model_data_url}],
                    "SupportedContentTypes": ["text/csv"],
                    "SupportedResponseMIMETypes": ["text/csv"],
                },
                ModelApprovalStatus="Approved",
            )["ModelPackageArn"]
        )

    def owned_pair(self, run_id: str, *, register: bool = True) -> str:
        """A run's model and config, tagged with this stack and (optionally) indexed."""
        from refit import layout

        self.day += 1
        name = f"job-{run_id}"
        tags = [{"Key": layout.TAG_STACK, "Value": STACK}, {"Key": layout.TAG_RUN, "Value": run_id}]
        self.sagemaker.create_model(
            ModelName=name,
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://refit-bench-data/{name}"},
            Tags=tags,
        )
        self.sagemaker.create_endpoint_config(
            EndpointConfigName=name, ProductionVariants=[self._variant(name)], Tags=tags
        )
        package = self.approved_package(f"s3://refit-bench-data/{name}")
        if register:
            self.records.register_resources(
                run_id,
                name,
                name,
                created_at=f"2026-{1 + self.day // 28:02d}-{1 + self.day % 28:02d}T00:00:00.000Z",
                promoted=True,
                model_package_arn=package,
            )
        self.packages[name] = package
        return name

    @contextmanager
    def counting(self) -> Iterator[Calls]:
        calls = Calls(Counter())

        def count(model: Any, **_: Any) -> None:
            calls.by_operation[f"{model.service_model.service_name}:{model.name}"] += 1

        clients = (self.sagemaker, self.dynamodb)
        for client in clients:
            client.meta.events.register("before-call.*.*", count, unique_id="bench-count")
        try:
            yield calls
        finally:
            for client in clients:
                client.meta.events.unregister("before-call.*.*", unique_id="bench-count")


def promoted_state(run_id: str, model: str, package: str) -> dict[str, Any]:
    """What CleanupResources reads of the state after a promotion (docs/architecture.md)."""
    return {
        "evaluation": {"decision": "promote", "modelPackageArn": package},
        "run": {
            "runId": run_id,
            "deploymentMode": "endpoint",
            "deploy": {
                "modelName": model,
                "endpointConfigName": model,
                "endpointName": ENDPOINT,
                "endpointExists": True,
            },
        },
        "endpoint": {"status": "InService", "configName": model},
    }


@dataclass
class Measured:
    past: int
    champion: Calls
    cleanup: dict[int, Calls]  # stale pairs -> calls
    deleted: dict[int, int]


def measure_account(past: int, stale_counts: tuple[int, ...]) -> Measured:
    from moto import mock_aws

    from refit.cleanup_resources.cleanup import clean_up
    from refit.ledger.run_records import ChampionPointer
    from refit.registry.champion import resolve_champion

    with mock_aws():
        account = Account(past)
        keep = account.settings.previous_models_to_keep
        for n in range(keep):  # the rollback pairs of earlier promotions
            account.owned_pair(f"rollback-{n}")
        cleanup: dict[int, Calls] = {}
        deleted: dict[int, int] = {}
        champion_calls: Calls | None = None
        for round_number, stale in enumerate(stale_counts):
            for n in range(stale):
                account.owned_pair(f"stale-{round_number}-{n}")
            # A new run promoted: its pair is live; RecordRun indexes it after cleanup.
            current_run = f"current-{round_number}"
            current = account.owned_pair(current_run, register=False)
            if round_number > 0:  # moto has no UpdateEndpoint: the same name on the new config
                account.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
            account.sagemaker.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=current)
            account.records.set_champion(
                ChampionPointer(current, f"s3://refit-bench-data/{current}", current, current, 10),
                "2026-11-28T00:00:00Z",
            )
            if champion_calls is None:
                with account.counting() as champion_calls:
                    found = resolve_champion(
                        account.sagemaker, account.records, ENDPOINT, "endpoint"
                    )
                assert found.champion is not None and found.champion.model_name == current
            with account.counting() as calls:
                report = clean_up(
                    account.sagemaker,
                    account.records,
                    account.settings,
                    promoted_state(current_run, current, account.packages[current]),
                )
            cleanup[stale] = calls
            deleted[stale] = report.deleted_count
            # RecordRun registers the promoted run's pair once cleanup is done.
            account.records.register_resources(
                current_run,
                current,
                current,
                created_at="2027-01-01T00:00:00.000Z",
                promoted=True,
                model_package_arn=account.packages[current],
            )
        assert champion_calls is not None
        return Measured(past, champion_calls, cleanup, deleted)


def measure(quick: bool = False, progress: Any = print) -> list[Row]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_LOG_LEVEL": "WARNING",
    }.items():
        os.environ.setdefault(name, value)
    os.environ.pop("AWS_ENDPOINT_URL", None)
    small, large = SIZES[quick]
    results = {}
    for past, stale_counts in ((small, STALE[:1]), (large, STALE)):
        results[past] = measure_account(past, stale_counts)
        m = results[past]
        progress(
            f"  {past} past: champion {m.champion.total} calls; cleanup "
            + ", ".join(f"{s} stale → {c.total} calls" for s, c in m.cleanup.items())
        )
    a, b = results[small], results[large]
    champion_same = a.champion.total == b.champion.total
    low, high = STALE
    history_free = a.cleanup[low].total == b.cleanup[low].total
    # Pairs deleted, from cleanup's own report: the second round also retires the first
    # round's rollback target (the newer promotion replaced it).
    pairs_low, pairs_high = b.deleted[low] / 2, b.deleted[high] / 2
    per_pair_low = b.cleanup[low].total / max(1.0, pairs_low)
    step = (b.cleanup[high].total - b.cleanup[low].total) / (pairs_high - pairs_low)
    base = b.cleanup[low].total - step * pairs_low
    proportional = step > 0 and base >= 0 and abs(step - round(step)) < 1e-9
    details = {
        str(m.past): {
            "champion": dict(m.champion.by_operation),
            "cleanup": {str(s): dict(c.by_operation) for s, c in m.cleanup.items()},
            "deleted": {str(s): d for s, d in m.deleted.items()},
        }
        for m in (a, b)
    }
    return [
        Row(
            5,
            f"champion lookup calls, {small:,} vs {large:,} past models/configs",
            f"{a.champion.total} vs {b.champion.total} ({b.champion.text()})",
            "constant",
            champion_same,
            reproduce(5, quick),
            "" if champion_same else "the lookup grows with history: it lists or scans",
            details,
        ),
        Row(
            5,
            f"cleanup calls, {small:,} vs {large:,} past; {low} vs {high} stale live pairs",
            f"{a.cleanup[low].total} vs {b.cleanup[low].total}; {b.cleanup[low].total} vs "
            f"{b.cleanup[high].total} (= {base:.0f} + {step:.0f} per deleted pair; "
            f"{pairs_low:.0f} vs {pairs_high:.0f} deleted)",
            "independent of history; proportional to live resources",
            history_free and proportional,
            reproduce(5, quick),
            ""
            if history_free and proportional
            else f"history changes the count ({a.cleanup[low].text()} vs "
            f"{b.cleanup[low].text()}); {per_pair_low:.1f} calls per stale pair",
        ),
    ]


if __name__ == "__main__":
    import sys

    for row in measure("--quick" in sys.argv):
        print(row.figure, row.name, row.measured, row.verdict, row.note)
