"""How an endpoint update reaches traffic: SageMaker blue/green with alarm-driven auto-rollback.

Every UpdateEndpoint the workflow makes carries a ``DeploymentConfig`` built here from the
stack's parameters (``RolloutMode``, ``RolloutStepPercent``, ``RolloutWaitSeconds``,
``RolloutBakeSeconds``) and the rollback alarms the stack creates (``ROLLBACK_ALARMS``). SageMaker
shifts traffic to the new fleet (all at once, a canary first, or in linear steps), keeps the old
fleet for the baking period, and rolls back by itself when an alarm goes off: the endpoint is
then ``InService`` on the old config, which the workflow's VerifyEndpointConfig notices (the run
is recorded ``ROLLED_BACK``).

The workflow's WaitForRollout sleeps through :attr:`RolloutPolicy.shifting_seconds` once; the
DescribeEndpoint polls after it (EndpointMaxPolls) only cover the new fleet's provisioning.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

RolloutMode = Literal["AllAtOnce", "Canary", "Linear"]
ROLLOUT_MODES: tuple[RolloutMode, ...] = ("AllAtOnce", "Canary", "Linear")
_TRAFFIC_ROUTING_TYPES: dict[RolloutMode, str] = {
    "AllAtOnce": "ALL_AT_ONCE",
    "Canary": "CANARY",
    "Linear": "LINEAR",
}
# SageMaker's bounds for MaximumExecutionTimeoutInSeconds.
MIN_EXECUTION_TIMEOUT_SECONDS = 600
MAX_EXECUTION_TIMEOUT_SECONDS = 28800
# Time for the new fleet to come up before traffic shifts (added to the timeout).
_PROVISIONING_ALLOWANCE_SECONDS = 1800


@dataclass(frozen=True)
class RolloutPolicy:
    mode: RolloutMode = "Canary"
    step_percent: int = 10
    wait_seconds: int = 300
    bake_seconds: int = 300
    alarm_names: tuple[str, ...] = ()

    @property
    def shifts(self) -> int:
        """Traffic shifts after the first one: each waits ``wait_seconds`` before it."""
        if self.mode == "Canary":
            return 1 if self.step_percent < 100 else 0
        if self.mode == "Linear":
            return max(math.ceil(100 / self.step_percent) - 1, 0)
        return 0

    @property
    def shifting_seconds(self) -> int:
        """From the first traffic shift to the end of the baking period."""
        return self.shifts * self.wait_seconds + self.bake_seconds

    def deployment_config(self) -> dict[str, Any]:
        """UpdateEndpoint's ``DeploymentConfig``."""
        # WaitIntervalInSeconds is required for every type (SageMaker refuses the update
        # without it), even ALL_AT_ONCE, which has no step to wait between.
        routing: dict[str, Any] = {
            "Type": _TRAFFIC_ROUTING_TYPES[self.mode],
            "WaitIntervalInSeconds": self.wait_seconds,
        }
        size = {"Type": "CAPACITY_PERCENT", "Value": self.step_percent}
        if self.mode == "Canary":
            routing["CanarySize"] = size
        elif self.mode == "Linear":
            routing["LinearStepSize"] = size
        timeout = min(
            max(
                self.shifting_seconds + _PROVISIONING_ALLOWANCE_SECONDS,
                MIN_EXECUTION_TIMEOUT_SECONDS,
            ),
            MAX_EXECUTION_TIMEOUT_SECONDS,
        )
        config: dict[str, Any] = {
            "BlueGreenUpdatePolicy": {
                "TrafficRoutingConfiguration": routing,
                "TerminationWaitInSeconds": self.bake_seconds,
                "MaximumExecutionTimeoutInSeconds": timeout,
            }
        }
        if self.alarm_names:
            config["AutoRollbackConfiguration"] = {
                "Alarms": [{"AlarmName": name} for name in self.alarm_names]
            }
        return config
