"""RFC 3339 UTC timestamps, the one time format of the resource and the API (2025-01-23T10:30:00Z)."""

from datetime import UTC, datetime


def format_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_utc(text: str) -> datetime:
    """Parses what Kubernetes writes (second precision, trailing Z) and any ISO 8601 with an offset."""
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def milliseconds_between(start: str, end: str) -> int:
    return max(0, round((parse_utc(end) - parse_utc(start)).total_seconds() * 1000))
