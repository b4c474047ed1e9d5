"""Test-wide safety: no test may reach AWS. Fake credentials, a fixed region, Powertools quiet."""

from __future__ import annotations

import os

# Set before any boto3 client exists: a test that forgot moto fails instead of calling AWS.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "POWERTOOLS_TRACE_DISABLED": "true",
        "POWERTOOLS_METRICS_NAMESPACE": "refit-tests",
        "POWERTOOLS_SERVICE_NAME": "refit",
        "POWERTOOLS_DEV": "false",
    }
)
for _var in ("AWS_PROFILE", "AWS_ENDPOINT_URL"):
    os.environ.pop(_var, None)
