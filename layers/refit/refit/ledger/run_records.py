"""The run ledger in DynamoDB: run records, the champion pointer and the owned-resource index.

One table holds three kinds of item (see docs/architecture.md):

- ``RUN#<runId>/RUN``: one per execution, written RUNNING by PrepareRun and finished by RecordRun.
- ``CHAMPION#<stack>/CURRENT``: the model refit last promoted and verified live.
- ``CHAMPION#<stack>/REJECTIONS``: the incremental runs the gate rejected in a row against one
  champion (``refit.prepare_run.warm_start`` retrains from scratch after
  ``FULL_RETRAIN_AFTER_REJECTIONS``).
- ``OBJECT#``, ``QUEUE#`` and ``LOCK#`` items: the intake ledger, queue and run lock, owned by
  :mod:`refit.ledger.run_queue`.
- Items carrying ``resourcesOwner``/``resourcesCreatedAt`` appear in the sparse ``ResourcesIndex``:
  the models and endpoint configs a run may have created and cleanup has not yet deleted. Cleanup
  reads this index instead of listing every model in the account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

RESOURCES_INDEX = "ResourcesIndex"
RUNNING = "RUNNING"
_serializer = TypeSerializer()
_deserializer = TypeDeserializer()


def _to_dynamo(value: Any) -> Any:
    """Floats become Decimals (DynamoDB has no float type); None values are dropped."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {k: _to_dynamo(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_to_dynamo(v) for v in value]
    return value


def _from_dynamo(value: Any) -> Any:
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return {k: _from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_from_dynamo(v) for v in value]
    return value


def dynamo_item(attributes: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _serializer.serialize(v) for k, v in _to_dynamo(attributes).items()}


def plain_item(item: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _from_dynamo(_deserializer.deserialize(v)) for k, v in item.items()}


def run_key(run_id: str) -> dict[str, str]:
    return {"pk": f"RUN#{run_id}", "sk": "RUN"}


def champion_key(stack_name: str) -> dict[str, str]:
    return {"pk": f"CHAMPION#{stack_name}", "sk": "CURRENT"}


def rejections_key(stack_name: str) -> dict[str, str]:
    return {"pk": f"CHAMPION#{stack_name}", "sk": "REJECTIONS"}


def is_condition_failure(error: ClientError) -> bool:
    code: object = error.response.get("Error", {}).get("Code")
    return code == "ConditionalCheckFailedException"


@dataclass(frozen=True)
class DataWindow:
    """What a champion's model stands for (``refit.prepare_run.warm_start``'s growth rule and full
    retrains).

    ``since``: the data its lineage trains in was trained from this time on (ISO 8601 UTC): the
    start of the run that detected drift and learnt the new relationship from scratch; data
    trained before belongs to the old one. None: all data. ``base_rows``: rows its first trees
    were grown on (the lineage's last from-scratch job); ``seen_rows``: rows the lineage has
    trained on since, the base included (``replaySample`` in evaluation.json).
    """

    since: str | None
    base_rows: int | None
    seen_rows: int | None

    def to_dict(self) -> dict[str, Any]:
        return {"since": self.since, "baseRows": self.base_rows, "seenRows": self.seen_rows}

    @classmethod
    def from_dict(cls, data: Any) -> DataWindow | None:
        if not isinstance(data, Mapping):
            return None

        def rows(key: str) -> int | None:
            value = data.get(key)
            return value if isinstance(value, int) and not isinstance(value, bool) else None

        since = data.get("since")
        return cls(since if isinstance(since, str) else None, rows("baseRows"), rows("seenRows"))


@dataclass(frozen=True)
class ChampionPointer:
    model_name: str
    model_data_url: str
    endpoint_config_name: str | None
    run_id: str
    feature_count: int | None = None
    objective: str | None = None  # what it was trained with: another one means no warm start
    model_package_arn: str | None = None  # its Model Registry package (refit.registry.lineage)
    data_window: DataWindow | None = None  # None: promoted before refit recorded it

    def to_dict(self) -> dict[str, Any]:
        return {
            "modelName": self.model_name,
            "modelDataUrl": self.model_data_url,
            "endpointConfigName": self.endpoint_config_name,
            "runId": self.run_id,
            "featureCount": self.feature_count,
            "objective": self.objective,
            "modelPackageArn": self.model_package_arn,
            "dataWindow": self.data_window.to_dict() if self.data_window else None,
        }


@dataclass(frozen=True)
class OwnedResources:
    """Models/configs a run may have created, as listed in the sparse resources index."""

    run_id: str
    model_name: str
    endpoint_config_name: str | None
    created_at: str
    promoted: bool
    # The run's Model Registry package (refit.registry.lineage); None for runs from before the
    # registry.
    model_package_arn: str | None = None


class RunRecords:
    """Typed access to the runs table through an injected DynamoDB client."""

    def __init__(self, dynamodb: DynamoDBClient, table_name: str, stack_name: str) -> None:
        self._db = dynamodb
        self._table = table_name
        self._stack = stack_name

    # --- run records --------------------------------------------------------------------------
    def put_started(self, run_id: str, attributes: Mapping[str, Any]) -> None:
        """Write the RUNNING record; a retried PrepareRun simply overwrites its own record."""
        self._db.put_item(
            TableName=self._table,
            Item=dynamo_item({**run_key(run_id), **attributes, "runId": run_id, "status": RUNNING}),
        )

    def finish(self, run_id: str, attributes: Mapping[str, Any]) -> None:
        """Merge the final attributes into the run record (creating it if PrepareRun never ran)."""
        values = {k: v for k, v in _to_dynamo(attributes).items() if k not in ("pk", "sk")}
        values["runId"] = run_id
        names = {f"#a{i}": name for i, name in enumerate(values)}
        expression = "SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values)))
        self._db.update_item(
            TableName=self._table,
            Key=dynamo_item(run_key(run_id)),
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                f":v{i}": _serializer.serialize(v) for i, v in enumerate(values.values())
            },
        )

    def annotate(self, run_id: str, attributes: Mapping[str, Any]) -> None:
        """Merge attributes into a run record mid-run (EvaluateModels' model package ARN)."""
        self.finish(run_id, attributes)

    def finish_if_running(self, run_id: str, attributes: Mapping[str, Any]) -> bool:
        """Finish a run nobody recorded (stopped by hand, timed out): a no-op once RecordRun wrote.

        Returns whether this call wrote the record.
        """
        values = {k: v for k, v in _to_dynamo(attributes).items() if k not in ("pk", "sk")}
        values["runId"] = run_id
        names = {f"#a{i}": name for i, name in enumerate(values)}
        names["#status"] = "status"
        expression_values = {
            f":v{i}": _serializer.serialize(v) for i, v in enumerate(values.values())
        }
        expression_values[":running"] = _serializer.serialize(RUNNING)
        try:
            self._db.update_item(
                TableName=self._table,
                Key=dynamo_item(run_key(run_id)),
                UpdateExpression="SET " + ", ".join(f"#a{i} = :v{i}" for i in range(len(values))),
                ConditionExpression="attribute_not_exists(pk) OR #status = :running",
                ExpressionAttributeNames=names,
                ExpressionAttributeValues=expression_values,
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            return False
        return True

    def get_run(self, run_id: str) -> dict[str, Any] | None:
        response = self._db.get_item(
            TableName=self._table, Key=dynamo_item(run_key(run_id)), ConsistentRead=True
        )
        item = response.get("Item")
        return plain_item(item) if item else None

    def list_runs(self, limit: int) -> list[dict[str, Any]]:
        """Run records, newest first. A scan: only the operator CLI lists runs, rarely."""
        runs: list[dict[str, Any]] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "FilterExpression": "sk = :run",
            "ExpressionAttributeValues": {":run": {"S": "RUN"}},
        }
        while True:
            page = self._db.scan(**kwargs)
            runs.extend(plain_item(item) for item in page.get("Items", []))
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
        runs.sort(key=lambda run: str(run.get("startedAt", "")), reverse=True)
        return runs[:limit]

    # --- champion pointer ---------------------------------------------------------------------
    def get_champion(self) -> ChampionPointer | None:
        response = self._db.get_item(
            TableName=self._table, Key=dynamo_item(champion_key(self._stack)), ConsistentRead=True
        )
        item = response.get("Item")
        if not item:
            return None
        data = plain_item(item)
        return ChampionPointer(
            model_name=data["modelName"],
            model_data_url=data["modelDataUrl"],
            endpoint_config_name=data.get("endpointConfigName"),
            run_id=data["runId"],
            feature_count=data.get("featureCount"),
            objective=data.get("objective"),
            model_package_arn=data.get("modelPackageArn"),
            data_window=DataWindow.from_dict(data.get("dataWindow")),
        )

    def set_champion(self, champion: ChampionPointer, promoted_at: str) -> None:
        self._db.put_item(
            TableName=self._table,
            Item=dynamo_item(
                {**champion_key(self._stack), **champion.to_dict(), "promotedAt": promoted_at}
            ),
        )

    # --- rejected challengers in a row ---------------------------------------------------------
    def rejection_streak(self, champion_model_name: str) -> int:
        """Incremental runs rejected in a row against this champion (0 for another champion)."""
        response = self._db.get_item(
            TableName=self._table, Key=dynamo_item(rejections_key(self._stack)), ConsistentRead=True
        )
        item = plain_item(response["Item"]) if "Item" in response else {}
        if item.get("championModelName") != champion_model_name:
            return 0
        return len(item.get("runIds") or ())

    def count_rejection(self, champion_model_name: str, run_id: str) -> None:
        """Add a rejected incremental run to the streak; a retry adds the same run id again."""
        key = dynamo_item(rejections_key(self._stack))
        try:
            self._db.update_item(
                TableName=self._table,
                Key=key,
                UpdateExpression="ADD runIds :run",
                ConditionExpression="championModelName = :champion",
                ExpressionAttributeValues={
                    ":run": {"SS": [run_id]},
                    ":champion": {"S": champion_model_name},
                },
            )
        except ClientError as error:
            if not is_condition_failure(error):
                raise
            # No streak yet, or another champion's: this run starts one.
            self._db.put_item(
                TableName=self._table,
                Item={
                    **key,
                    "championModelName": {"S": champion_model_name},
                    "runIds": {"SS": [run_id]},
                },
            )

    def reset_rejections(self) -> None:
        self._db.delete_item(TableName=self._table, Key=dynamo_item(rejections_key(self._stack)))

    # --- owned resources ----------------------------------------------------------------------
    def register_resources(
        self,
        run_id: str,
        model_name: str,
        endpoint_config_name: str | None,
        created_at: str,
        promoted: bool,
        model_package_arn: str | None = None,
    ) -> None:
        """Put a run's model/config (and the package it was registered as) into the index.

        Cleanup keeps the models of the newest approved packages as rollback targets: the package
        ARN is how it finds their index entries.
        """
        self.finish(
            run_id,
            {
                "resourcesOwner": self._stack,
                "resourcesCreatedAt": created_at,
                "resourceModelName": model_name,
                "resourceEndpointConfigName": endpoint_config_name,
                "resourcesPromoted": promoted,
                "resourceModelPackageArn": model_package_arn,
            },
        )

    def owned_resources(self) -> list[OwnedResources]:
        """Every run whose resources may still exist, newest first (paginated query)."""
        found: list[OwnedResources] = []
        kwargs: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": RESOURCES_INDEX,
            "KeyConditionExpression": "resourcesOwner = :owner",
            "ExpressionAttributeValues": {":owner": {"S": self._stack}},
            "ScanIndexForward": False,
        }
        while True:
            page = self._db.query(**kwargs)
            for raw in page.get("Items", []):
                item = plain_item(raw)
                found.append(
                    OwnedResources(
                        run_id=item["runId"],
                        model_name=item["resourceModelName"],
                        endpoint_config_name=item.get("resourceEndpointConfigName"),
                        created_at=item["resourcesCreatedAt"],
                        promoted=bool(item.get("resourcesPromoted", False)),
                        # The index projects the whole run record: a run indexed before the
                        # package was stored here still has EvaluateModels' modelPackageArn.
                        model_package_arn=item.get("resourceModelPackageArn")
                        or item.get("modelPackageArn"),
                    )
                )
            if "LastEvaluatedKey" not in page:
                return found
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]

    def forget_resources(self, run_id: str) -> None:
        """Drop a run from the resources index once its model/config are gone."""
        self._db.update_item(
            TableName=self._table,
            Key=dynamo_item(run_key(run_id)),
            UpdateExpression=(
                "REMOVE resourcesOwner, resourcesCreatedAt, resourceModelName, "
                "resourceEndpointConfigName, resourcesPromoted, resourceModelPackageArn"
            ),
        )
