"""Small conversions the compiled core delegates to Python."""

from __future__ import annotations

import datetime as _dt
from collections.abc import Iterator
from typing import Any

_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.timezone.utc)
_ONE_US = _dt.timedelta(microseconds=1)


def datetime_to_ns(value: Any, what: str) -> int:
    """Nanoseconds since the Unix epoch for a datetime (naive means UTC) or a
    pandas/numpy timestamp."""
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        extra_ns = getattr(value, "nanosecond", 0)  # pandas.Timestamp
        return (value - _EPOCH) // _ONE_US * 1000 + extra_ns
    if type(value).__name__ == "datetime64":
        import numpy as np

        return int(value.astype("datetime64[ns]").astype(np.int64))
    raise TypeError(
        f"'{what}' must be int (ns since the epoch) or datetime, got {type(value).__name__}"
    )


def iter_result(result: Any) -> Iterator[dict[str, Any]]:
    for i in range(len(result)):
        yield result[i]
