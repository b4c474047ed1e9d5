"""layers/refit/refit/record_run/prices.json, the price table refit.record_run.cost reads:
well-formed and complete for what template.yaml can deploy."""

from __future__ import annotations

import json
import re
from datetime import date
from typing import Any

import pytest

from refit.record_run.cost import PriceTable
from tests.static.static_helpers import REPO

PRICES_PATH = REPO / "layers" / "refit" / "refit" / "record_run" / "prices.json"
# The regions refit must price (the main US, EU and AP regions).
MAIN_REGIONS = {
    "us-east-1",
    "us-east-2",
    "us-west-1",
    "us-west-2",
    "ca-central-1",
    "eu-west-1",
    "eu-west-2",
    "eu-west-3",
    "eu-central-1",
    "eu-north-1",
    "ap-northeast-1",
    "ap-northeast-2",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-south-1",
}
# Common sizes beyond the template's defaults.
COMMON_TYPES = {
    "ml.m5.large",
    "ml.m5.xlarge",
    "ml.m5.2xlarge",
    "ml.m5.4xlarge",
    "ml.c5.xlarge",
    "ml.c5.2xlarge",
    "ml.g4dn.xlarge",
    "ml.g4dn.2xlarge",
    "ml.p3.2xlarge",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(PRICES_PATH.read_text())
    return data


@pytest.fixture(scope="module")
def table(document: dict[str, Any]) -> PriceTable:
    return PriceTable.from_document(document)


def _instance_types(template: dict[str, Any]) -> dict[str, str]:
    """The instance-type parameters: their default, and the pattern any value must match."""
    params = template["Parameters"]
    names = [n for n in params if n.endswith("InstanceType")]
    assert set(names) == {"TrainingInstanceType", "EndpointInstanceType"}
    return {params[n]["Default"]: params[n]["AllowedPattern"] for n in names}


def test_the_table_says_where_its_prices_come_from(document: dict[str, Any]) -> None:
    assert document["source"] == "https://aws.amazon.com/sagemaker/pricing/"
    retrieved = date.fromisoformat(document["retrievedOn"])
    assert date(2024, 1, 1) <= retrieved <= date.today()
    assert document["currency"] == "USD"
    # And it says how far to trust them
    assert "verify before relying on" in document["note"]


def test_every_mapped_region_is_priced_or_left_out_with_a_reason(
    document: dict[str, Any], template: dict[str, Any]
) -> None:
    # Given the regions the template can deploy to (it has an XGBoost image there)
    mapped = set(template["Mappings"]["XGBoostImageByRegion"])
    priced, unpriced = set(document["regions"]), set(document["unpriced"])
    # Then each is in exactly one list, the left-out ones with a reason, and nothing else is
    assert priced | unpriced == mapped
    assert not priced & unpriced
    assert all(reason.strip() for reason in document["unpriced"].values())
    # And the main US/EU/AP regions are priced
    assert priced >= MAIN_REGIONS


def test_every_template_instance_type_is_priced_in_every_priced_region(
    table: PriceTable, template: dict[str, Any]
) -> None:
    types = _instance_types(template)
    for region in table.regions:
        for instance_type in set(types) | COMMON_TYPES:
            price = table.price(region, instance_type)
            assert 0 < price.usd_per_hour < 100, (region, instance_type)
            assert 0 <= price.spot_discount < 1, (region, instance_type)


def test_prices_are_for_types_the_template_accepts(
    document: dict[str, Any], template: dict[str, Any]
) -> None:
    patterns = set(_instance_types(template).values())
    listed = set(document["onDemandUSDPerHour"])
    for region in document["regions"].values():
        listed |= set(region.get("onDemandUSDPerHour", {}))
    for instance_type in listed:
        assert all(re.fullmatch(p, instance_type) for p in patterns), instance_type


def test_numbers_are_well_formed(document: dict[str, Any]) -> None:
    assert 0 <= document["typicalSpotDiscount"] < 1
    assert document["baseRegion"] in document["regions"]
    assert document["regions"][document["baseRegion"]] == {"factor": 1.0, "basis": "list"}
    assert all(p > 0 for p in document["onDemandUSDPerHour"].values())
    for name, region in document["regions"].items():
        assert set(region) <= {"factor", "basis", "onDemandUSDPerHour", "typicalSpotDiscount"}
        assert region["basis"] in ("list", "estimate"), name
        assert 0.5 <= region["factor"] <= 3, name
        assert 0 <= region.get("typicalSpotDiscount", 0) < 1, name
        assert all(p > 0 for p in region.get("onDemandUSDPerHour", {}).values()), name


def test_the_layer_package_ships_the_table() -> None:
    # refit.record_run.cost reads it with importlib.resources from the refit package (python/refit/
    # in the layer, which the layer Makefile copies whole)
    bundled = PriceTable.load()
    assert bundled.source == json.loads(PRICES_PATH.read_text())["source"]
