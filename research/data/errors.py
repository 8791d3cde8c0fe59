"""DataError: a data problem the user can fix; the message names the field, its value and the fix."""

from __future__ import annotations

from typing import Any, NoReturn

from research.config import ConfigError


class DataError(ConfigError):
    """Unusable data: a missing file or package, a missing JSONL field, a resume onto different data, ..."""


def fail(field_name: str, value: Any, problem: str, fix: str) -> NoReturn:
    """Raise DataError in the same shape as research.config.ConfigError: 'field=value: problem. Fix: fix.'"""
    raise DataError(f"{field_name}={value!r}: {problem}. Fix: {fix}.")
