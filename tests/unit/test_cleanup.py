from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

from moto_stack import STACK, TABLE, Aws
from state_builders import (
    ENDPOINT,
    config_names,
    create_endpoint,
    create_model,
    create_run_resources,
    endpoint_names,
    model_names,
    promoted_state,
)

from refit.cleanup import clean_up
from refit.run_records import RunRecords

OTHER_STACK = "refit-test-2"


def _records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def _indexed(records: RunRecords) -> list[str]:
    return [entry.run_id for entry in records.owned_resources()]


def _history(aws: Aws, records: RunRecords) -> None:
    """Four promoted runs (day 1-4), a failed run's orphan (day 5), and run-6 just deployed.

    run-6 is not in the index yet: RecordRun registers it after cleanup.
    """
    for day in range(1, 5):
        create_run_resources(aws.sagemaker, records, f"run-{day}", day=day)
    create_run_resources(aws.sagemaker, records, "run-5", day=5, promoted=False)
    current = create_run_resources(aws.sagemaker, None, "run-6", day=6)
    create_endpoint(aws.sagemaker, ENDPOINT, current)


def test_keeps_live_and_rollback_deletes_older_and_orphans(aws: Aws) -> None:
    # Given four promoted runs, a failed run's orphan and the endpoint on the new run-6
    records = _records(aws)
    _history(aws, records)
    # When cleanup runs with MODELS_TO_KEEP=2
    report = clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-6"))
    # Then run-6 (live) and run-4 (rollback target) remain; the rest is gone, configs and models
    assert model_names(aws.sagemaker) == {"job-run-6", "job-run-4"}
    assert config_names(aws.sagemaker) == {"job-run-6", "job-run-4"}
    assert sorted(report.deleted_models) == ["job-run-1", "job-run-2", "job-run-3", "job-run-5"]
    assert sorted(report.deleted_endpoint_configs) == sorted(report.deleted_models)
    assert report.kept_models == ["job-run-6", "job-run-4"]
    assert report.kept_endpoint_configs == ["job-run-6", "job-run-4"]
    # And only the rollback target is still indexed
    assert _indexed(records) == ["run-4"]
    assert endpoint_names(aws.sagemaker) == {ENDPOINT}


def test_models_to_keep_sets_the_number_of_rollback_targets(aws: Aws) -> None:
    # Given the same history and MODELS_TO_KEEP=3
    records = _records(aws)
    _history(aws, records)
    settings = dataclasses.replace(aws.settings, models_to_keep=3)
    # When cleanup runs
    clean_up(aws.sagemaker, records, settings, promoted_state("run-6"))
    # Then the two newest promoted runs survive beside the current one; the orphan does not count
    assert model_names(aws.sagemaker) == {"job-run-6", "job-run-4", "job-run-3"}
    assert _indexed(records) == ["run-4", "run-3"]


def test_whatever_the_endpoint_serves_is_never_deleted(aws: Aws) -> None:
    # Given an endpoint still serving run-1's config (say, after a manual rollback)
    records = _records(aws)
    for day in (1, 2, 3):
        create_run_resources(aws.sagemaker, records, f"run-{day}", day=day)
    create_endpoint(aws.sagemaker, ENDPOINT, "job-run-1")
    settings = dataclasses.replace(aws.settings, models_to_keep=1)
    # When cleanup runs in batch mode, with no rollback targets wanted
    report = clean_up(
        aws.sagemaker, records, settings, promoted_state("run-4", deployment_mode="batch")
    )
    # Then the served config and its model stay, and stay indexed
    assert "job-run-1" in model_names(aws.sagemaker)
    assert config_names(aws.sagemaker) == {"job-run-1"}
    assert "job-run-1" in report.kept_endpoint_configs
    assert _indexed(records) == ["run-1"]


def test_config_of_an_in_flight_update_is_kept(aws: Aws) -> None:
    # Given an endpoint on run-6 with an update to run-2's config under way
    records = _records(aws)
    _history(aws, records)

    def pending_update(parsed: dict[str, Any], **_: Any) -> None:
        parsed["PendingDeploymentSummary"] = {"EndpointConfigName": "job-run-2"}

    aws.sagemaker.meta.events.register("after-call.sagemaker.DescribeEndpoint", pending_update)
    # When cleanup runs
    report = clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-6"))
    # Then the pending config and the model it names are kept
    assert {"job-run-2", "job-run-4", "job-run-6"} == config_names(aws.sagemaker)
    assert "job-run-2" in model_names(aws.sagemaker)
    assert "job-run-2" not in report.deleted_models


def test_batch_mode_keeps_the_new_model_and_previous_promoted(aws: Aws) -> None:
    # Given batch runs (models only) and no endpoint at all
    records = _records(aws)
    for day in (1, 2, 3):
        create_run_resources(aws.sagemaker, records, f"run-{day}", day=day, with_config=False)
    create_model(aws.sagemaker, "job-run-4")
    # When cleanup runs after run-4's transform
    report = clean_up(
        aws.sagemaker, records, aws.settings, promoted_state("run-4", deployment_mode="batch")
    )
    # Then run-4 and the newest previous promoted run-3 stay
    assert model_names(aws.sagemaker) == {"job-run-4", "job-run-3"}
    assert report.to_dict() == {
        "deleted": {"models": ["job-run-2", "job-run-1"], "endpointConfigs": [], "endpoints": []},
        "kept": {"models": ["job-run-4", "job-run-3"], "endpointConfigs": []},
        "skippedUnowned": [],
    }


def test_resources_of_another_stack_are_never_deleted(aws: Aws) -> None:
    # Given an index entry whose model and config carry another stack's tag, and one untagged
    records = _records(aws)
    _history(aws, records)
    create_run_resources(aws.sagemaker, records, "run-x", day=0, stack=OTHER_STACK)
    create_run_resources(aws.sagemaker, records, "run-y", day=0, stack=None, with_config=False)
    # When cleanup runs
    report = clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-6"))
    # Then they survive, are reported, and leave the index (they are not ours to track)
    assert {"job-run-x", "job-run-y"} <= model_names(aws.sagemaker)
    assert "job-run-x" in config_names(aws.sagemaker)
    assert sorted(report.skipped_unowned) == [
        "endpoint-config/job-run-x",
        "model/job-run-x",
        "model/job-run-y",
    ]
    assert "run-x" not in _indexed(records)
    assert "run-y" not in _indexed(records)


def test_already_deleted_resources_are_forgotten_quietly(aws: Aws) -> None:
    # Given an index entry whose model and config no longer exist
    records = _records(aws)
    _history(aws, records)
    records.register_resources(
        "run-0", "job-run-0", "job-run-0", "2026-10-01T00:00:00.000Z", promoted=False
    )
    # When cleanup runs
    report = clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-6"))
    # Then it is dropped from the index without being reported as deleted
    assert "run-0" not in _indexed(records)
    assert "job-run-0" not in report.deleted_models


def test_stale_owned_endpoints_go_lookalikes_of_other_stacks_stay(aws: Aws) -> None:
    # Given our configured endpoint, a stale endpoint of ours, and two foreign endpoints whose
    # names start with ours (name-prefix matching would delete them)
    records = _records(aws)
    _history(aws, records)
    create_endpoint(aws.sagemaker, f"{ENDPOINT}-old", "job-run-4")
    create_endpoint(aws.sagemaker, f"{ENDPOINT}-2", "job-run-4", stack=OTHER_STACK)
    create_endpoint(aws.sagemaker, f"{ENDPOINT}-3", "job-run-4", stack=None)
    # When cleanup runs
    report = clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-6"))
    # Then only our stale endpoint is deleted
    assert report.deleted_endpoints == [f"{ENDPOINT}-old"]
    assert endpoint_names(aws.sagemaker) == {ENDPOINT, f"{ENDPOINT}-2", f"{ENDPOINT}-3"}


def test_configured_endpoint_is_never_deleted_even_in_batch_mode(aws: Aws) -> None:
    # Given the stack's endpoint exists while a batch run finishes
    records = _records(aws)
    _history(aws, records)
    # When cleanup runs in batch mode
    report = clean_up(
        aws.sagemaker, records, aws.settings, promoted_state("run-7", deployment_mode="batch")
    )
    # Then the endpoint and what it serves survive
    assert report.deleted_endpoints == []
    assert ENDPOINT in endpoint_names(aws.sagemaker)
    assert "job-run-6" in config_names(aws.sagemaker)


def test_a_foreign_endpoint_serving_our_config_protects_it(aws: Aws) -> None:
    # Given another stack's endpoint built on our old run-2 config
    records = _records(aws)
    _history(aws, records)
    create_endpoint(aws.sagemaker, "someone-elses-endpoint", "job-run-2", stack=OTHER_STACK)
    # When cleanup runs
    clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-6"))
    # Then that config and its model are kept
    assert "job-run-2" in config_names(aws.sagemaker)
    assert "job-run-2" in model_names(aws.sagemaker)


def test_foreign_configs_and_models_outside_the_index_are_untouched(aws: Aws) -> None:
    # Given an unindexed model and config of ours plus another stack's
    records = _records(aws)
    _history(aws, records)
    create_run_resources(aws.sagemaker, None, "handmade", day=0)
    create_run_resources(aws.sagemaker, None, "other", day=0, stack=OTHER_STACK)
    # When cleanup runs
    clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-6"))
    # Then nothing outside the index was touched
    assert {"job-handmade", "job-other"} <= model_names(aws.sagemaker)
    assert {"job-handmade", "job-other"} <= config_names(aws.sagemaker)


def test_api_calls_do_not_grow_with_the_models_in_the_account(aws: Aws) -> None:
    # Given a call counter on the SageMaker client
    records = _records(aws)
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    aws.sagemaker.meta.events.register("before-call.sagemaker.*", count)

    def run_with_unrelated_models(total: int) -> Counter[str]:
        for day in (1, 2):  # deleted each round, so created again for the second one
            create_run_resources(aws.sagemaker, records, f"run-{day}", day=day)
        while len([m for m in model_names(aws.sagemaker) if m.startswith("unrelated")]) < total:
            index = len(model_names(aws.sagemaker))
            create_model(aws.sagemaker, f"unrelated-{index}", stack=OTHER_STACK)
        calls.clear()
        clean_up(aws.sagemaker, records, aws.settings, promoted_state("run-4"))
        return Counter(calls)

    create_run_resources(aws.sagemaker, records, "run-3", day=3)
    current = create_run_resources(aws.sagemaker, None, "run-4", day=4)
    create_endpoint(aws.sagemaker, ENDPOINT, current)
    # When cleanup runs with 5, then with 50 unrelated models in the account
    with_5 = run_with_unrelated_models(5)
    with_50 = run_with_unrelated_models(50)
    # Then it makes exactly the same calls, and never lists models or configs
    assert with_5 == with_50
    assert with_5["DeleteModel"] == 2
    assert "ListModels" not in with_5
    assert "ListEndpointConfigs" not in with_5
