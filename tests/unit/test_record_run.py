from __future__ import annotations

import pytest

from refit.config import ConfigError
from refit.ledger.run_records import ChampionPointer, RunRecords
from refit.record_run.outcome import ROLLED_BACK, ROLLED_BACK_ERROR
from refit.record_run.run_report import record_run
from refit.registry import lineage
from tests.lambda_handlers import load_handler
from tests.unit.builders import deploy_endpoint, set_endpoint_status
from tests.unit.moto_stack import GROUP, STACK, TABLE, Aws
from tests.unit.state_builders import (
    ENDPOINT,
    IMAGE,
    FakeLambdaContext,
    model_data_url,
    promoted_state,
    received_notifications,
    subscribe_queue,
)


def test_handler_records_notifies_and_answers(aws: Aws) -> None:
    # Given a listener on the topic and a promoted run's state
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    app = load_handler("record_run")
    event = {"outcome": "promoted", "executionName": "run-2", "state": promoted_state("run-2")}
    # When RecordRun runs
    result = app.lambda_handler(event, FakeLambdaContext())
    # Then it answers with the run id and status, the record exists and a message went out
    assert result == {"runId": "run-2", "status": "PROMOTED"}
    run = RunRecords(aws.dynamodb, TABLE, STACK).get_run("run-2")
    assert run is not None and run["status"] == "PROMOTED"
    assert len(received_notifications(aws.sqs, inbox)) == 1


def test_handler_records_an_early_failure(aws: Aws) -> None:
    app = load_handler("record_run")
    event = {
        "outcome": "failed",
        "executionName": "exec-9",
        "state": {"error": {"Error": "States.Runtime", "Cause": "boom"}},
    }
    assert app.lambda_handler(event, FakeLambdaContext()) == {"runId": "exec-9", "status": "FAILED"}


def test_handler_without_a_topic_fails_at_cold_start(
    settings_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # Given the function's environment lacks NOTIFICATION_TOPIC_ARN
    monkeypatch.delenv("NOTIFICATION_TOPIC_ARN")
    # When / Then importing the handler fails naming the variable
    with pytest.raises(ConfigError, match="NOTIFICATION_TOPIC_ARN"):
        load_handler("record_run")


def test_an_update_the_endpoint_rolled_back_is_recorded_with_why_and_who_keeps_serving(
    aws: Aws,
) -> None:
    # Given job-run-1 the champion, and run-2's update rolled back by SageMaker (an alarm)
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    records = RunRecords(aws.dynamodb, TABLE, STACK)
    url = model_data_url("job-run-1")
    config = deploy_endpoint(aws.sagemaker, ENDPOINT, "job-run-1", url)
    reason = "CloudWatch alarm refit-test-endpoint-5xx went into ALARM during the canary"
    set_endpoint_status(ENDPOINT, "InService", failure_reason=reason)
    champion = ChampionPointer("job-run-1", url, config, "run-1")
    records.set_champion(champion, promoted_at="2026-11-20T00:00:00Z")
    package = aws.sagemaker.create_model_package(
        ModelPackageGroupName=GROUP,
        InferenceSpecification={
            "Containers": [{"Image": IMAGE, "ModelDataUrl": model_data_url("job-run-2")}],
            "SupportedContentTypes": ["text/csv"],
            "SupportedResponseMIMETypes": ["text/csv"],
        },
        ModelApprovalStatus=lineage.PENDING,
    )["ModelPackageArn"]
    state = promoted_state("run-2")
    state["evaluation"]["modelPackageArn"] = package
    state["error"] = {"Error": ROLLED_BACK_ERROR, "Cause": "endpoint InService on job-run-1"}
    del state["endpoint"], state["cleanup"]
    # When RecordRun records the failure
    report = record_run(
        {"outcome": "failed", "executionName": "run-2", "state": state},
        records,
        aws.sns,
        aws.settings.notification_topic_arn,
        aws.settings,
        sagemaker=aws.sagemaker,
    )
    # Then the run is ROLLED_BACK with the endpoint's reason, and counted as such
    assert report.status == ROLLED_BACK
    stored = records.get_run("run-2")
    assert stored is not None
    assert (stored["status"], stored["rollbackReason"]) == (ROLLED_BACK, reason)
    assert "RunsRolledBack" in {m.name for m in report.metrics}
    # And its package is rejected for it
    described = aws.sagemaker.describe_model_package(ModelPackageName=package)
    assert described["ModelApprovalStatus"] == lineage.REJECTED
    assert reason in described["ApprovalDescription"]
    # And the notification says so and who keeps serving
    (message,) = received_notifications(aws.sqs, inbox)
    assert message["MessageAttributes"]["status"]["Value"] == ROLLED_BACK
    assert (
        f"The endpoint update was rolled back ({reason}): job-run-1 keeps serving."
        in message["Message"]
    )
    # And the champion pointer is unchanged
    assert records.get_champion() == champion
