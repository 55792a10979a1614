"""W3C trace context of the current OpenTelemetry span, when OpenTelemetry is in use.

The SDK never imports OpenTelemetry: if ``opentelemetry.trace`` is not already in
:data:`sys.modules`, the process does not trace and the lookup costs one dict probe. The ids are
kept as integers on the caller's thread and formatted as hex on the sender thread.
"""

from __future__ import annotations

import sys


def current_ids() -> tuple[int, int] | None:
    """``(trace_id, span_id)`` of the active, valid span, or None."""
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    ctx = trace.get_current_span().get_span_context()
    if not ctx.is_valid:
        return None
    return ctx.trace_id, ctx.span_id


def format_ids(ids: tuple[int, int]) -> tuple[str, str]:
    """The W3C text forms: 32 and 16 lowercase hex characters."""
    return f"{ids[0]:032x}", f"{ids[1]:016x}"
