from __future__ import annotations

import pytest
from lambda_handlers import load_handler
from moto_stack import STACK, TABLE, Aws
from state_builders import (
    FakeLambdaContext,
    promoted_state,
    received_notifications,
    subscribe_queue,
)

from refit.config import ConfigError
from refit.run_records import RunRecords


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
