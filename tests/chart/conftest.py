"""Fixtures shared by the chart tests: the project-local Helm binary, defined next to the render tests."""

from __future__ import annotations

from tests.chart.test_chart_render import helm

__all__ = ["helm"]
