"""RFC 3339 UTC timestamps, the one time format of the resource and the API (2025-01-23T10:30:00Z)."""

from datetime import UTC, datetime


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Parses what Kubernetes writes (second precision, trailing Z) and any ISO 8601 with an offset."""
    return in_utc(datetime.fromisoformat(text.replace("Z", "+00:00")))


def in_utc(moment: datetime) -> datetime:
    """The moment in UTC. One that is none there (`9999-12-31T23:59:59-01:00` would be in year 10000,
    `0001-01-01T00:00:00+01:00` in year 0) is the latest or earliest UTC holds: nothing happened beyond either."""
    try:
        return moment.astimezone(UTC)
    except OverflowError:
        return (datetime.min if moment.year == 1 else datetime.max).replace(tzinfo=UTC)


def milliseconds_between(start: str, end: str) -> int:
    return max(0, round((parse_utc(end) - parse_utc(start)).total_seconds() * 1000))
