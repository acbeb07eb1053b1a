"""Independent signers for test deliveries: none of this shares code with receiver/."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid
from typing import Any

import stripe

CONTIGUITY_SECRET = "whsec_test_contiguity_9974ab26f9cfa06e"
CONTIGUITY_OLD_SECRET = "whsec_test_contiguity_previous"
IDENFY_SECRET = "idenfy-signing-key-for-tests"
IDVAPI_TOKEN = "idv-path-token-0123456789abcdef"


def contiguity_header(
    body: bytes, secret: str = CONTIGUITY_SECRET, timestamp: int | None = None
) -> str:
    """`t=…,v1=…` made by the stripe package (the same scheme, an independent implementation)."""
    return stripe.WebhookSignature.generate_signature_header(
        body.decode(), secret, timestamp=timestamp if timestamp is not None else int(time.time())
    )


def idenfy_signature(body: bytes, secret: str = IDENFY_SECRET) -> str:
    """hex(HMAC-SHA256(secret, raw body)), as iDenfy's documentation describes."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def contiguity_event(
    kind: str,
    session_id: str = "vs_test1",
    *,
    user_ref: str = "user-1",
    timestamp: int = 1_700_000_000,
    event_id: str | None = None,
    **data: Any,
) -> bytes:
    """A v2 envelope for `identity.verification_session.<kind>`."""
    return json.dumps(
        {
            "id": event_id or f"evt_{uuid.uuid4().hex[:16]}",
            "type": f"identity.verification_session.{kind}",
            "timestamp": timestamp,
            "api_version": "v2025.9.7",
            "data": {
                "id": session_id,
                "object": "identity.verification_session",
                "status": kind,
                "client_reference_id": user_ref,
                **data,
            },
        }
    ).encode()


def idenfy_result(
    overall: str,
    scan_ref: str = "scan-0001",
    *,
    client_id: str = "user-1",
    final: bool = True,
    finish_time: int = 1_700_000_000,
    manual: bool = False,
) -> bytes:
    """An iDenfy result callback body with fake PII."""
    return json.dumps(
        {
            "final": final,
            "platform": "PC",
            "scanRef": scan_ref,
            "clientId": client_id,
            "startTime": finish_time - 60,
            "finishTime": finish_time,
            "status": {
                "overall": overall,
                "autoDocument": "DOC_VALIDATED",
                "autoFace": "FACE_MATCH",
                "manualDocument": "DOC_VALIDATED" if manual else None,
                "manualFace": "FACE_MATCH" if manual else None,
                "fraudTags": [],
                "mismatchTags": [],
            },
            "data": {
                "docFirstName": "ZELDA",
                "docLastName": "QUIXOTEPII",
                "docNumber": "PII998877",
                "docDob": "1985-04-12",
            },
            "fileUrls": {"FRONT": "https://s3.example.invalid/front.png"},
        }
    ).encode()


def idvapi_result(
    status: str, user_identifier: str = "user-1", *, check_id: str | None = None
) -> bytes:
    """An idvapi webhook body as its documentation shows."""
    check = check_id or str(uuid.uuid4())
    return json.dumps(
        {
            "check_id": check,
            "user_identifier": user_identifier,
            "verification_result": {
                "sessionId": check,
                "timestamp": "2024-01-15T10:30:00.000Z",
                "status": status,
                "faceComparison": {"isIdentical": True, "confidence": 0.85, "similarityScore": 85},
                "verificationAssessment": {
                    "overallScore": 85,
                    "verificationStatus": status,
                    "confidenceLevel": "high",
                },
            },
            "selfie_video_url": "https://storage.example.invalid/selfie.mp4",
            "id_photo_url": "https://storage.example.invalid/id.jpg",
            "completed_at": "2024-01-15T10:30:00.000Z",
        }
    ).encode()
