"""The sidecar's error hierarchy.

Every error a client can see is a :class:`SidecarError`. Each carries an HTTP status, an
Elasticsearch-style ``type`` and a ``reason`` that is safe to show to clients (it never
contains ``str()`` of a third-party exception). Third-party exceptions are translated into
these classes where they are raised (``raise ... from exc``) and turned into responses by a
single middleware (:mod:`sidecar.http.errors`), so the body always has the ES shape::

    {"error": {"type": "...", "reason": "..."}, "status": N}

Errors that never reach a client (a model that failed, a full queue) are
:class:`RerankUnavailable` subclasses: the rerank path catches them and falls back to the
original Elasticsearch order.
"""

from __future__ import annotations

from sidecar.reasons import Reason


class SidecarError(Exception):
    """Base of every error the sidecar turns into an HTTP response."""

    status: int = 500
    error_type: str = "sidecar_exception"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def to_body(self) -> dict[str, object]:
        return {
            "error": {
                "root_cause": [{"type": self.error_type, "reason": self.reason}],
                "type": self.error_type,
                "reason": self.reason,
            },
            "status": self.status,
        }


class BadRequest(SidecarError):
    """The client sent something the sidecar cannot accept (ES answers 400 for the same)."""

    status = 400
    error_type = "parse_exception"


class IllegalArgument(BadRequest):
    error_type = "illegal_argument_exception"


class RequestTimeout(SidecarError):
    """The client did not send its body in time (slowloris)."""

    status = 408
    error_type = "request_timeout_exception"


class RequestTooLarge(SidecarError):
    status = 413
    error_type = "content_too_long_exception"


class NotFound(SidecarError):
    status = 404
    error_type = "resource_not_found_exception"


class Unauthorized(SidecarError):
    status = 401
    error_type = "security_exception"


class Forbidden(SidecarError):
    status = 403
    error_type = "security_exception"


class UpstreamError(SidecarError):
    """Elasticsearch could not be used."""


class UpstreamUnavailable(UpstreamError):
    """The sidecar could not connect to Elasticsearch, or the connection broke."""

    status = 502
    error_type = "upstream_unavailable_exception"


class UpstreamTimeout(UpstreamError):
    """Elasticsearch accepted the connection but did not answer within the read timeout."""

    status = 504
    error_type = "upstream_timeout_exception"


class UpstreamBadResponse(UpstreamError):
    """Elasticsearch answered 2xx with a body the sidecar cannot parse (truncated JSON...)."""

    status = 502
    error_type = "upstream_bad_response_exception"


class UpstreamResponseTooLarge(UpstreamError):
    """An ES answer the sidecar must read to rerank is larger than tuning.es.max_response_bytes."""

    status = 502
    error_type = "upstream_response_too_large_exception"


class ServiceUnavailable(SidecarError):
    status = 503
    error_type = "service_unavailable_exception"


class ConfigError(Exception):
    """The configuration is invalid. The message is one line that names the key."""


class ModelLoadError(Exception):
    """A model could not be loaded or detected; raised at start-up, never per request.
    Loading is retried (``model.on_load_failure: serve``): the cause may go away."""


class ModelConfigError(ConfigError):
    """The model configuration cannot work whatever the environment does (a URL with a
    local backend): a configuration error, exit code 2, never retried."""


class RerankUnavailable(Exception):
    """The reranker could not score this request; the rerank path falls back.

    ``reason`` is what goes into ``X-Rerank: fallback; reason=...``.
    """

    reason: Reason = Reason.ERROR


class RerankTimeout(RerankUnavailable):
    reason = Reason.TIMEOUT


class Overloaded(RerankUnavailable):
    """The worker's bounded queue is full; the caller is told at once instead of waiting."""

    reason = Reason.OVERLOADED


class BreakerOpen(RerankUnavailable):
    reason = Reason.BREAKER_OPEN


class InputTooLong(RerankUnavailable):
    """The request itself cannot be scored (its query and instruction alone exceed
    ``model.max_length``): a problem of that request, never a fault of the model."""

    reason = Reason.QUERY_TOO_LONG


class ModelFailure(RerankUnavailable):
    """The model raised, or returned something unusable (NaN, wrong count of scores)."""

    reason = Reason.ERROR
