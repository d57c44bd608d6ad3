"""The Alertmanager webhook body as the Kubernaut gateway's Go code reads it.

``encoding/json`` semantics (commit d5a4a87, 2026-08-22, ``pkg/gateway/adapters/
prometheus_adapter.go`` ``AlertManagerWebhook``): typed fields, unknown ones ignored,
null as the zero value, ``time.Time`` as RFC 3339; where Go's Unmarshal errs the gateway
answers 400. Also the freshness check's reading and Go's JSON encoder.
"""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from typing import Any

from kubetest.errors import UnmarshalError

_RFC3339_RE = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$"
)
_GO_ZERO_TIME = datetime(1, 1, 1, tzinfo=UTC)


def _go_time(value: Any) -> datetime | None:
    """``time.Time`` from JSON: RFC 3339 text (``None`` for null or the zero time)."""
    if value is None:
        return None
    if not isinstance(value, str) or not (m := _RFC3339_RE.match(value)):
        raise UnmarshalError(f"parsing time {value!r} as RFC 3339")
    try:
        frac = (m.group(7) or "")[:7].ljust(7, "0")[1:7] or "0"
        tz = m.group(8).replace("Z", "+00:00")
        dt = datetime.fromisoformat(
            f"{m.group(1)}-{m.group(2)}-{m.group(3)}T{m.group(4)}:{m.group(5)}:{m.group(6)}"
            f".{frac.ljust(6, '0')}{tz}"
        )
    except (ValueError, OverflowError) as exc:
        raise UnmarshalError(str(exc)) from None
    return None if dt == _GO_ZERO_TIME else dt


def _str_map(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise UnmarshalError("cannot unmarshal into map[string]string")
    return value


def _go_string(value: Any) -> str:
    if value is None:
        return ""
    if not isinstance(value, str):
        raise UnmarshalError("cannot unmarshal into string")
    return value


def parse_webhook(body: bytes) -> dict[str, Any]:
    """``AlertManagerWebhook`` as ``encoding/json`` fills it: typed fields, unknown ones
    ignored, null as the zero value; ``UnmarshalError`` where Go's Unmarshal errs."""
    try:
        data = json.loads(body)
    except ValueError as exc:
        raise UnmarshalError(f"malformed JSON payload: {exc}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise UnmarshalError("cannot unmarshal into AlertManagerWebhook")
    for key in ("version", "groupKey", "status", "receiver", "externalURL"):
        _go_string(data.get(key))
    trunc = data.get("truncatedAlerts")
    if trunc is not None and (not isinstance(trunc, int) or isinstance(trunc, bool)):
        raise UnmarshalError("truncatedAlerts: cannot unmarshal into int")
    common = {
        key: _str_map(data.get(key)) for key in ("groupLabels", "commonLabels", "commonAnnotations")
    }
    raw_alerts = data.get("alerts")
    if raw_alerts is None:
        raw_alerts = []
    if not isinstance(raw_alerts, list):
        raise UnmarshalError("alerts: cannot unmarshal into []AlertManagerAlert")
    alerts = []
    for raw in raw_alerts:
        if raw is None:
            raw = {}
        if not isinstance(raw, dict):
            raise UnmarshalError("cannot unmarshal into AlertManagerAlert")
        for key in ("status", "generatorURL", "fingerprint"):
            _go_string(raw.get(key))
        _go_time(raw.get("endsAt"))
        alerts.append(
            {
                "labels": _str_map(raw.get("labels")),
                "annotations": _str_map(raw.get("annotations")),
                "startsAt": _go_time(raw.get("startsAt")),
                "fingerprint": raw.get("fingerprint") or "",
            }
        )
    return {**common, "alerts": alerts}


def newest_starts_at(body: bytes) -> datetime | None | bool:
    """The freshness check's reading (``alertManagerTimestamps``): the newest non-zero
    ``alerts[].startsAt``; ``None`` when none has one; ``False`` when the body does not
    unmarshal (the check then lets it through to the handler)."""
    try:
        data = json.loads(body)
        if data is None:
            return None
        if not isinstance(data, dict):
            return False
        raw_alerts = data.get("alerts") or []
        if not isinstance(raw_alerts, list):
            return False
        newest = None
        for raw in raw_alerts:
            if raw is None:
                continue
            if not isinstance(raw, dict):
                return False
            ts = _go_time(raw.get("startsAt"))
            if ts is not None and (newest is None or ts > newest):
                newest = ts
        return newest
    except (ValueError, UnmarshalError):
        return False


def go_json(doc: Any) -> bytes:
    """``json.NewEncoder(w).Encode``: compact, one trailing newline."""
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False).encode() + b"\n"


def truncate(values: dict[str, str], limit: int) -> dict[str, str]:
    """``pkg/shared/k8s`` ``TruncateMapValues``: values cut to ``limit`` bytes."""
    out = {}
    for key, value in values.items():
        raw = value.encode()
        out[key] = raw[:limit].decode("utf-8", "replace") if len(raw) > limit else value
    return out
