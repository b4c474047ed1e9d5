"""UpdateEndpoint's blue/green ``DeploymentConfig``: validation, the traffic plan, the split.

SageMaker's shape::

    {"BlueGreenUpdatePolicy": {
        "TrafficRoutingConfiguration": {
            "Type": "ALL_AT_ONCE" | "CANARY" | "LINEAR", "WaitIntervalInSeconds": int,
            "CanarySize": {"Type": "INSTANCE_COUNT" | "CAPACITY_PERCENT", "Value": int},
            "LinearStepSize": {"Type": "INSTANCE_COUNT" | "CAPACITY_PERCENT", "Value": int}},
        "TerminationWaitInSeconds": int, "MaximumExecutionTimeoutInSeconds": int},
     "AutoRollbackConfiguration": {"Alarms": [{"AlarmName": str}, ...]}}

:func:`plan` checks it as SageMaker does at UpdateEndpoint time (ValidationError, nothing
changes) and turns it into a :class:`RolloutPlan`: the green fleet's traffic share at each step
(ALL_AT_ONCE: 100 %; CANARY: the canary, then 100 %; LINEAR: +step until 100 %), each step but
the last held ``WaitIntervalInSeconds``, then the baking period (``TerminationWaitInSeconds``)
at 100 %. No DeploymentConfig is the runtime's historical behaviour: all at once, no baking, no
alarms.

Sizes: ``CAPACITY_PERCENT`` is a percentage; ``INSTANCE_COUNT`` is ``Value`` / the new config's
total ``InitialInstanceCount``. As on AWS, a canary is at most 50 % and a linear step 10-50 %
of the new fleet. Not enforced (so tests can use seconds): AWS's minimum of 600 s for
``MaximumExecutionTimeoutInSeconds``. ``RollingUpdatePolicy`` is not emulated and is rejected.

:class:`TrafficSplit` routes requests between the blue and green deployments
deterministically: error diffusion, so that of any ``k`` consecutive un-targeted requests at a
share ``p`` (counted from the moment ``p`` was set), ``round(k·p)`` go to green. Requests with a
TargetVariant use their own counter (they do not disturb the un-targeted split) and fall back
to the other fleet when the picked one has no such variant.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

from .errors import ValidationError
from .model_server import Deployment, Route

AlarmState = Callable[[str], "str | None"]
"""``alarm_state(alarm_name)``: the CloudWatch alarm's ``StateValue`` (``OK``, ``ALARM``,
``INSUFFICIENT_DATA``), or None when no such alarm exists."""

ALARM = "ALARM"
ALL_AT_ONCE = "ALL_AT_ONCE"
CANARY = "CANARY"
LINEAR = "LINEAR"
ROUTING_TYPES = (ALL_AT_ONCE, CANARY, LINEAR)
INSTANCE_COUNT = "INSTANCE_COUNT"
CAPACITY_PERCENT = "CAPACITY_PERCENT"
MAX_WAIT_SECONDS = 3600
MAX_ALARMS = 10


@dataclass(frozen=True)
class RolloutPlan:
    """What an update does once the green fleet is loaded."""

    routing_type: str = ALL_AT_ONCE
    shares: tuple[float, ...] = (1.0,)  # the green fleet's traffic share at each step
    wait_seconds: float = 0.0  # each step but the last is held this long
    baking_seconds: float = 0.0  # at 100 % green, blue still loaded
    timeout_seconds: float | None = None  # from UpdateEndpoint to the end of baking
    alarms: tuple[str, ...] = ()


def plan(
    deployment_config: Mapping[str, Any] | None,
    green_instance_count: int,
    alarm_state: AlarmState | None,
) -> RolloutPlan:
    """Validate ``deployment_config`` (None: all at once) for a new fleet of
    ``green_instance_count`` instances. Raises :class:`ValidationError`."""
    if deployment_config is None:
        return RolloutPlan()
    config = _mapping(deployment_config, "DeploymentConfig")
    unknown = set(config) - {
        "BlueGreenUpdatePolicy",
        "AutoRollbackConfiguration",
        "RollingUpdatePolicy",
    }
    if unknown:
        raise ValidationError(f"DeploymentConfig: unknown field(s) {sorted(unknown)}")
    if config.get("RollingUpdatePolicy") is not None:
        raise ValidationError(
            "DeploymentConfig.RollingUpdatePolicy is not emulated by the local SageMaker "
            "runtime: use BlueGreenUpdatePolicy"
        )
    alarms = _alarms(config.get("AutoRollbackConfiguration"), alarm_state)
    policy = config.get("BlueGreenUpdatePolicy")
    if policy is None:
        return RolloutPlan(alarms=alarms)
    policy = _mapping(policy, "BlueGreenUpdatePolicy")
    where = "BlueGreenUpdatePolicy.TrafficRoutingConfiguration"
    if policy.get("TrafficRoutingConfiguration") is None:
        raise ValidationError(f"{where} is required")
    routing = _mapping(policy["TrafficRoutingConfiguration"], where)
    routing_type = routing.get("Type")
    if routing_type not in ROUTING_TYPES:
        raise ValidationError(
            f"{where}.Type {routing_type!r} failed to satisfy constraint: Member must satisfy "
            f"enum value set: [{', '.join(ROUTING_TYPES)}]"
        )
    wait = _integer(routing.get("WaitIntervalInSeconds"), f"{where}.WaitIntervalInSeconds")
    if wait > MAX_WAIT_SECONDS:
        raise ValidationError(f"{where}.WaitIntervalInSeconds must be at most {MAX_WAIT_SECONDS}")
    baking = _integer(
        policy.get("TerminationWaitInSeconds", 0), "BlueGreenUpdatePolicy.TerminationWaitInSeconds"
    )
    if baking > MAX_WAIT_SECONDS:
        raise ValidationError(
            f"BlueGreenUpdatePolicy.TerminationWaitInSeconds must be at most {MAX_WAIT_SECONDS}"
        )
    timeout: float | None = None
    if policy.get("MaximumExecutionTimeoutInSeconds") is not None:
        timeout = _integer(
            policy["MaximumExecutionTimeoutInSeconds"],
            "BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds",
        )
        if timeout < 1:
            raise ValidationError(
                "BlueGreenUpdatePolicy.MaximumExecutionTimeoutInSeconds must be positive"
            )
    shares: tuple[float, ...] = (1.0,)
    if routing_type == CANARY:
        canary = _size(routing, "CanarySize", where, green_instance_count)
        if canary > Fraction(1, 2):
            raise ValidationError(
                f"{where}.CanarySize must be at most 50% of the new fleet's instance count "
                f"({green_instance_count})"
            )
        shares = (float(canary), 1.0)
    elif routing_type == LINEAR:
        step = _size(routing, "LinearStepSize", where, green_instance_count)
        if not Fraction(1, 10) <= step <= Fraction(1, 2):
            raise ValidationError(
                f"{where}.LinearStepSize must be 10-50% of the new fleet's instance count "
                f"({green_instance_count})"
            )
        count = -(-1 // step)  # ceil(1 / step), exactly
        shares = tuple(float(min(step * k, Fraction(1))) for k in range(1, int(count) + 1))
    return RolloutPlan(
        routing_type=str(routing_type),
        shares=shares,
        wait_seconds=float(wait),
        baking_seconds=float(baking),
        timeout_seconds=None if timeout is None else float(timeout),
        alarms=alarms,
    )


def alarms_in_alarm(alarms: Sequence[str], alarm_state: AlarmState | None) -> list[str]:
    """The named alarms whose state is ``ALARM`` now."""
    if alarm_state is None:
        return []
    return [name for name in alarms if alarm_state(name) == ALARM]


def _mapping(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ValidationError(f"{where} must be a structure")
    return value


def _integer(value: Any, where: str) -> int:
    if value is None:
        raise ValidationError(f"{where} is required")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValidationError(f"{where} must be a non-negative integer, got {value!r}")
    return value


def _size(routing: Mapping[str, Any], key: str, where: str, instances: int) -> Fraction:
    routing_type = routing.get("Type")
    if routing.get(key) is None:
        raise ValidationError(f"{where}.{key} is required when Type is {routing_type}")
    size = _mapping(routing[key], f"{where}.{key}")
    size_type = size.get("Type")
    value = _integer(size.get("Value"), f"{where}.{key}.Value")
    if value < 1:
        raise ValidationError(f"{where}.{key}.Value must be at least 1")
    if size_type == CAPACITY_PERCENT:
        if value > 100:
            raise ValidationError(f"{where}.{key}.Value must be at most 100 (percent)")
        return Fraction(value, 100)
    if size_type == INSTANCE_COUNT:
        return Fraction(value, max(instances, 1))
    raise ValidationError(
        f"{where}.{key}.Type {size_type!r} failed to satisfy constraint: Member must satisfy "
        f"enum value set: [{INSTANCE_COUNT}, {CAPACITY_PERCENT}]"
    )


def _alarms(value: Any, alarm_state: AlarmState | None) -> tuple[str, ...]:
    if value is None:
        return ()
    config = _mapping(value, "AutoRollbackConfiguration")
    alarms = config.get("Alarms") or []
    if not isinstance(alarms, list) or len(alarms) > MAX_ALARMS:
        raise ValidationError(
            f"AutoRollbackConfiguration.Alarms must be a list of at most {MAX_ALARMS} alarms"
        )
    names: list[str] = []
    for alarm in alarms:
        name = alarm.get("AlarmName") if isinstance(alarm, Mapping) else None
        if not isinstance(name, str) or not name:
            raise ValidationError("AutoRollbackConfiguration.Alarms: every alarm needs AlarmName")
        names.append(name)
    missing = [name for name in names if alarm_state is None or alarm_state(name) is None]
    if missing:
        raise ValidationError(
            f"AutoRollbackConfiguration: CloudWatch alarm(s) {', '.join(missing)} do not exist"
        )
    return tuple(names)


class TrafficSplit:
    """Routes between ``blue`` and ``green`` with the green share set by :meth:`set_share`."""

    def __init__(self, blue: Deployment, green: Deployment, share: float) -> None:
        self.blue = blue
        self.green = green
        self._lock = threading.Lock()
        self._share = share
        self._untargeted = 0.5
        self._targeted = 0.5

    @property
    def share(self) -> float:
        return self._share

    def set_share(self, share: float) -> None:
        """Change the green share; the counters restart so that the next ``k`` un-targeted
        requests send ``round(k·share)`` to green."""
        with self._lock:
            self._share = share
            self._untargeted = 0.5
            self._targeted = 0.5

    def route(self, target_variant: str | None) -> Route | None:
        with self._lock:
            if target_variant:
                self._targeted += self._share
                to_green = self._targeted >= 1.0
                if to_green:
                    self._targeted -= 1.0
            else:
                self._untargeted += self._share
                to_green = self._untargeted >= 1.0
                if to_green:
                    self._untargeted -= 1.0
        first, second = (self.green, self.blue) if to_green else (self.blue, self.green)
        if target_variant:
            return first.route(target_variant) or second.route(target_variant)
        return first.route(None)

    def healthy(self) -> bool:
        return any(model.ping() for d in (self.blue, self.green) for _, _, model in d.variants)
