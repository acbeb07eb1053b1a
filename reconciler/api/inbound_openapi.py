"""How the inbound endpoints and the health probes appear in the OpenAPI document.

Their views live in receiver/webhooks.py and receiver/health.py, which must not import the API
package; each is described here by a stand-in that spectree reads instead of the view. The
stand-ins are never served, and validate nothing: the webhook body is checked by each provider's
own signature scheme over the raw bytes.
"""

from __future__ import annotations

from receiver.canonical import Source
from reconciler.api.schemas.common import Error
from reconciler.api.schemas.inbound import (
    CallbackQuery,
    Health,
    IngestAnswer,
    Payload,
    Ready,
    SignatureHeaders,
    providers_taking,
)
from reconciler.api.spec import answers, spec, stands_in_for

SEGMENT = (
    "idvapi: the secret webhook token; idenfy: the notification type (auto-finished,"
    " manual-finished, resubmitted, cancelled, expired)"
)


@stands_in_for("webhooks.webhook")
@spec.validate(
    headers=SignatureHeaders,
    json=Payload,
    resp=answers(
        HTTP_200=(IngestAnswer, "Stored: `accepted` (new) or `duplicate`"),
        HTTP_202=(IngestAnswer, "Authentic but not understood: stored for replay"),
        HTTP_401=(Error, "Authentication failed (nothing stored)"),
        HTTP_404=(Error, "Unknown or disabled provider"),
        HTTP_413=(Error, "Body over the limit"),
        HTTP_415=(Error, "Wrong content type"),
        HTTP_503=(Error, "Store unavailable: retry later"),
    ),
    tags=["inbound"],
    security={},
    path_parameter_descriptions={"name": providers_taking(Source.WEBHOOK), "segment": SEGMENT},
    skip_validation=True,
)
def webhook() -> None:
    """Receive a provider webhook

    Authenticated by the provider's own scheme over the raw body (Contiguity-Signature,
    Idenfy-Signature, or idvapi's secret URL token). Answers 2xx only once the event is
    committed.
    """


@stands_in_for("webhooks.callback")
@spec.validate(
    query=CallbackQuery,
    resp=answers(
        HTTP_200=(IngestAnswer, "Recorded (no return URL configured)"),
        HTTP_302=(None, "Recorded; redirect to the configured return URL"),
        HTTP_401=(Error, "The callback did not validate"),
        HTTP_404=(Error, "Unknown or disabled provider"),
        HTTP_503=(Error, "Store unavailable"),
    ),
    tags=["inbound"],
    security={},
    path_parameter_descriptions={"name": providers_taking(Source.CALLBACK)},
    skip_validation=True,
)
def callback() -> None:
    """Receive a provider's browser redirect

    Records the redirect and schedules an immediate status poll; a status in the URL is never
    trusted. Redirects (302) to the provider's configured return URL when set.
    """


@stands_in_for("health.healthz")
@spec.validate(
    resp=answers(HTTP_200=(Health, "Alive"), HTTP_503=(Health, "The loop stalled")),
    tags=["health"],
    security={},
    skip_validation=True,
)
def healthz() -> None:
    """The process is alive"""


@stands_in_for("health.readyz")
@spec.validate(
    resp=answers(HTTP_200=(Ready, "Ready"), HTTP_503=(Ready, "Not ready")),
    tags=["health"],
    security={},
    skip_validation=True,
)
def readyz() -> None:
    """Ready: database at the newest schema (workers and the scheduler: and Redis)"""


@stands_in_for("health.metrics")
@spec.validate(
    resp=answers(HTTP_200=(None, "Prometheus text exposition"), media={"HTTP_200": ["text/plain"]}),
    tags=["health"],
    security={},
    skip_validation=True,
)
def metrics() -> None:
    """Prometheus metrics"""
