"""Fixtures for the API tests: a raw HTTP client bound to the test's daemon."""

from __future__ import annotations

import pytest
from unixhttp import API


@pytest.fixture
def api(daemon) -> API:
    return API(str(daemon.socket))
