"""Runs that ended without recording themselves: the final record and one notification."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError
from builders import execution_arn, execution_status_change
from moto_stack import STACK, TABLE, Aws
from state_builders import received_notifications, subscribe_queue

from refit.run_ended import ExecutionEnded, record_ended_run
from refit.run_records import RunRecords

MACHINE = "arn:aws:states:us-east-1:123456789012:stateMachine:refit-test-retrain"


def ended(name: str, status: str, **fields: Any) -> ExecutionEnded:
    event = execution_status_change(execution_arn(MACHINE, name), status, **fields)
    return ExecutionEnded.from_detail(event["detail"])


def records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def record_ended(aws: Aws, run: ExecutionEnded) -> bool:
    return record_ended_run(run, records(aws), aws.sns, aws.settings.notification_topic_arn, STACK)


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
    record_ended_run(ended("s3-abc", "ABORTED"), records(aws), sns, topic, STACK)
    # Then the notification went out once
    assert len(received_notifications(aws.sqs, inbox)) == 1
