"""RFC 3339 UTC timestamps, the one time format of the resource and the API (2025-01-23T10:30:00Z)."""

from datetime import UTC, datetime


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Parses what Kubernetes writes (second precision, trailing Z) and any ISO 8601 with an offset. Raises
    ValueError for what is no time, or none in UTC (`0001-01-01T00:00:00+01:00` would be in year 0)."""
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)
    except OverflowError as error:
        raise ValueError(f"{text!r} is out of range once in UTC") from error


def milliseconds_between(start: str, end: str) -> int:
    return max(0, round((parse_utc(end) - parse_utc(start)).total_seconds() * 1000))
