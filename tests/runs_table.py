"""template.yaml's RunsTable in moto, for every test folder that needs the runs ledger."""

from __future__ import annotations

from typing import Any


def create_runs_table(dynamodb: Any, name: str) -> None:
    """The RunsTable of template.yaml: pk/sk plus the sparse ResourcesIndex."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
            {"AttributeName": "resourcesOwner", "AttributeType": "S"},
            {"AttributeName": "resourcesCreatedAt", "AttributeType": "S"},
        ],
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ResourcesIndex",
                "KeySchema": [
                    {"AttributeName": "resourcesOwner", "KeyType": "HASH"},
                    {"AttributeName": "resourcesCreatedAt", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
