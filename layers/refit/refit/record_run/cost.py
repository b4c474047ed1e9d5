"""What a run cost, estimated: the price table (``prices.json``) and every piece of cost arithmetic.

Nothing else in refit multiplies seconds by prices. RecordRun builds the usages from the state
document (:mod:`refit.record_run.usage`), this module prices them; the CLI only adds up the
results.

Training cost = ``BillableTimeInSeconds × InstanceCount × on-demand USD/hour / 3600``.
SageMaker reports a managed spot job's savings through its billable time
(savings % = ``1 - Billable / TrainingTime``, docs/aws-facts), so billable seconds at the
on-demand rate *are* the spot cost: applying the table's typical spot discount as well would
count the saving twice. The on-demand equivalent is ``TrainingTimeInSeconds`` at the same rate
and the savings are the difference. The typical discount is only shown for comparison, and for an
on-demand job as what spot would typically have cost.

Endpoint rollout: ``UpdateEndpoint`` is blue/green, so the new fleet runs next to the old one
from the update until the endpoint is back in service; those are the instance-hours the rollout
added (new fleet count × rollout seconds). A first ``CreateEndpoint`` has no old fleet: it adds
none, and its hourly rate is the endpoint's new standing cost. Batch mode pays the transform's
instance-hours instead.

Only the SageMaker compute a run adds is counted (not the endpoint's standing hours between
runs, storage, Lambda, Step Functions, S3 or data transfer). Prices are estimates (see the
table's ``note``). Anything unknown — a region or instance type not
in the table, a job without billable seconds, a rollout without timestamps — prices that part as
``None`` with a reason in ``unpriced``, and the run's ``totalUSD`` is ``None``: never a crash,
never a guess.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

from refit.timestamps import format_utc, parse_utc

PRICES_FILE = "prices.json"
SECONDS_PER_HOUR = 3600
# Micro-dollars: a few seconds of a small instance cost a fraction of a cent.
USD_DIGITS = 6
HOURS_DIGITS = 6
# Epoch numbers above this are milliseconds (Step Functions' .sync outputs), below it seconds.
_EPOCH_MS_THRESHOLD = 10**11


class UnknownPrice(LookupError):
    """The table has no price for this region and instance type; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Price:
    region: str
    instance_type: str
    usd_per_hour: float
    spot_discount: float
    basis: str  # "list", or "estimate: us-east-1 × 1.12"


@dataclass(frozen=True)
class PriceTable:
    """``prices.json``: base-region list prices, per-region factors or prices, and gaps."""

    source: str
    retrieved_on: str
    currency: str
    base_region: str
    base_prices: Mapping[str, float]
    regions: Mapping[str, Mapping[str, Any]]
    unpriced: Mapping[str, str]
    typical_spot_discount: float

    @classmethod
    def from_document(cls, document: Mapping[str, Any]) -> PriceTable:
        return cls(
            source=str(document["source"]),
            retrieved_on=str(document["retrievedOn"]),
            currency=str(document["currency"]),
            base_region=str(document["baseRegion"]),
            base_prices={k: float(v) for k, v in document["onDemandUSDPerHour"].items()},
            regions=dict(document["regions"]),
            unpriced={k: str(v) for k, v in document.get("unpriced", {}).items()},
            typical_spot_discount=float(document["typicalSpotDiscount"]),
        )

    @classmethod
    def load(cls) -> PriceTable:
        return _bundled_table()

    def instance_types(self, region: str) -> frozenset[str]:
        """The types priced in ``region`` (empty if the region is not priced)."""
        entry = self.regions.get(region)
        if entry is None:
            return frozenset()
        return frozenset(self.base_prices) | frozenset(entry.get("onDemandUSDPerHour", {}))

    def price(self, region: str, instance_type: str) -> Price:
        entry = self.regions.get(region)
        if entry is None:
            why = self.unpriced.get(region, "not in the price table")
            raise UnknownPrice(f"no prices for region {region}: {why}")
        discount = float(entry.get("typicalSpotDiscount", self.typical_spot_discount))
        exact = entry.get("onDemandUSDPerHour", {})
        if instance_type in exact:
            return Price(region, instance_type, float(exact[instance_type]), discount, "list")
        base = self.base_prices.get(instance_type)
        if base is None:
            raise UnknownPrice(f"no price for {instance_type} in {region}")
        factor = float(entry.get("factor", 1.0))
        basis = str(entry.get("basis", "estimate"))
        if basis != "list":
            basis = f"estimate: {self.base_region} × {factor:g}"
        return Price(region, instance_type, round(base * factor, 4), discount, basis)

    def provenance(self) -> dict[str, str]:
        return {
            "priceSource": self.source,
            "pricesRetrievedOn": self.retrieved_on,
            "currency": self.currency,
        }


@lru_cache(maxsize=1)
def _bundled_table() -> PriceTable:
    text = resources.files("refit.record_run").joinpath(PRICES_FILE).read_text(encoding="utf-8")
    return PriceTable.from_document(json.loads(text))


# --- what was used ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Fleet:
    instance_type: str | None
    instance_count: int | None


@dataclass(frozen=True)
class Window:
    """A span of time from the state document; either end may be unknown."""

    started_at: datetime | None
    ended_at: datetime | None

    @classmethod
    def parse(cls, started: Any, ended: Any) -> Window:
        return cls(parse_time(started), parse_time(ended))

    @property
    def seconds(self) -> float | None:
        if self.started_at is None or self.ended_at is None:
            return None
        seconds = (self.ended_at - self.started_at).total_seconds()
        return seconds if seconds >= 0 else None


@dataclass(frozen=True)
class TrainingJobUsage:
    job_name: str | None
    fleet: Fleet
    training_seconds: int | None
    billable_seconds: int | None
    managed_spot: bool | None


@dataclass(frozen=True)
class EndpointRollout:
    kind: Literal["create", "update"]
    fleet: Fleet
    window: Window


@dataclass(frozen=True)
class TransformUsage:
    job_name: str | None
    fleet: Fleet
    window: Window


def parse_time(value: Any) -> datetime | None:
    """An ISO 8601 string (``$$.State.EnteredTime``) or epoch seconds/milliseconds (``.sync``)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        seconds = value / 1000 if value > _EPOCH_MS_THRESHOLD else value
        try:
            return datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            return None
    if isinstance(value, str) and value:
        try:
            return parse_utc(value)
        except ValueError:
            return None
    return None


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return format_utc(moment)


# --- arithmetic -------------------------------------------------------------------------------
def spot_savings_percent(
    training_seconds: int | None, billable_seconds: int | None, managed_spot: bool | None
) -> float | None:
    """``(1 - billable / training) * 100`` to one decimal; 0 on demand; None if unknown."""
    if training_seconds is None or billable_seconds is None or training_seconds <= 0:
        return None
    if managed_spot is False:
        return 0.0
    return round((1 - billable_seconds / training_seconds) * 100, 1)


def usd(seconds: float, instance_count: int, usd_per_hour: float) -> float:
    """Instance-seconds at an hourly price."""
    return round(seconds * instance_count * usd_per_hour / SECONDS_PER_HOUR, USD_DIGITS)


def instance_hours(seconds: float, instance_count: int) -> float:
    return round(seconds * instance_count / SECONDS_PER_HOUR, HOURS_DIGITS)


def _fleet_price(table: PriceTable, region: str, fleet: Fleet, what: str) -> Price:
    if not fleet.instance_type or not fleet.instance_count:
        raise UnknownPrice(f"{what}: instance type or count unknown")
    try:
        return table.price(region, fleet.instance_type)
    except UnknownPrice as unknown:
        raise UnknownPrice(f"{what}: {unknown.reason}") from None


def training_job_cost(
    job: TrainingJobUsage, table: PriceTable, region: str
) -> tuple[dict[str, Any], str | None]:
    """One job's cost block, and the reason it could not be priced (else None)."""
    block: dict[str, Any] = {
        "jobName": job.job_name,
        "capacity": "spot" if job.managed_spot else "on-demand",
        "instanceType": job.fleet.instance_type,
        "instanceCount": job.fleet.instance_count,
        "trainingSeconds": job.training_seconds,
        "billableSeconds": job.billable_seconds,
        "spotSavingsPercent": spot_savings_percent(
            job.training_seconds, job.billable_seconds, job.managed_spot
        ),
        "costUSD": None,
    }
    what = f"training job {job.job_name or '?'}"
    try:
        price = _fleet_price(table, region, job.fleet, what)
    except UnknownPrice as unknown:
        return block, unknown.reason
    block.update(usdPerHour=price.usd_per_hour, priceBasis=price.basis)
    if job.billable_seconds is None or job.fleet.instance_count is None:
        return block, f"{what}: billable seconds unknown"
    count = job.fleet.instance_count
    cost = usd(job.billable_seconds, count, price.usd_per_hour)
    # On demand, billable time is the whole bill; with spot, the wall-clock training time is
    # what the same job would have billed on demand.
    on_demand_seconds = job.training_seconds if job.managed_spot else job.billable_seconds
    on_demand = usd(on_demand_seconds or job.billable_seconds, count, price.usd_per_hour)
    block.update(
        costUSD=cost,
        onDemandCostUSD=on_demand,
        savingsUSD=round(max(on_demand - cost, 0.0), USD_DIGITS),
    )
    if not job.managed_spot:
        block["typicalSpotCostUSD"] = round(cost * (1 - price.spot_discount), USD_DIGITS)
    return block, None


def training_cost(
    jobs: Sequence[TrainingJobUsage], table: PriceTable, region: str
) -> tuple[dict[str, Any], list[str]]:
    """Every training job the run paid for (a spot attempt before an on-demand retry, then the
    job whose model it evaluated); the totals are None if any job is unpriced."""
    blocks, reasons = [], []
    for job in jobs:
        block, reason = training_job_cost(job, table, region)
        blocks.append(block)
        if reason:
            reasons.append(reason)
    last = jobs[-1]

    def total(key: str) -> float | None:
        values = [b.get(key) for b in blocks]
        if reasons or any(v is None for v in values):
            return None
        return round(sum(float(v) for v in values if v is not None), USD_DIGITS)

    def seconds(values: list[int | None]) -> int | None:
        return None if any(v is None for v in values) else sum(v for v in values if v)

    return {
        "instanceType": last.fleet.instance_type,
        "instanceCount": last.fleet.instance_count,
        "trainingSeconds": seconds([j.training_seconds for j in jobs]),
        "billableSeconds": seconds([j.billable_seconds for j in jobs]),
        "costUSD": total("costUSD"),
        "onDemandCostUSD": total("onDemandCostUSD"),
        "savingsUSD": total("savingsUSD"),
        "typicalSpotDiscount": table.typical_spot_discount,
        "jobs": blocks,
    }, reasons


def rollout_cost(
    rollout: EndpointRollout, table: PriceTable, region: str
) -> tuple[dict[str, Any], str | None]:
    """The instance-hours a blue/green update ran both fleets, priced; a create adds none."""
    seconds = rollout.window.seconds
    block: dict[str, Any] = {
        "kind": rollout.kind,
        "instanceType": rollout.fleet.instance_type,
        "instanceCount": rollout.fleet.instance_count,
        "startedAt": _iso(rollout.window.started_at),
        "endedAt": _iso(rollout.window.ended_at),
        "seconds": None if seconds is None else round(seconds, 3),
        "addedInstanceHours": None,
        "costUSD": None,
    }
    count = rollout.fleet.instance_count or 0
    if rollout.kind == "create":
        block["addedInstanceHours"] = 0.0
    elif seconds is not None and count:
        block["addedInstanceHours"] = instance_hours(seconds, count)
    try:
        price = _fleet_price(table, region, rollout.fleet, f"endpoint {rollout.kind}")
    except UnknownPrice as unknown:
        return block, unknown.reason
    block.update(
        usdPerHour=price.usd_per_hour,
        priceBasis=price.basis,
        endpointUSDPerHour=round(count * price.usd_per_hour, USD_DIGITS),
    )
    if rollout.kind == "create":
        block["costUSD"] = 0.0
        return block, None
    if seconds is None:
        return block, "endpoint update: rollout start or end time not recorded"
    block["costUSD"] = usd(seconds, count, price.usd_per_hour)
    return block, None


def transform_cost(
    transform: TransformUsage, table: PriceTable, region: str
) -> tuple[dict[str, Any], str | None]:
    """A batch transform's instance-hours (TransformStartTime to TransformEndTime), priced."""
    seconds = transform.window.seconds
    block: dict[str, Any] = {
        "jobName": transform.job_name,
        "instanceType": transform.fleet.instance_type,
        "instanceCount": transform.fleet.instance_count,
        "startedAt": _iso(transform.window.started_at),
        "endedAt": _iso(transform.window.ended_at),
        "seconds": None if seconds is None else round(seconds, 3),
        "instanceHours": None,
        "costUSD": None,
    }
    what = f"transform job {transform.job_name or '?'}"
    count = transform.fleet.instance_count or 0
    if seconds is not None and count:
        block["instanceHours"] = instance_hours(seconds, count)
    try:
        price = _fleet_price(table, region, transform.fleet, what)
    except UnknownPrice as unknown:
        return block, unknown.reason
    block.update(usdPerHour=price.usd_per_hour, priceBasis=price.basis)
    if seconds is None:
        return block, f"{what}: start or end time not recorded"
    block["costUSD"] = usd(seconds, count, price.usd_per_hour)
    return block, None


def run_cost(
    *,
    region: str,
    model: str | None,
    jobs: Sequence[TrainingJobUsage],
    rollout: EndpointRollout | None = None,
    transform: TransformUsage | None = None,
    unknown_usage: Sequence[str] = (),
    table: PriceTable | None = None,
) -> dict[str, Any]:
    """The run record's ``cost`` block. ``unknown_usage`` names spending the state cannot show
    (a training job that may have run without reporting its time): it makes the total unknown."""
    prices = table or PriceTable.load()
    block: dict[str, Any] = {"region": region, "model": model, **prices.provenance()}
    reasons = list(unknown_usage)
    parts: list[float | None] = []
    if jobs:
        block["training"], found = training_cost(jobs, prices, region)
        reasons += found
        parts.append(block["training"]["costUSD"])
    if rollout is not None:
        block["endpointRollout"], reason = rollout_cost(rollout, prices, region)
        reasons += [reason] if reason else []
        parts.append(block["endpointRollout"]["costUSD"])
    if transform is not None:
        block["transform"], reason = transform_cost(transform, prices, region)
        reasons += [reason] if reason else []
        parts.append(block["transform"]["costUSD"])
    known = not reasons and all(p is not None for p in parts)
    block["totalUSD"] = round(sum(p for p in parts if p), USD_DIGITS) if known else None
    if reasons:
        block["unpriced"] = reasons
    return block


def format_usd(value: Any) -> str:
    """``$0.0123`` (4 decimals: runs often cost less than a cent), ``?`` when unknown."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    return f"${value:,.4f}"
