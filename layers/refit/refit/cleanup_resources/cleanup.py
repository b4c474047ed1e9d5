"""Retention: delete the models, endpoint configs and endpoints refit no longer needs.

Runs after a verified deployment (or a batch transform). What may be deleted comes only from the
ledger's owned-resources index (never a listing of the account's models) and from the account's
endpoints (few, and each one costs money, so stale ones are worth finding). Three rules hold for
every deletion:

- a resource is deleted only if it is tagged ``refit:stack = <this stack>`` (never by name);
- nothing a remaining endpoint uses (including an in-flight update) is deleted;
- the configured endpoint is never deleted.

Besides what is live, the model/config pairs of the ``PREVIOUS_MODELS_TO_KEEP`` newest *Approved*
packages of the stack's Model Registry group (other than the live model's) survive as quick manual
rollback targets. The registry decides, not the index's ``promoted`` flag: a model rolled back off
the endpoint has its package rejected and is deleted like any other. One ListModelPackages call
(``MaxResults`` = N + the live packages) finds them, whatever the history. Index entries are
matched by package ARN (the newest entry per package). Then:

- entries with no package at all (runs from before the registry) fill, by their ``promoted`` flag,
  newest first, the slots the registry left empty (it named fewer than N packages);
- when the registry cannot be read, the ``promoted`` flag alone picks the N newest entries, and the
  report says so (``registryError``): keeping one model too many beats deleting a rollback target.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from aws_lambda_powertools import Logger
from botocore.exceptions import BotoCoreError, ClientError

from refit import layout
from refit.config import Settings
from refit.ledger.run_records import OwnedResources, RunRecords
from refit.run_state import RunState

if TYPE_CHECKING:
    from mypy_boto3_sagemaker import SageMakerClient

logger = Logger(child=True)

# Endpoints already on their way out need no second DeleteEndpoint.
_ENDPOINT_GONE_STATUSES = ("Deleting",)
APPROVED = "Approved"
# ListModelPackages' largest page.
_PACKAGES_PAGE_MAX = 100
# SageMaker's error texts can be long; the report keeps the start.
_ERROR_TEXT_MAX = 1024

Fate = Literal["deleted", "absent", "unowned"]


@dataclass
class CleanupReport:
    deleted_models: list[str] = field(default_factory=list)
    deleted_endpoint_configs: list[str] = field(default_factory=list)
    deleted_endpoints: list[str] = field(default_factory=list)
    kept_models: list[str] = field(default_factory=list)
    kept_endpoint_configs: list[str] = field(default_factory=list)
    skipped_unowned: list[str] = field(default_factory=list)
    # The previous approved packages kept as rollback targets (their model/config, where the
    # index still tracks them), newest first.
    rollback_packages: list[str] = field(default_factory=list)
    # Why the registry could not be read (the index's promoted flag chose the rollback set).
    registry_error: str | None = None

    @property
    def deleted_count(self) -> int:
        return (
            len(self.deleted_models)
            + len(self.deleted_endpoint_configs)
            + len(self.deleted_endpoints)
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "deleted": {
                "models": self.deleted_models,
                "endpointConfigs": self.deleted_endpoint_configs,
                "endpoints": self.deleted_endpoints,
            },
            "kept": {
                "models": self.kept_models,
                "endpointConfigs": self.kept_endpoint_configs,
                "rollbackPackages": self.rollback_packages,
            },
            "skippedUnowned": self.skipped_unowned,
            "registryError": self.registry_error,
        }


@dataclass
class _InUse:
    models: set[str] = field(default_factory=set)
    endpoint_configs: set[str] = field(default_factory=set)


def _is_not_found(error: Any) -> bool:
    details = error.response.get("Error", {})
    return bool(
        details.get("Code") == "ValidationException"
        and "could not find" in str(details.get("Message", "")).lower()
    )


class _SageMaker:
    """The few SageMaker calls cleanup makes, with 'Could not find' read as 'already gone'."""

    def __init__(self, client: SageMakerClient, stack_name: str) -> None:
        self._client = client
        self._stack = stack_name

    def owned(self, arn: str) -> bool:
        kwargs: dict[str, Any] = {"ResourceArn": arn}
        while True:
            page = self._client.list_tags(**kwargs)
            for tag in page.get("Tags", []):
                if tag.get("Key") == layout.TAG_STACK:
                    return tag.get("Value") == self._stack
            token = page.get("NextToken")
            if not token:
                return False
            kwargs["NextToken"] = token

    def endpoints(self) -> Iterator[Mapping[str, Any]]:
        kwargs: dict[str, Any] = {"MaxResults": 100}
        while True:
            page = self._client.list_endpoints(**kwargs)
            yield from page.get("Endpoints", [])
            token = page.get("NextToken")
            if not token:
                return
            kwargs["NextToken"] = token

    def endpoint_references(self, endpoint_name: str, into: _InUse) -> None:
        """Add the configs and models an endpoint serves, or is being updated to, to ``into``."""
        try:
            endpoint = self._client.describe_endpoint(EndpointName=endpoint_name)
        except self._client.exceptions.ClientError as error:
            if _is_not_found(error):
                return
            raise
        configs = {endpoint.get("EndpointConfigName")}
        pending = endpoint.get("PendingDeploymentSummary") or {}
        configs.add(pending.get("EndpointConfigName"))
        for config_name in sorted(c for c in configs if c):
            into.endpoint_configs.add(config_name)
            try:
                config = self._client.describe_endpoint_config(EndpointConfigName=config_name)
            except self._client.exceptions.ClientError as error:
                if _is_not_found(error):
                    continue
                raise
            variants = [
                *config.get("ProductionVariants", []),
                *config.get("ShadowProductionVariants", []),
            ]
            into.models.update(v["ModelName"] for v in variants if v.get("ModelName"))

    def approved_packages(self, group: str, wanted: int, skip: set[str]) -> list[str]:
        """The newest ``wanted`` Approved packages of ``group`` not in ``skip``, newest first.

        One call when ``wanted + len(skip)`` fits a page: the cost follows N, never the history.
        """
        found: list[str] = []
        kwargs: dict[str, Any] = {
            "ModelPackageGroupName": group,
            "ModelApprovalStatus": APPROVED,
            "SortBy": "CreationTime",
            "SortOrder": "Descending",
            "MaxResults": min(_PACKAGES_PAGE_MAX, wanted + max(1, len(skip))),
        }
        while True:
            page = self._client.list_model_packages(**kwargs)
            for summary in page.get("ModelPackageSummaryList", []):
                arn = str(summary["ModelPackageArn"])
                if arn not in skip and arn not in found:
                    found.append(arn)
                if len(found) == wanted:
                    return found
            token = page.get("NextToken")
            if not token:
                return found
            kwargs["NextToken"] = token

    def delete_endpoint_config(self, name: str) -> Fate:
        try:
            arn = self._client.describe_endpoint_config(EndpointConfigName=name)[
                "EndpointConfigArn"
            ]
            if not self.owned(arn):
                return "unowned"
            self._client.delete_endpoint_config(EndpointConfigName=name)
        except self._client.exceptions.ClientError as error:
            if _is_not_found(error):
                return "absent"
            raise
        return "deleted"

    def delete_model(self, name: str) -> Fate:
        try:
            arn = self._client.describe_model(ModelName=name)["ModelArn"]
            if not self.owned(arn):
                return "unowned"
            self._client.delete_model(ModelName=name)
        except self._client.exceptions.ClientError as error:
            if _is_not_found(error):
                return "absent"
            raise
        return "deleted"

    def delete_endpoint(self, name: str) -> Fate:
        try:
            self._client.delete_endpoint(EndpointName=name)
        except self._client.exceptions.ClientError as error:
            if _is_not_found(error):
                return "absent"
            raise
        return "deleted"


def _add_unique(target: list[str], names: Iterable[str | None]) -> None:
    for name in names:
        if name and name not in target:
            target.append(name)


def clean_up(
    sagemaker: SageMakerClient,
    records: RunRecords,
    settings: Settings,
    state: Mapping[str, Any],
) -> CleanupReport:
    """Delete what no endpoint uses and no rollback needs; report what was deleted and kept."""
    parsed = RunState.parse(state)
    run_id = parsed.run.run_id if parsed.run else None
    deploy = parsed.deploy
    endpoint_mode = parsed.deployment_mode(settings.deployment_mode) == "endpoint"
    api = _SageMaker(sagemaker, settings.stack_name)
    report = CleanupReport()

    protected_endpoints = {settings.endpoint_name}
    if deploy and deploy.endpoint_name:
        protected_endpoints.add(deploy.endpoint_name)
    # The configured endpoint is read in batch mode too: an execution may override the mode,
    # and the endpoint an earlier run deployed may still be serving one of the indexed models.
    in_use = _InUse()
    for endpoint_name in sorted(protected_endpoints):
        api.endpoint_references(endpoint_name, in_use)
    # The model this run just created is kept even though nothing serves it (batch mode); its
    # config exists only in endpoint mode.
    current_model = deploy.model_name if deploy else None
    current_config = deploy.endpoint_config_name if deploy and endpoint_mode else None
    in_use.models.update([current_model] if current_model else [])
    in_use.endpoint_configs.update([current_config] if current_config else [])

    indexed = [entry for entry in records.owned_resources() if entry.run_id != run_id]
    live_packages = {
        entry.model_package_arn
        for entry in indexed
        if entry.model_package_arn and entry.model_name in in_use.models
    }
    current_package = parsed.evaluation.model_package_arn if parsed.evaluation else None
    if current_package:
        live_packages.add(current_package)
    # A rollback run takes the package it replaces off the endpoint for being bad; RecordRun
    # rejects it only after cleanup, so it is excluded here already.
    replaced = parsed.run.replaced_package_arn if parsed.run else None
    not_targets = live_packages | ({replaced} if replaced else set())
    rollback = _rollback_targets(api, indexed, settings, not_targets, report)
    candidates = [entry for entry in indexed if entry not in rollback]

    others = _delete_stale_endpoints(api, protected_endpoints, report)
    if candidates:
        # An endpoint we do not own might still serve one of our configs (hand-made, say).
        for endpoint_name in others:
            api.endpoint_references(endpoint_name, in_use)

    keep = _InUse(
        models=in_use.models | {entry.model_name for entry in rollback},
        endpoint_configs=in_use.endpoint_configs
        | {entry.endpoint_config_name for entry in rollback if entry.endpoint_config_name},
    )
    _add_unique(report.kept_models, [current_model])
    _add_unique(report.kept_endpoint_configs, [current_config])
    for entry in rollback:
        _add_unique(report.kept_models, [entry.model_name])
        _add_unique(report.kept_endpoint_configs, [entry.endpoint_config_name])
    for entry in candidates:
        if _delete_run_resources(api, entry, keep, report):
            records.forget_resources(entry.run_id)
    logger.info("cleanup finished", extra={"cleanup": report.to_dict()})
    return report


def _rollback_targets(
    api: _SageMaker,
    indexed: list[OwnedResources],
    settings: Settings,
    live_packages: set[str],
    report: CleanupReport,
) -> list[OwnedResources]:
    """The index entries kept for a manual rollback (see the module docstring)."""
    wanted = settings.previous_models_to_keep
    if wanted < 1:
        return []
    group = layout.model_package_group_name(settings.stack_name)
    try:
        packages = api.approved_packages(group, wanted, live_packages)
    except (ClientError, BotoCoreError) as error:
        logger.warning(
            "model registry not readable: rollback targets chosen by the promoted flag",
            extra={"group": group, "error": str(error)},
        )
        report.registry_error = str(error)[:_ERROR_TEXT_MAX]
        chosen = [entry for entry in indexed if entry.promoted][:wanted]
        report.rollback_packages = [e.model_package_arn for e in chosen if e.model_package_arn]
        return chosen
    report.rollback_packages = packages
    newest: dict[str, OwnedResources] = {}
    # Newest first, promoted entries before the others: a package's model that served wins
    # over a copy a failed rollback run created of it.
    for entry in sorted(indexed, key=lambda e: not e.promoted):
        if entry.model_package_arn:
            newest.setdefault(entry.model_package_arn, entry)
    chosen = [newest[arn] for arn in packages if arn in newest]
    unregistered = [entry for entry in indexed if not entry.model_package_arn and entry.promoted]
    return chosen + unregistered[: wanted - len(packages)]


def _delete_stale_endpoints(
    api: _SageMaker, protected: set[str], report: CleanupReport
) -> list[str]:
    """Delete this stack's endpoints other than the configured one; return the others' names."""
    others: list[str] = []
    for endpoint in api.endpoints():
        name = endpoint["EndpointName"]
        if name in protected:
            continue
        if endpoint.get("EndpointStatus") in _ENDPOINT_GONE_STATUSES:
            continue
        if not api.owned(endpoint["EndpointArn"]):
            others.append(name)
            continue
        logger.info(
            "deleting stale endpoint",
            extra={"endpoint": name, "status": endpoint.get("EndpointStatus")},
        )
        if api.delete_endpoint(name) == "deleted":
            report.deleted_endpoints.append(name)
    return others


def _delete_run_resources(
    api: _SageMaker, entry: OwnedResources, keep: _InUse, report: CleanupReport
) -> bool:
    """Delete one indexed run's config, then its model; True when nothing of ours is left."""
    settled = True
    # Config before model: a config naming a deleted model is a broken rollback target.
    config = entry.endpoint_config_name
    if config and config in keep.endpoint_configs:
        _add_unique(report.kept_endpoint_configs, [config])
        settled = False
    elif config:
        fate = api.delete_endpoint_config(config)
        _record(fate, "endpoint-config", config, entry, report.deleted_endpoint_configs, report)
    if entry.model_name in keep.models:
        _add_unique(report.kept_models, [entry.model_name])
        settled = False
    else:
        fate = api.delete_model(entry.model_name)
        _record(fate, "model", entry.model_name, entry, report.deleted_models, report)
    # A name whose resource is not ours never will be: the index entry is dropped all the same,
    # so it is not checked again on every run.
    return settled


def _record(
    fate: Fate,
    kind: str,
    name: str,
    entry: OwnedResources,
    deleted: list[str],
    report: CleanupReport,
) -> None:
    if fate == "deleted":
        deleted.append(name)
    elif fate == "unowned":
        # "<kind>/<name>" as in the ARN: a model and its config usually share the name.
        resource = f"{kind}/{name}"
        logger.warning(
            "not deleting a resource this stack does not own",
            extra={"resource": resource, "runId": entry.run_id, "tag": layout.TAG_STACK},
        )
        report.skipped_unowned.append(resource)
