"""refit.record_run.cost: the price table and the arithmetic, on a small table of round numbers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from refit.record_run.cost import (
    EndpointRollout,
    Fleet,
    PriceTable,
    TrainingJobUsage,
    TransformUsage,
    UnknownPrice,
    Window,
    format_usd,
    parse_time,
    run_cost,
)

TABLE = PriceTable.from_document(
    {
        "source": "https://aws.amazon.com/sagemaker/pricing/",
        "retrievedOn": "2026-11-28",
        "currency": "USD",
        "typicalSpotDiscount": 0.7,
        "baseRegion": "us-east-1",
        "onDemandUSDPerHour": {"ml.m5.xlarge": 0.36, "ml.m5.large": 0.18},
        "regions": {
            "us-east-1": {"factor": 1.0, "basis": "list"},
            "eu-west-1": {"factor": 1.5, "basis": "estimate"},
            "ap-south-1": {
                "factor": 2.0,
                "basis": "estimate",
                "onDemandUSDPerHour": {"ml.m5.large": 0.1},
                "typicalSpotDiscount": 0.5,
            },
        },
        "unpriced": {"cn-north-1": "priced in CNY"},
    }
)
XLARGE = Fleet("ml.m5.xlarge", 2)
LARGE = Fleet("ml.m5.large", 1)
T0 = datetime(2026, 11, 28, 11, 0, tzinfo=UTC)


def _spot_job(training: int | None = 3600, billable: int | None = 1080) -> TrainingJobUsage:
    return TrainingJobUsage("job-1", XLARGE, training, billable, managed_spot=True)


def _window(seconds: int) -> Window:
    return Window(T0, datetime.fromtimestamp(T0.timestamp() + seconds, tz=UTC))


def _cost(**kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("region", "us-east-1")
    kwargs.setdefault("model", "refit-endpoint")
    kwargs.setdefault("jobs", [_spot_job()])
    return run_cost(table=TABLE, **kwargs)


# --- the table --------------------------------------------------------------------------------
def test_prices_are_list_prices_in_the_base_region_and_factored_elsewhere() -> None:
    assert TABLE.price("us-east-1", "ml.m5.xlarge").usd_per_hour == 0.36
    assert TABLE.price("us-east-1", "ml.m5.xlarge").basis == "list"
    eu = TABLE.price("eu-west-1", "ml.m5.xlarge")
    assert (eu.usd_per_hour, eu.basis, eu.spot_discount) == (0.54, "estimate: us-east-1 × 1.5", 0.7)
    # A region's own price wins over the factor, and so does its own discount
    ap = TABLE.price("ap-south-1", "ml.m5.large")
    assert (ap.usd_per_hour, ap.basis, ap.spot_discount) == (0.1, "list", 0.5)
    assert TABLE.price("ap-south-1", "ml.m5.xlarge").usd_per_hour == 0.72


@pytest.mark.parametrize(
    ("region", "instance_type", "reason"),
    [
        ("cn-north-1", "ml.m5.xlarge", "no prices for region cn-north-1: priced in CNY"),
        ("xx-nowhere-1", "ml.m5.xlarge", "no prices for region xx-nowhere-1: not in the price"),
        ("us-east-1", "ml.trn9.huge", "no price for ml.trn9.huge in us-east-1"),
    ],
)
def test_unknown_prices_say_why(region: str, instance_type: str, reason: str) -> None:
    with pytest.raises(UnknownPrice) as unknown:
        TABLE.price(region, instance_type)
    assert unknown.value.reason.startswith(reason)


def test_the_bundled_table_prices_the_template_defaults() -> None:
    table = PriceTable.load()
    assert table.source.startswith("https://aws.amazon.com/sagemaker/pricing")
    assert table.price("us-east-1", "ml.m5.xlarge").usd_per_hour > 0
    assert table.price("eu-west-1", "ml.m5.large").usd_per_hour > 0


# --- training ---------------------------------------------------------------------------------
def test_spot_training_costs_billable_seconds_at_the_on_demand_rate() -> None:
    # Given a 2-instance spot job that trained 1 h and was billed 18 min (70 % saved)
    # When it is priced
    cost = _cost()
    training = cost["training"]
    [job] = training["jobs"]
    # Then billable seconds × instances × on-demand $/h is the cost: 1080 × 2 × 0.36 / 3600
    assert job["costUSD"] == training["costUSD"] == 0.216
    # And the on-demand equivalent is the training time at the same rate: 3600 × 2 × 0.36 / 3600
    assert job["onDemandCostUSD"] == 0.72
    assert job["savingsUSD"] == training["savingsUSD"] == 0.504
    assert job["spotSavingsPercent"] == 70.0
    assert (job["usdPerHour"], job["priceBasis"], job["capacity"]) == (0.36, "list", "spot")
    # And the typical discount is reported, never applied on top of the billable time
    assert training["typicalSpotDiscount"] == 0.7
    assert "typicalSpotCostUSD" not in job
    assert (training["instanceType"], training["instanceCount"]) == ("ml.m5.xlarge", 2)
    assert cost["totalUSD"] == 0.216
    assert "unpriced" not in cost
    assert (cost["region"], cost["model"], cost["currency"]) == (
        "us-east-1",
        "refit-endpoint",
        "USD",
    )
    assert cost["priceSource"] == TABLE.source and cost["pricesRetrievedOn"] == "2026-11-28"


def test_on_demand_training_saves_nothing_and_shows_what_spot_typically_costs() -> None:
    job = TrainingJobUsage("job-1", XLARGE, 1800, 1800, managed_spot=False)
    [block] = _cost(jobs=[job])["training"]["jobs"]
    assert (block["costUSD"], block["onDemandCostUSD"], block["savingsUSD"]) == (0.36, 0.36, 0.0)
    assert block["spotSavingsPercent"] == 0.0
    assert block["typicalSpotCostUSD"] == 0.108  # 0.36 × (1 - 0.7)


def test_a_spot_attempt_before_the_on_demand_retry_is_paid_too() -> None:
    # Given a spot job that billed 10 min before capacity ran out, then the on-demand retry
    spot = TrainingJobUsage("job-1", XLARGE, 900, 600, managed_spot=True)
    on_demand = TrainingJobUsage("job-1-od", XLARGE, 1200, 1200, managed_spot=False)
    # When both are priced
    cost = _cost(jobs=[spot, on_demand])
    # Then the run paid for both: (600 + 1200) × 2 × 0.36 / 3600
    assert [j["jobName"] for j in cost["training"]["jobs"]] == ["job-1", "job-1-od"]
    assert cost["training"]["costUSD"] == cost["totalUSD"] == 0.36
    assert (cost["training"]["trainingSeconds"], cost["training"]["billableSeconds"]) == (
        2100,
        1800,
    )


def test_regional_estimates_are_priced_and_labelled() -> None:
    cost = _cost(region="eu-west-1")
    [job] = cost["training"]["jobs"]
    assert job["usdPerHour"] == 0.54 and job["priceBasis"] == "estimate: us-east-1 × 1.5"
    assert cost["totalUSD"] == 0.324  # 1080 × 2 × 0.54 / 3600


# --- unknowns ---------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "reason"),
    [
        ({"region": "cn-north-1"}, "training job job-1: no prices for region cn-north-1"),
        ({"jobs": [_spot_job(billable=None)]}, "training job job-1: billable seconds unknown"),
        (
            {"jobs": [TrainingJobUsage("job-1", Fleet("ml.zz.big", 1), 10, 10, True)]},
            "training job job-1: no price for ml.zz.big in us-east-1",
        ),
        (
            {"jobs": [TrainingJobUsage("job-1", Fleet(None, None), 10, 10, True)]},
            "training job job-1: instance type or count unknown",
        ),
        ({"unknown_usage": ["training job x may have run"]}, "training job x may have run"),
    ],
)
def test_an_unknown_price_or_usage_makes_the_total_null_with_the_reason(
    kwargs: dict[str, Any], reason: str
) -> None:
    # When something cannot be priced
    cost = _cost(**kwargs)
    # Then the total is null, the reason is recorded, and nothing raised
    assert cost["totalUSD"] is None
    assert any(r.startswith(reason) for r in cost["unpriced"]), cost["unpriced"]


def test_a_run_that_trained_nothing_cost_nothing() -> None:
    cost = _cost(jobs=[])
    assert cost["totalUSD"] == 0.0
    assert "training" not in cost and "unpriced" not in cost


# --- endpoint rollout and batch transform --------------------------------------------------------
def test_a_blue_green_update_adds_the_new_fleet_for_the_rollout() -> None:
    # Given an update that ran both fleets for 10 minutes, 3 new instances
    rollout = EndpointRollout("update", Fleet("ml.m5.large", 3), _window(600))
    # When priced
    cost = _cost(rollout=rollout)
    block = cost["endpointRollout"]
    # Then 3 × 600 s are the added instance-hours: 0.5 h × 0.18 $/h
    assert block["seconds"] == 600.0
    assert block["addedInstanceHours"] == 0.5
    assert block["costUSD"] == 0.09
    assert block["endpointUSDPerHour"] == 0.54
    assert (block["startedAt"], block["endedAt"]) == (
        "2026-11-28T11:00:00.000Z",
        "2026-11-28T11:10:00.000Z",
    )
    assert cost["totalUSD"] == 0.306  # 0.216 training + 0.09


def test_a_first_endpoint_adds_no_rollout_hours_but_reports_its_standing_cost() -> None:
    cost = _cost(rollout=EndpointRollout("create", LARGE, _window(300)))
    block = cost["endpointRollout"]
    assert (block["addedInstanceHours"], block["costUSD"]) == (0.0, 0.0)
    assert block["endpointUSDPerHour"] == 0.18
    assert cost["totalUSD"] == 0.216


def test_an_update_without_timestamps_is_unpriced() -> None:
    cost = _cost(rollout=EndpointRollout("update", LARGE, Window(T0, None)))
    assert cost["endpointRollout"]["costUSD"] is None
    assert cost["totalUSD"] is None
    assert cost["unpriced"] == ["endpoint update: rollout start or end time not recorded"]


def test_batch_transform_costs_its_instance_hours() -> None:
    transform = TransformUsage("job-1", Fleet("ml.m5.large", 2), _window(900))
    block = _cost(transform=transform)["transform"]
    assert (block["instanceHours"], block["costUSD"]) == (0.5, 0.09)


def test_an_unpriced_transform_still_reports_its_instance_hours() -> None:
    transform = TransformUsage("job-1", Fleet("ml.zz.big", 2), _window(900))
    cost = _cost(transform=transform)
    assert cost["transform"]["instanceHours"] == 0.5
    assert cost["transform"]["costUSD"] is None and cost["totalUSD"] is None


# --- helpers ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "value",
    [
        "2026-11-28T11:00:00Z",
        "2026-11-28T11:00:00.000Z",
        "2026-11-28T11:00:00+00:00",
        "2026-11-28T11:00:00",
        T0.timestamp(),
        int(T0.timestamp() * 1000),
    ],
)
def test_times_come_as_iso_strings_or_epoch_numbers(value: Any) -> None:
    assert parse_time(value) == T0


@pytest.mark.parametrize("value", [None, "", "yesterday", True, [], float("inf")])
def test_unreadable_times_are_unknown(value: Any) -> None:
    assert parse_time(value) is None


def test_a_window_that_ends_before_it_starts_is_unknown() -> None:
    assert Window(T0, datetime(2026, 11, 28, 10, 0, tzinfo=UTC)).seconds is None


def test_format_usd() -> None:
    assert format_usd(0.000128) == "$0.0001"
    assert format_usd(1234.5) == "$1,234.5000"
    assert format_usd(None) == format_usd("x") == "?"
