"""Fixtures shared by the chart tests: the project-local Helm binary, defined next to the render tests, and
Debian's promtool, next to the alert tests."""

from __future__ import annotations

from tests.chart.test_chart_alerts import promtool
from tests.chart.test_chart_render import helm

__all__ = ["helm", "promtool"]
