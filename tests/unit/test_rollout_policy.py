"""The DeploymentConfig every endpoint update carries, from the stack's rollout parameters."""

from __future__ import annotations

import pytest

from refit.config import ConfigError, Settings
from refit.rollout import RolloutPolicy
from tests.unit.moto_stack import SETTINGS_ENV


def test_linear_shifts_in_steps_and_names_the_rollback_alarms() -> None:
    # Given a linear rollout of 25 % steps, 60 s apart, 120 s of baking, two alarms
    policy = RolloutPolicy("Linear", 25, 60, 120, ("stack-endpoint-5xx", "stack-endpoint-latency"))
    # Then the update shifts traffic 4 times (3 waits) and rolls back on either alarm
    config = policy.deployment_config()
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "LINEAR",
        "WaitIntervalInSeconds": 60,
        "LinearStepSize": {"Type": "CAPACITY_PERCENT", "Value": 25},
    }
    assert config["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 120
    assert config["AutoRollbackConfiguration"] == {
        "Alarms": [{"AlarmName": "stack-endpoint-5xx"}, {"AlarmName": "stack-endpoint-latency"}]
    }
    # And WaitForRollout sleeps through the 3 waits and the bake
    assert policy.shifting_seconds == 3 * 60 + 120


def test_all_at_once_bakes_and_still_rolls_back() -> None:
    policy = RolloutPolicy("AllAtOnce", 10, 300, 600, ("a",))
    config = policy.deployment_config()
    # SageMaker requires WaitIntervalInSeconds for every type
    assert config["BlueGreenUpdatePolicy"]["TrafficRoutingConfiguration"] == {
        "Type": "ALL_AT_ONCE",
        "WaitIntervalInSeconds": 300,
    }
    assert config["BlueGreenUpdatePolicy"]["TerminationWaitInSeconds"] == 600
    assert config["AutoRollbackConfiguration"] == {"Alarms": [{"AlarmName": "a"}]}
    assert policy.shifting_seconds == 600


@pytest.mark.parametrize(
    ("wait", "bake", "timeout"),
    [(0, 0, 1800), (600, 600, 4800), (7200, 3600, 28800)],
)
def test_execution_timeout_stays_within_sagemaker_bounds(
    wait: int, bake: int, timeout: int
) -> None:
    policy = RolloutPolicy("Linear", 20, wait, bake)
    blue_green = policy.deployment_config()["BlueGreenUpdatePolicy"]
    assert blue_green["MaximumExecutionTimeoutInSeconds"] == timeout
    assert "AutoRollbackConfiguration" not in policy.deployment_config()


def test_settings_read_the_rollout_parameters() -> None:
    env = {
        **SETTINGS_ENV,
        "ROLLOUT_MODE": "Linear",
        "ROLLOUT_STEP_PERCENT": "50",
        "ROLLOUT_WAIT_SECONDS": "5",
        "ROLLOUT_BAKE_SECONDS": "7",
        "ROLLBACK_ALARMS": "x-5xx, x-latency",
    }
    assert Settings.from_env(env).rollout == RolloutPolicy(
        "Linear", 50, 5, 7, ("x-5xx", "x-latency")
    )


@pytest.mark.parametrize(
    ("name", "value"),
    [("ROLLOUT_MODE", "Blue"), ("ROLLOUT_STEP_PERCENT", "0"), ("ROLLOUT_STEP_PERCENT", "51")],
)
def test_bad_rollout_parameters_fail_at_cold_start(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_env({**SETTINGS_ENV, name: value})


def test_linear_steps_below_ten_percent_are_refused() -> None:
    env = {**SETTINGS_ENV, "ROLLOUT_MODE": "Linear", "ROLLOUT_STEP_PERCENT": "5"}
    with pytest.raises(ConfigError, match="10-50 for linear steps"):
        Settings.from_env(env)
