"""Runs that ended without recording themselves: the final record and one notification."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from refit import layout
from refit.ledger.run_records import RunRecords
from refit.registry import lineage
from refit.run_state import RunState
from refit.start_retrain.run_ended import ExecutionEnded, record_ended_run
from tests.unit.builders import deploy_endpoint, execution_arn, execution_status_change
from tests.unit.moto_stack import GROUP, STACK, TABLE, Aws
from tests.unit.state_builders import (
    evaluation_result,
    received_notifications,
    run_plan,
    subscribe_queue,
    training_result,
)

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:refit-test-retrain"


def ended(name: str, status: str, **fields: Any) -> ExecutionEnded:
    event = execution_status_change(execution_arn(MACHINE, name), status, **fields)
    return ExecutionEnded.from_detail(event["detail"])


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def record_ended(aws: Aws, run: ExecutionEnded, sagemaker: Any = None) -> bool:
    return record_ended_run(
        run,
        records(aws),
        aws.sns,
        aws.settings.notification_topic_arn,
        STACK,
        sagemaker=sagemaker or aws.sagemaker,
        endpoint_name=aws.settings.endpoint_name,
    )


def registered(aws: Aws, run_id: str) -> str:
    """A RUNNING run whose challenger EvaluateModels registered (PendingManualApproval)."""
    records(aws).put_started(run_id, {"startedAt": "2026-11-28T09:00:00Z"})
    event = RunState.parse({"run": run_plan(run_id), "training": training_result(run_id)})
    result = lineage.register(
        aws.sagemaker, records(aws), GROUP, event, evaluation_result("promote")
    )
    return str(result["modelPackageArn"])


def sagemaker_calls(client: Any) -> list[str]:
    calls: list[str] = []

    def record(model: Any, **_: Any) -> None:
        calls.append(model.name)

    client.meta.events.register("before-call.sagemaker.*", record)
    return calls


# --- the event ---------------------------------------------------------------------------------


def test_the_event_detail_is_read_as_eventbridge_sends_it() -> None:
    # Given the detail of an execution that timed out, with epoch-millisecond dates
    run = ended("s3-abc", "TIMED_OUT", error="States.Timeout", cause="too slow")
    # Then the names, the stop time (ISO, UTC) and the reason are kept
    assert run.name == "s3-abc"
    assert run.execution_arn == execution_arn(MACHINE, "s3-abc")
    assert run.state_machine_arn == MACHINE
    assert run.stopped_at == "2026-11-18T11:06:40Z"
    assert (run.error, run.cause) == ("States.Timeout", "too slow")
    assert run.ended


@pytest.mark.parametrize(
    ("status", "has_ended"),
    [
        ("SUCCEEDED", True),
        ("FAILED", True),
        ("ABORTED", True),
        ("TIMED_OUT", True),
        ("RUNNING", False),
        ("PENDING_REDRIVE", False),
    ],
)
def test_only_terminal_statuses_have_ended(status: str, has_ended: bool) -> None:
    assert ended("run-1", status).ended is has_ended


def test_empty_error_and_missing_stop_date_are_none() -> None:
    run = ended("run-1", "ABORTED", error="", cause=None, stop_date=None)
    assert (run.error, run.cause, run.stopped_at) == (None, None, None)


@pytest.mark.parametrize("missing", ["name", "executionArn", "stateMachineArn", "status"])
def test_a_detail_without_a_required_field_is_refused(missing: str) -> None:
    detail = execution_status_change(execution_arn(MACHINE, "run-1"), "ABORTED")["detail"]
    del detail[missing]
    with pytest.raises(ValueError, match=missing):
        ExecutionEnded.from_detail(detail)


# --- the record and the notification --------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "default_error"),
    [("ABORTED", "States.Aborted"), ("TIMED_OUT", "States.Timeout"), ("FAILED", "States.Failed")],
)
def test_a_running_record_is_finished_and_notified_once(
    aws: Aws, status: str, default_error: str
) -> None:
    # Given a run PrepareRun recorded as RUNNING, and someone reading the topic
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    records(aws).put_started("s3-abc", {"startedAt": "2026-11-28T09:00:00Z", "jobName": "job-1"})
    # When its execution ends without recording itself, and the event comes twice
    first = record_ended(aws, ended("s3-abc", status))
    again = record_ended(aws, ended("s3-abc", status))
    # Then the record is finished with the reason and the stop time, keeping what it had
    assert (first, again) == (True, False)
    run = records(aws).get_run("s3-abc")
    assert run is not None
    assert run["status"] == status
    assert run["finishedAt"] == "2026-11-18T11:06:40Z"
    assert run["error"]["Error"] == default_error
    assert run["error"]["Cause"]
    assert run["executionArn"] == execution_arn(MACHINE, "s3-abc")
    assert run["recordedBy"] == "run-ended"
    assert (run["startedAt"], run["jobName"]) == ("2026-11-28T09:00:00Z", "job-1")
    # And exactly one notification says so
    [note] = received_notifications(aws.sqs, inbox)
    assert note["Subject"] == f"refit {STACK}: run s3-abc {status}"
    assert f"Run s3-abc ended {status}" in note["Message"]
    assert note["MessageAttributes"]["status"]["Value"] == status
    assert note["MessageAttributes"]["stack"]["Value"] == STACK


def test_the_error_of_the_event_is_kept(aws: Aws) -> None:
    records(aws).put_started("s3-abc", {})
    record_ended(aws, ended("s3-abc", "FAILED", error="Lambda.Unknown", cause="RecordRun died"))
    run = records(aws).get_run("s3-abc")
    assert run is not None
    assert run["error"] == {"Error": "Lambda.Unknown", "Cause": "RecordRun died"}


@pytest.mark.parametrize("recorded", ["PROMOTED", "REJECTED", "FAILED"])
def test_a_run_that_recorded_itself_is_left_alone(aws: Aws, recorded: str) -> None:
    # Given a run RecordRun (or RecordFailure) finished
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    records(aws).put_started("s3-abc", {"startedAt": "2026-11-28T09:00:00Z"})
    records(aws).finish("s3-abc", {"status": recorded, "finishedAt": "2026-11-28T09:30:00Z"})
    before = records(aws).get_run("s3-abc")
    # When its execution's end arrives, even as FAILED
    wrote = record_ended(aws, ended("s3-abc", "FAILED"))
    # Then the record is untouched and nobody is notified again
    assert wrote is False
    assert records(aws).get_run("s3-abc") == before
    assert received_notifications(aws.sqs, inbox) == []


def test_a_succeeded_execution_writes_nothing(aws: Aws) -> None:
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    records(aws).put_started("s3-abc", {})
    assert record_ended(aws, ended("s3-abc", "SUCCEEDED")) is False
    run = records(aws).get_run("s3-abc")
    assert run is not None and run["status"] == "RUNNING"
    assert received_notifications(aws.sqs, inbox) == []


def test_a_run_stopped_before_prepare_run_gets_a_record(aws: Aws) -> None:
    # Given an execution stopped before PrepareRun wrote anything
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    # When its end is recorded, without a stop date in the event
    wrote = record_ended(aws, ended("s3-early", "ABORTED", stop_date=None))
    # Then the run has a record saying how it ended, and one notification went out
    assert wrote is True
    run = records(aws).get_run("s3-early")
    assert run is not None
    assert run["status"] == "ABORTED"
    assert run["error"]["Error"] == "States.Aborted"
    assert run["finishedAt"].endswith("Z")
    assert len(received_notifications(aws.sqs, inbox)) == 1


class FailingOnceSNS:
    """SNS refusing the first publish (throttling, an outage), then working."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.failures = 1

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def publish(self, **kwargs: Any) -> Any:
        if self.failures:
            self.failures -= 1
            raise ClientError(
                {"Error": {"Code": "Throttling", "Message": "Rate exceeded"}}, "Publish"
            )
        return self._client.publish(**kwargs)


def test_a_notification_that_failed_is_sent_when_the_event_comes_back(aws: Aws) -> None:
    # Given a RUNNING run and SNS failing once
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    records(aws).put_started("s3-abc", {})
    sns: Any = FailingOnceSNS(aws.sns)
    topic = aws.settings.notification_topic_arn
    # When its end is recorded, fails to notify (the trigger returns the message), and the
    # redelivered event is handled
    with pytest.raises(ClientError):
        record_ended_run(ended("s3-abc", "ABORTED"), records(aws), sns, topic, STACK)
    record_ended_run(
        ended("s3-abc", "ABORTED"), records(aws), sns, topic, STACK, sagemaker=aws.sagemaker
    )
    # Then the notification went out once
    assert len(received_notifications(aws.sqs, inbox)) == 1


# --- the run's model package -------------------------------------------------------------------


def test_the_package_of_a_stopped_run_is_rejected_with_the_reason(aws: Aws) -> None:
    # Given a run stopped by hand after EvaluateModels registered its challenger
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    arn = registered(aws, "s3-abc")
    # When its end is recorded
    wrote = record_ended(aws, ended("s3-abc", "ABORTED", error="", cause="stopped by alice"))
    # Then the package is Rejected, saying how and why the run ended, its metadata kept
    assert wrote is True
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.REJECTED
    assert package["ApprovalDescription"] == (
        "run s3-abc ABORTED before it was recorded: States.Aborted: stopped by alice"
    )
    assert package["CustomerMetadataProperties"]["runId"] == "s3-abc"
    # And the record says so under RecordRun's keys, as does the notification
    run = records(aws).get_run("s3-abc")
    assert run is not None and run["status"] == "ABORTED"
    assert run["modelPackageArn"] == arn
    assert run["modelPackageVersion"] == 1
    assert run["modelPackageStatus"] == lineage.REJECTED
    assert "modelPackageError" not in run
    [note] = received_notifications(aws.sqs, inbox)
    assert "Model package: version 1 (Rejected)." in note["Message"]


@pytest.mark.parametrize("status", ["TIMED_OUT", "FAILED"])
def test_a_timed_out_or_failed_run_names_its_cause_in_the_rejection(aws: Aws, status: str) -> None:
    arn = registered(aws, "s3-abc")
    record_ended(aws, ended("s3-abc", status, error="Lambda.Unknown", cause="RecordRun died"))
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.REJECTED
    assert package["ApprovalDescription"] == (
        f"run s3-abc {status} before it was recorded: Lambda.Unknown: RecordRun died"
    )


def test_a_run_without_a_package_asks_nothing_of_sagemaker(aws: Aws) -> None:
    # Given a run stopped before EvaluateModels (still training)
    records(aws).put_started("s3-abc", {"startedAt": "2026-11-28T09:00:00Z"})
    calls = sagemaker_calls(aws.sagemaker)
    # When its end is recorded
    assert record_ended(aws, ended("s3-abc", "ABORTED")) is True
    # Then SageMaker is not called and the record has no package keys
    assert calls == []
    run = records(aws).get_run("s3-abc")
    assert run is not None
    assert not {k for k in run if k.startswith("modelPackage")}


def test_the_package_of_a_run_that_recorded_itself_is_left_alone(aws: Aws) -> None:
    # Given a registered run RecordRun finished (and decided the package)
    arn = registered(aws, "s3-abc")
    records(aws).finish("s3-abc", {"status": "PROMOTED", "finishedAt": "2026-11-28T09:30:00Z"})
    calls = sagemaker_calls(aws.sagemaker)
    # When its execution's end arrives
    assert record_ended(aws, ended("s3-abc", "FAILED")) is False
    # Then the package is not touched
    assert calls == []
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.PENDING


class DeniedSageMaker:
    """SageMaker refusing UpdateModelPackage (a missing permission, an outage)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def update_model_package(self, **_: Any) -> Any:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "not authorized"}},
            "UpdateModelPackage",
        )


def test_a_registry_error_still_finishes_and_notifies(aws: Aws) -> None:
    # Given a registered run and SageMaker refusing the update
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    arn = registered(aws, "s3-abc")
    # When its end is recorded: no exception (the trigger then releases the run lock)
    wrote = record_ended(aws, ended("s3-abc", "ABORTED"), sagemaker=DeniedSageMaker(aws.sagemaker))
    # Then the record is finished and notified, keeping the ARN and the error
    assert wrote is True
    run = records(aws).get_run("s3-abc")
    assert run is not None
    assert run["status"] == "ABORTED" and run["notifiedAt"]
    assert run["modelPackageArn"] == arn
    assert "AccessDeniedException" in run["modelPackageError"]
    assert "modelPackageStatus" not in run
    [note] = received_notifications(aws.sqs, inbox)
    assert "Model package: version 1 (still PendingManualApproval" in note["Message"]
    # And the package is still pending, for the next delivery or a person to decide
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.PENDING


def test_a_redelivery_after_a_failed_notification_rejects_once(aws: Aws) -> None:
    # Given a registered run, and SNS failing the first notification
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    arn = registered(aws, "s3-abc")
    sns: Any = FailingOnceSNS(aws.sns)
    topic = aws.settings.notification_topic_arn
    calls = sagemaker_calls(aws.sagemaker)

    def deliver() -> bool:
        return record_ended_run(
            ended("s3-abc", "ABORTED"), records(aws), sns, topic, STACK, sagemaker=aws.sagemaker
        )

    # When the event is handled, fails to notify, and comes back
    with pytest.raises(ClientError):
        deliver()
    assert deliver() is True
    # Then the package was updated once (the retry found it Rejected) and one note went out
    assert calls.count("UpdateModelPackage") == 1
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.REJECTED
    run = records(aws).get_run("s3-abc")
    assert run is not None and run["modelPackageStatus"] == lineage.REJECTED
    assert len(received_notifications(aws.sqs, inbox)) == 1


def test_the_package_of_the_model_the_endpoint_serves_is_never_rejected(aws: Aws) -> None:
    # Given a run whose promotion was verified (the endpoint serves its model) but whose record
    # could not be written (the execution failed in RecordNotWritten)
    inbox = subscribe_queue(aws.sns, aws.sqs, aws.settings.notification_topic_arn)
    arn = registered(aws, "s3-live")
    deploy_endpoint(
        aws.sagemaker, aws.settings.endpoint_name, layout.sagemaker_name("s3-live"), "s3://m/x"
    )
    # When its end is recorded
    record_ended(aws, ended("s3-live", "FAILED", error="Refit.RecordFailed", cause="no record"))
    # Then the live model's package is not Rejected: it stays pending, and the record says why
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.PENDING
    run = records(aws).get_run("s3-live")
    assert run is not None and run["status"] == "FAILED"
    assert run["modelPackageError"] == "not rejected: the endpoint serves this run's model"
    [note] = received_notifications(aws.sqs, inbox)
    assert "the endpoint serves this run's model" in note["Message"]


def test_the_package_of_a_run_the_endpoint_does_not_serve_is_rejected(aws: Aws) -> None:
    # Given an endpoint serving another run's model
    arn = registered(aws, "s3-other")
    deploy_endpoint(aws.sagemaker, aws.settings.endpoint_name, "champion-model", "s3://m/y")
    # When the unrecorded run's end is recorded
    record_ended(aws, ended("s3-other", "FAILED", error="Refit.RecordFailed", cause="no record"))
    # Then its package is rejected as before
    package = aws.sagemaker.describe_model_package(ModelPackageName=arn)
    assert package["ModelApprovalStatus"] == lineage.REJECTED
