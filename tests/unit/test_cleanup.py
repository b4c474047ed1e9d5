from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from refit.cleanup_resources.cleanup import clean_up
from refit.ledger.run_records import RunRecords
from refit.record_run.run_report import record_run
from tests.unit.moto_stack import GROUP, STACK, TABLE, Aws
from tests.unit.state_builders import (
    ENDPOINT,
    IMAGE,
    config_names,
    create_endpoint,
    create_model,
    create_run_resources,
    endpoint_names,
    evaluation_result,
    model_data_url,
    model_names,
    promoted_state,
)

OTHER_STACK = "refit-test-2"


def _records(aws: Aws) -> RunRecords:
    return RunRecords(aws.dynamodb, TABLE, STACK)


def _package(aws: Aws, model: str, status: str) -> str:
    """A package of the stack's group, as EvaluateModels registers and RecordRun decides it."""
    return str(
        aws.sagemaker.create_model_package(
            ModelPackageGroupName=GROUP,
            InferenceSpecification={
                "Containers": [{"Image": IMAGE, "ModelDataUrl": model_data_url(model)}],
                "SupportedContentTypes": ["text/csv"],
                "SupportedResponseMIMETypes": ["text/csv"],
            },
            ModelApprovalStatus=status,
        )["ModelPackageArn"]
    )


def _registered_run(
    aws: Aws,
    records: RunRecords | None,
    run_id: str,
    *,
    day: int,
    status: str = "Approved",
    promoted: bool = True,
) -> str:
    """A run's model and config, its package (``status``) and, with ``records``, its index entry."""
    name = create_run_resources(aws.sagemaker, None, run_id, day=day)
    package = _package(aws, name, status)
    if records is not None:
        records.register_resources(
            run_id,
            name,
            name,
            created_at=f"2026-11-{day:02d}T00:00:00.000Z",
            promoted=promoted,
            model_package_arn=package,
        )
    return package


def _registered_history(aws: Aws, records: RunRecords) -> dict[str, str]:
    """Packages (and models) of six runs; run-7 just promoted and live. Returns run -> package.

    run-1, -2, -3 and -6 are Approved. run-4 was promoted (its index entry says so) and then
    rolled back: its package is Rejected. run-5 failed after its promote decision (an orphan,
    Rejected). Two gate-rejected challengers left packages but no model. run-7's package is still
    pending: RecordRun approves it after cleanup, and indexes its model.
    """
    packages = {}
    for day, status in enumerate(["Approved", "Approved", "Approved", "Rejected"], start=1):
        packages[f"run-{day}"] = _registered_run(aws, records, f"run-{day}", day=day, status=status)
    _package(aws, "job-challenger-a", "Rejected")
    packages["run-5"] = _registered_run(
        aws, records, "run-5", day=5, status="Rejected", promoted=False
    )
    packages["run-6"] = _registered_run(aws, records, "run-6", day=6)
    _package(aws, "job-challenger-b", "Rejected")
    packages["run-7"] = _registered_run(aws, None, "run-7", day=7, status="PendingManualApproval")
    create_endpoint(aws.sagemaker, ENDPOINT, "job-run-7")
    return packages


def _state_with_package(run_id: str, package: str, **kwargs: Any) -> dict[str, Any]:
    state = promoted_state(run_id, **kwargs)
    state["evaluation"] = {**evaluation_result("promote"), "modelPackageArn": package}
    return state


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
    # When cleanup runs with PREVIOUS_MODELS_TO_KEEP=1 (none of them has a package: the index's
    # promoted flag decides)
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


def test_previous_models_to_keep_sets_the_number_of_unregistered_rollback_targets(
    aws: Aws,
) -> None:
    # Given the same history (runs from before the registry) and PREVIOUS_MODELS_TO_KEEP=2
    records = _records(aws)
    _history(aws, records)
    settings = dataclasses.replace(aws.settings, previous_models_to_keep=2)
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
    settings = dataclasses.replace(aws.settings, previous_models_to_keep=0)
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
        "kept": {
            "models": ["job-run-4", "job-run-3"],
            "endpointConfigs": [],
            "rollbackPackages": [],
        },
        "skippedUnowned": [],
        "registryError": None,
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


def test_api_calls_do_not_grow_with_the_models_and_packages_in_the_account(aws: Aws) -> None:
    # Given a call counter on the SageMaker client
    records = _records(aws)
    calls: Counter[str] = Counter()

    def count(model: Any, **_: Any) -> None:
        calls[model.name] += 1

    aws.sagemaker.meta.events.register("before-call.sagemaker.*", count)

    def packages_in_group() -> int:
        listed = aws.sagemaker.list_model_packages(ModelPackageGroupName=GROUP, MaxResults=100)
        return len(listed["ModelPackageSummaryList"])

    def run_with_unrelated_models(total: int) -> Counter[str]:
        for day in (1, 2):  # deleted each round, so created again for the second one
            create_run_resources(aws.sagemaker, records, f"run-{day}", day=day)
        while len([m for m in model_names(aws.sagemaker) if m.startswith("unrelated")]) < total:
            index = len(model_names(aws.sagemaker))
            create_model(aws.sagemaker, f"unrelated-{index}", stack=OTHER_STACK)
        # Past packages of the group, approved and rejected alike (their models long deleted)
        while packages_in_group() < total:
            index = packages_in_group()
            _package(aws, f"past-{index}", "Approved" if index % 2 else "Rejected")
        # run-3, the previous promotion, is the newest approved package
        records.register_resources(
            "run-3",
            "job-run-3",
            "job-run-3",
            created_at="2026-11-03T00:00:00.000Z",
            promoted=True,
            model_package_arn=_package(aws, "job-run-3", "Approved"),
        )
        calls.clear()
        clean_up(aws.sagemaker, records, aws.settings, _state_with_package("run-4", current))
        return Counter(calls)

    create_run_resources(aws.sagemaker, None, "run-3", day=3)
    current = _registered_run(aws, None, "run-4", day=4, status="PendingManualApproval")
    create_endpoint(aws.sagemaker, ENDPOINT, "job-run-4")
    # When cleanup runs with 5, then with 50 unrelated models and packages in the account
    with_5 = run_with_unrelated_models(5)
    with_50 = run_with_unrelated_models(50)
    # Then it makes exactly the same calls, and never lists models or configs
    assert with_5 == with_50
    assert with_5["DeleteModel"] == 2
    assert with_5["ListModelPackages"] == 1
    assert "ListModels" not in with_5
    assert "ListEndpointConfigs" not in with_5
    assert "job-run-3" in model_names(aws.sagemaker)


@pytest.mark.parametrize(
    ("keep", "rollback_runs"),
    [(0, []), (1, ["run-6"]), (2, ["run-6", "run-3"]), (3, ["run-6", "run-3", "run-2"])],
)
def test_keeps_the_live_model_and_the_previous_approved_ones(
    aws: Aws, keep: int, rollback_runs: list[str]
) -> None:
    # Given approved, rolled-back and orphaned runs, run-7 live with its package still pending
    records = _records(aws)
    packages = _registered_history(aws, records)
    settings = dataclasses.replace(aws.settings, previous_models_to_keep=keep)
    # When cleanup runs with PREVIOUS_MODELS_TO_KEEP=keep
    report = clean_up(
        aws.sagemaker, records, settings, _state_with_package("run-7", packages["run-7"])
    )
    # Then exactly the live pair and the newest `keep` approved runs' pairs remain
    kept = {"job-run-7", *(f"job-{run}" for run in rollback_runs)}
    assert model_names(aws.sagemaker) == kept
    assert config_names(aws.sagemaker) == kept
    assert report.kept_models == ["job-run-7", *(f"job-{run}" for run in rollback_runs)]
    assert report.rollback_packages == [packages[run] for run in rollback_runs]
    assert report.to_dict()["kept"]["rollbackPackages"] == report.rollback_packages
    assert report.registry_error is None
    # And the rolled-back run-4 is deleted although its index entry says promoted
    assert "job-run-4" in report.deleted_models
    assert "job-run-4" in report.deleted_endpoint_configs
    assert _indexed(records) == sorted(rollback_runs, reverse=True)
    assert endpoint_names(aws.sagemaker) == {ENDPOINT}


def test_the_live_approved_model_is_not_a_rollback_target(aws: Aws) -> None:
    # Given the history, and a batch run whose endpoint still serves the approved run-6
    records = _records(aws)
    packages = _registered_history(aws, records)
    aws.sagemaker.delete_endpoint(EndpointName=ENDPOINT)
    create_endpoint(aws.sagemaker, ENDPOINT, "job-run-6")
    state = _state_with_package("run-7", packages["run-7"], deployment_mode="batch")
    # When cleanup runs with PREVIOUS_MODELS_TO_KEEP=1
    report = clean_up(aws.sagemaker, records, aws.settings, state)
    # Then run-6 stays because it is live, and the one rollback slot goes to run-3
    assert model_names(aws.sagemaker) == {"job-run-7", "job-run-6", "job-run-3"}
    assert report.rollback_packages == [packages["run-3"]]


def test_a_registry_failure_falls_back_to_the_promoted_flag(aws: Aws) -> None:
    # Given the history and a Model Registry that cannot be read
    records = _records(aws)
    packages = _registered_history(aws, records)

    def refuse(**_: Any) -> None:
        raise ClientError(
            {"Error": {"Code": "AccessDeniedException", "Message": "no ListModelPackages"}},
            "ListModelPackages",
        )

    aws.sagemaker.meta.events.register("before-call.sagemaker.ListModelPackages", refuse)
    settings = dataclasses.replace(aws.settings, previous_models_to_keep=2)
    # When cleanup runs
    report = clean_up(
        aws.sagemaker, records, settings, _state_with_package("run-7", packages["run-7"])
    )
    # Then the two newest runs the index says were promoted stay (run-4's rollback is unknown),
    # and the report says why
    assert model_names(aws.sagemaker) == {"job-run-7", "job-run-6", "job-run-4"}
    assert report.rollback_packages == [packages["run-6"], packages["run-4"]]
    assert report.registry_error is not None and "AccessDenied" in report.registry_error
    assert report.to_dict()["registryError"] == report.registry_error


def test_runs_without_a_package_fill_the_slots_the_registry_leaves(aws: Aws) -> None:
    # Given two runs from before the registry (no package) and one approved run after them
    records = _records(aws)
    for day in (1, 2):
        create_run_resources(aws.sagemaker, records, f"run-{day}", day=day)
    package = _registered_run(aws, records, "run-3", day=3)
    current = _registered_run(aws, None, "run-4", day=4, status="PendingManualApproval")
    create_endpoint(aws.sagemaker, ENDPOINT, "job-run-4")
    settings = dataclasses.replace(aws.settings, previous_models_to_keep=2)
    # When cleanup keeps two previous models and the registry knows one
    report = clean_up(aws.sagemaker, records, settings, _state_with_package("run-4", current))
    # Then the approved run-3 and the newest unregistered promoted run-2 stay
    assert model_names(aws.sagemaker) == {"job-run-4", "job-run-3", "job-run-2"}
    assert report.rollback_packages == [package]
    assert report.deleted_models == ["job-run-1"]


def test_record_run_indexes_the_package_cleanup_keeps(aws: Aws) -> None:
    # Given run-1 promoted, its package registered (pending) by EvaluateModels
    records = _records(aws)
    first = _registered_run(aws, None, "run-1", day=1, status="PendingManualApproval")
    # When RecordRun records it (approving the package and indexing its model)
    record_run(
        {
            "outcome": "promoted",
            "executionName": "run-1",
            "state": _state_with_package("run-1", first),
        },
        records,
        aws.sns,
        aws.settings.notification_topic_arn,
        aws.settings,
        sagemaker=aws.sagemaker,
    )
    # Then the index entry names the package
    (entry,) = records.owned_resources()
    assert entry.model_package_arn == first
    # And once run-2 is live, cleanup keeps run-1 as the registry's rollback target
    current = _registered_run(aws, None, "run-2", day=2, status="PendingManualApproval")
    create_endpoint(aws.sagemaker, ENDPOINT, "job-run-2")
    report = clean_up(aws.sagemaker, records, aws.settings, _state_with_package("run-2", current))
    assert report.rollback_packages == [first]
    assert model_names(aws.sagemaker) == {"job-run-1", "job-run-2"}


def test_a_rollback_run_does_not_keep_the_model_it_replaced(aws: Aws) -> None:
    # Given run-1, run-2 and run-3 approved, run-3 live until a rollback run put run-2's
    # package back on the endpoint as its own model (run-3's package is still Approved: RecordRun
    # rejects it after cleanup)
    records = _records(aws)
    packages = {
        run: _registered_run(aws, records, run, day=n)
        for n, run in ((1, "run-1"), (2, "run-2"), (3, "run-3"))
    }
    create_run_resources(aws.sagemaker, None, "rb-4", day=4)
    create_endpoint(aws.sagemaker, ENDPOINT, "job-rb-4")
    state = _state_with_package("rb-4", packages["run-2"])
    state["run"]["kind"] = "rollback"
    state["run"]["rollback"] = {
        "modelPackageArn": packages["run-2"],
        "replacedModelPackageArn": packages["run-3"],
        "replacedModelName": "job-run-3",
    }
    # When cleanup runs with PREVIOUS_MODELS_TO_KEEP=1
    report = clean_up(aws.sagemaker, records, aws.settings, state)
    # Then the one rollback slot goes to run-1: run-3 was taken off the endpoint for being bad,
    # and run-2's package is live again as the rollback's model
    assert report.rollback_packages == [packages["run-1"]]
    assert model_names(aws.sagemaker) == {"job-rb-4", "job-run-1"}
    assert {"job-run-3", "job-run-2"} <= set(report.deleted_models)


def test_a_failed_rollback_copy_does_not_displace_the_model_that_served(aws: Aws) -> None:
    # Given run-1 approved (its model served once) and run-2 rejected, then a rollback run to
    # run-1's package that failed after CreateModel: its copy is indexed under run-1's package,
    # newer, not promoted; run-4 just deployed
    records = _records(aws)
    first = _registered_run(aws, records, "run-1", day=1)
    _registered_run(aws, records, "run-2", day=2, status="Rejected")
    copy = create_run_resources(aws.sagemaker, None, "rb-3", day=3)
    records.register_resources(
        "rb-3",
        copy,
        copy,
        created_at="2026-11-03T00:00:00.000Z",
        promoted=False,
        model_package_arn=first,
    )
    create_run_resources(aws.sagemaker, None, "run-4", day=4)
    create_endpoint(aws.sagemaker, ENDPOINT, "job-run-4")
    # When run-4's cleanup keeps one previous model
    report = clean_up(aws.sagemaker, records, aws.settings, _state_with_package("run-4", "x"))
    # Then run-1's package is the rollback target and the model kept for it is the one that
    # served, not the failed rollback's copy
    assert report.rollback_packages == [first]
    assert "job-run-1" in model_names(aws.sagemaker)
    assert "job-rb-3" in report.deleted_models
