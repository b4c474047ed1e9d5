"""CloudWatch alarm states for the local SageMaker runtime's endpoint auto-rollback.

UpdateEndpoint's ``DeploymentConfig.AutoRollbackConfiguration`` names CloudWatch alarms; the
runtime (which never imports moto) reads their states through an ``alarm_state(name)``
callable. :func:`alarm_state_reader` builds it over moto's CloudWatch backend in this process
(``cloudwatch_backends[account][region].alarms[name].state_value``), so ``PutMetricAlarm`` and
``SetAlarmState`` sent to the moto server are what the rollout sees. Nothing is patched: the
declarations in :func:`patches` only check, at install time, that moto still has that shape.
"""

from __future__ import annotations

from dataclasses import dataclass

from moto.cloudwatch import models as cloudwatch_models
from moto.core.models import DEFAULT_ACCOUNT_ID

from local_cloud.sagemaker import AlarmState

from ._patching import Patch, Require


def alarm_state_reader(region: str, account_id: str = DEFAULT_ACCOUNT_ID) -> AlarmState:
    """``alarm_state(name)`` → the alarm's ``StateValue`` in moto's CloudWatch of
    ``account_id``/``region``, or None when there is no such alarm."""

    def alarm_state(name: str) -> str | None:
        backend = cloudwatch_models.cloudwatch_backends[account_id][region]
        alarm = backend.alarms.get(name)
        return None if alarm is None else str(alarm.state_value)

    return alarm_state


@dataclass
class RequireAlarmStates(Require):
    """moto's CloudWatch backend keeps its alarms in a dict ``alarms`` (set in ``__init__``)
    and each ``Alarm`` sets ``state_value`` in ``__init__``: what :func:`alarm_state_reader`
    reads. Checked on a fresh backend (not registered in ``cloudwatch_backends``)."""

    def problems(self) -> list[str]:
        problems = super().problems()
        if problems:
            return problems
        try:
            backend = cloudwatch_models.CloudWatchBackend("us-east-1", DEFAULT_ACCOUNT_ID)
        except Exception as error:
            return [f"{self.label}: a CloudWatchBackend cannot be built ({error!r})"]
        if not isinstance(getattr(backend, "alarms", None), dict):
            return [f"{self.label}: CloudWatchBackend instances have no dict 'alarms'"]
        if "state_value" not in cloudwatch_models.Alarm.__init__.__code__.co_names:
            return [f"{self.label}: moto.cloudwatch.models.Alarm.__init__ sets no state_value"]
        return []


def patches() -> list[Patch]:
    backend = cloudwatch_models.CloudWatchBackend
    return [
        Require(cloudwatch_models, "cloudwatch_backends"),
        Require(
            cloudwatch_models.Alarm,
            "update_state",
            ("self", "reason", "reason_data", "state_value"),
        ),
        RequireAlarmStates(backend, "__init__", ("self", "region_name", "account_id")),
    ]
