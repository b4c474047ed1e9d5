"""Model Registry packages put straight into moto's backend, for tests that need thousands.

Through boto3, 5,000 CreateModelPackage calls take about 20 s in moto (a minute over a local
cloud's HTTP); the backend's own ``create_model_package``, which moto's handler calls, about 2 s.
Used in-process (unit tests) and against a local cloud (its moto server runs in the test's
process).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from moto.sagemaker.models import sagemaker_backends


def insert_model_packages(
    account: str, region: str, requests: Iterable[Mapping[str, Any]], status: str
) -> None:
    """One package per CreateModelPackage-shaped ``request``, approval status ``status``."""
    backend = sagemaker_backends[account][region]
    for request in requests:
        backend.create_model_package(
            model_package_name=None,
            model_package_group_name=request["ModelPackageGroupName"],
            model_package_description=request.get("ModelPackageDescription"),
            inference_specification=request["InferenceSpecification"],
            validation_specification=None,
            source_algorithm_specification=None,
            certify_for_marketplace=False,
            tags=None,
            model_approval_status=status,
            metadata_properties=None,
            model_metrics=None,
            client_token=request.get("ClientToken"),
            customer_metadata_properties=request.get("CustomerMetadataProperties"),
            drift_check_baselines=None,
            domain=None,
            task=None,
            sample_payload_url=None,
            additional_inference_specifications=None,
        )
