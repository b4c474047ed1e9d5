"""Rollout, alarm rollback, `refit rollback` and retention through the whole local cloud.

One stack with a watchable canary (a quarter of the traffic for 4 s, then all of it, 2 s of
baking) and one previous model kept. In order:

1. a first run creates the endpoint (model A);
2. a forced promotion rolls model B out: invoking during the rollout sees the canary's share,
   then all traffic, on B; retention keeps A as the one previous model;
3. a forced promotion of model C, whose canary trips the stack's 5XX alarm: SageMaker's
   auto-rollback puts B back, the run is ROLLED_BACK, C's package is rejected;
4. ``refit rollback`` puts A back through the same path: RESTORED, A's predictions, B's
   package rejected, the champion pointer on A's package; retention keeps exactly what the
   registry says, and an untagged endpoint named like the stack's survives;
5. the champion lookup makes the same API calls with 5 and with 5,000 registered models.

Models differ by their training data (each run trains on everything under data/train/), so
each one answers a probe row with its own number.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from local_cloud.cloud import LocalCloud
from local_cloud.event_source import s3_event_for
from refit import layout
from refit.ledger.run_records import RunRecords
from refit.registry import lineage
from refit_cli.cli import manual_execution_name, rollback_execution_input
from tests.integration.cloud_harness import (
    TEST_KEY,
    CloudRuns,
    Notifications,
    csv,
    fast_cloud,
    rows,
    wait_for,
)
from tests.model_registry import insert_model_packages

pytestmark = pytest.mark.slow

CANARY_PERCENT = 25
CANARY_SECONDS = 4


@pytest.fixture(scope="module")
def cloud(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCloud]:
    with fast_cloud(
        tmp_path_factory,
        "rollout",
        RolloutMode="Canary",
        RolloutStepPercent=str(CANARY_PERCENT),
        RolloutWaitSeconds=str(CANARY_SECONDS),
        RolloutBakeSeconds="2",
        PreviousModelsToKeep="1",
    ) as started:
        yield started


def start(runs: CloudRuns, document: dict[str, Any]) -> str:
    response = runs.sfn.start_execution(
        stateMachineArn=runs.info.state_machine_arn,
        name=manual_execution_name(time.time()),
        input=json.dumps(document),
    )
    return str(response["executionArn"])


def put_untriggered(cloud: LocalCloud, runs: CloudRuns, key: str, body: bytes) -> None:
    """Upload ``key`` with its S3 event held back: the forced run started next is the only one.
    (Its trigger run would race the manual start for the run lock.)"""
    cloud.event_sources.delayed.arm(s3_event_for(key))
    runs.put(key, body)


def running(runs: CloudRuns, arn: str) -> bool:
    return bool(runs.sfn.describe_execution(executionArn=arn)["status"] == "RUNNING")


def sample_while_running(
    runs: CloudRuns, arn: str, probe: np.ndarray[Any, Any]
) -> list[tuple[float, str]]:
    """Invoke the endpoint with the probe row until the run ends: (time, answer) pairs."""
    answers = []
    while running(runs, arn):
        answers.append((time.monotonic(), f"{runs.predict(probe)[0]:.6g}"))
        time.sleep(0.02)
    return answers


def package_status(runs: CloudRuns, arn: str) -> str:
    described = runs.sagemaker.describe_model_package(ModelPackageName=arn)
    return str(described["ModelApprovalStatus"])


def owned_models(runs: CloudRuns) -> set[str]:
    return {m for m in runs.model_names() if m.startswith(("s3-", "manual-"))}


def package_count(runs: CloudRuns, group: str) -> int:
    pages = runs.sagemaker.get_paginator("list_model_packages").paginate(
        ModelPackageGroupName=group, PaginationConfig={"PageSize": 100}
    )
    return sum(len(page["ModelPackageSummaryList"]) for page in pages)


def register_packages(cloud: LocalCloud, group: str, count: int) -> None:
    """Past rejected models, straight into the emulator's registry (tests/model_registry.py)."""
    requests = (
        {
            "ModelPackageGroupName": group,
            "InferenceSpecification": {
                "Containers": [{"Image": "image", "ModelDataUrl": f"s3://b/past/{n}.tar.gz"}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            "CustomerMetadataProperties": {"runId": f"past-{n}"},
        }
        for n in range(count)
    )
    insert_model_packages(cloud.stack.account_id, cloud.region, requests, lineage.REJECTED)


def lookup_calls(cloud: LocalCloud, runs: CloudRuns) -> tuple[list[str], str | None]:
    """The API calls `refit models` and PrepareRun make to find the live model's package."""
    calls: list[str] = []
    sagemaker, dynamodb = cloud.client("sagemaker"), cloud.client("dynamodb")
    for client in (sagemaker, dynamodb):
        client.meta.events.register(
            "before-call.*.*",
            lambda model, **_: calls.append(f"{model.service_model.service_name}:{model.name}"),
        )
    records = RunRecords(dynamodb, runs.info.runs_table, runs.info.stack_name)
    live = lineage.live_package_arn(sagemaker, records, runs.info.endpoint_name)
    return calls, live


def serve_untagged(runs: CloudRuns, name: str, model_data_url: str) -> None:
    """A model, config and endpoint named ``name``, made by hand: no refit:stack tag."""
    container = runs.sagemaker.describe_model(ModelName=owned_models(runs).pop())[
        "PrimaryContainer"
    ]
    runs.sagemaker.create_model(
        ModelName=name,
        PrimaryContainer={**container, "ModelDataUrl": model_data_url},
        ExecutionRoleArn="arn:aws:iam::123456789012:role/someone-else",
    )
    runs.sagemaker.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
    )
    runs.sagemaker.create_endpoint(EndpointName=name, EndpointConfigName=name)
    wait_for(
        lambda: (
            runs.sagemaker.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
        ),
        30,
        f"endpoint {name} in service",
    )


def test_canary_alarm_rollback_and_refit_rollback(cloud: LocalCloud) -> None:
    runs = CloudRuns(cloud)
    notifications = Notifications(cloud)
    cloudwatch = cloud.client("cloudwatch")
    probe = rows(1, seed=99)
    runs.put(TEST_KEY, csv(rows(150, seed=1)))

    # 1. Model A creates the endpoint (CreateEndpoint: no traffic to shift)
    first = runs.upload_run({"data/train/a.csv": csv(rows(200, seed=2))})
    assert first.status == "PROMOTED", first.record
    answer_a = f"{runs.predict(probe)[0]:.6g}"

    # 2. Model B rolls out as a canary: a quarter of the answers are B's, then all of them
    put_untriggered(cloud, runs, "data/train/b.csv", csv(rows(200, seed=3)))
    second_arn = start(runs, {"forceDecision": "promote"})
    answers = sample_while_running(runs, second_arn, probe)
    second = runs.finished(second_arn)
    assert second.status == "PROMOTED", second.record
    answer_b = f"{runs.predict(probe)[0]:.6g}"
    assert answer_b != answer_a
    assert {a for _, a in answers} == {answer_a, answer_b}
    first_b = next(i for i, (_, a) in enumerate(answers) if a == answer_b)
    started_at = answers[first_b][0]
    canary = [a for t, a in answers[first_b:] if t < started_at + CANARY_SECONDS - 0.5]
    share = canary.count(answer_b) / len(canary)
    assert 0.15 <= share <= 0.35, (share, len(canary))
    last_second = [a for t, a in answers if t > answers[-1][0] - 1.0]
    assert set(last_second) == {answer_b}
    # The run slept through the canary and the bake in one state, then polled a few times
    states = runs.states_entered(second_arn)
    assert states.count("WaitForRollout") == 1
    # (polling through the canary and the bake would take at least 6 polls)
    assert 1 <= states.count("DescribeEndpoint") < CANARY_SECONDS + 2, states
    # Retention: the live model (B) and one previous approved model (A) remain
    assert owned_models(runs) == {first.name, second.name}

    # 3. Model C's canary trips the 5XX alarm: SageMaker rolls back to B by itself
    put_untriggered(cloud, runs, "data/train/c.csv", csv(rows(200, seed=4)))
    third_arn = start(runs, {"forceDecision": "promote"})

    def canary_serving() -> bool:
        described = runs.sagemaker.describe_endpoint(EndpointName=runs.info.endpoint_name)
        pending = described.get("PendingDeploymentSummary") or {}
        return (
            described["EndpointStatus"] == "Updating"
            and bool(pending)
            and any(f"{runs.predict(probe)[0]:.6g}" != answer_b for _ in range(8))
        )

    wait_for(canary_serving, 60, "model C's canary serving")
    alarm = f"{runs.info.stack_name}-endpoint-5xx"
    cloudwatch.set_alarm_state(
        AlarmName=alarm, StateValue="ALARM", StateReason="5XX errors on the new fleet"
    )
    try:
        third = runs.finished(third_arn)
    finally:
        cloudwatch.set_alarm_state(AlarmName=alarm, StateValue="OK", StateReason="recovered")
    record = third.record
    assert third.status == "ROLLED_BACK", record
    assert third.execution_status == "FAILED"
    assert record["error"]["Error"] == "Refit.EndpointRolledBack"
    assert alarm in record["rollbackReason"]
    assert record["modelPackageStatus"] == "Rejected"
    assert package_status(runs, record["modelPackageArn"]) == "Rejected"
    assert runs.endpoint_config_name() == second.name
    assert f"{runs.predict(probe)[0]:.6g}" == answer_b
    message = notifications.for_run(third.name)["message"]
    assert "rolled back" in message and alarm in message
    pointer = runs.records.get_champion()
    assert pointer is not None and pointer.model_name == second.name

    # Meanwhile someone made an endpoint whose name shares the stack's prefix, untagged
    lookalike = f"{runs.info.endpoint_name}-lookalike"
    serve_untagged(runs, lookalike, first.record["modelDataUrl"])

    # 4. `refit rollback`: the approved model before B (A) comes back through the same path
    fourth = runs.finished(start(runs, rollback_execution_input(None)))
    record = fourth.record
    assert fourth.status == "RESTORED", record
    entered = runs.states_entered(fourth.arn)
    assert "Train" not in entered and "EvaluateModels" not in entered
    assert {"StartRollback", "CreateModel", "UpdateEndpoint", "CleanupResources"} <= set(entered)
    assert runs.endpoint_config_name() == fourth.name
    assert f"{runs.predict(probe)[0]:.6g}" == answer_a
    assert record["modelPackageArn"] == first.record["modelPackageArn"]
    assert record["replacedModelPackageArn"] == second.record["modelPackageArn"]
    assert package_status(runs, first.record["modelPackageArn"]) == "Approved"
    assert package_status(runs, second.record["modelPackageArn"]) == "Rejected"
    pointer = runs.records.get_champion()
    assert pointer is not None
    assert (pointer.model_name, pointer.model_package_arn, pointer.run_id) == (
        fourth.name,
        first.record["modelPackageArn"],
        first.name,
    )
    assert pointer.model_data_url == first.record["modelDataUrl"]
    # Retention against the registry: A's package is live again (as the rollback's model), B
    # and C are rejected, so nothing older is a rollback target: only the live model remains
    assert owned_models(runs) == {fourth.name}, record["cleanup"]
    assert record["cleanup"]["kept"]["rollbackPackages"] == []
    # And cleanup left the untagged lookalike alone: it still serves, its model and config exist
    described = runs.sagemaker.describe_endpoint(EndpointName=lookalike)
    assert described["EndpointStatus"] == "InService"
    assert lookalike not in record["cleanup"]["deleted"]["endpoints"]
    assert lookalike in runs.model_names() and lookalike in runs.endpoint_config_names()

    # And with nothing approved before A, another rollback is refused with the reason
    refused = runs.finished(start(runs, rollback_execution_input(None)))
    assert refused.status == "FAILED"
    assert refused.error["Error"] == "NoRollbackTarget"
    assert "no approved model older than version" in refused.error["Cause"]
    assert runs.endpoint_config_name() == fourth.name

    # 5. The champion lookup makes the same calls with 5 and with 5,000 registered models
    group = layout.model_package_group_name(runs.info.stack_name)
    register_packages(cloud, group, 5 - package_count(runs, group))
    few = lookup_calls(cloud, runs)
    register_packages(cloud, group, 5000 - package_count(runs, group))
    many = lookup_calls(cloud, runs)
    assert package_count(runs, group) == 5000
    assert few == many
    calls, live = many
    assert live == first.record["modelPackageArn"]
    assert not [c for c in calls if ":List" in c], calls
