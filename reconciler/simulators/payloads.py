"""Provider wire shapes carrying fake PII, built from a fakedata.Person (a section per provider)."""

from __future__ import annotations

from typing import Any

from .fakedata import Person

# ----- contiguity (ASSUMED: Stripe-like verified_outputs) ------------------------------------


def contiguity_verified_outputs(person: Person) -> dict[str, Any]:
    """verified_outputs of an approved session object."""
    return {
        "first_name": person.given_name,
        "last_name": person.surname,
        "dob": person.date_of_birth,
        "id_number": person.document_number,
    }


# ----- docverify -------------------------------------------------------------------------------

DOCVERIFY_CHECKS = (
    "document_validation",
    "document_authentication",
    "document_liveness",
    "biometric_matching",
    "biometric_liveness",
    "flagged_identity",
    "risk_recommendation",
)
DOCVERIFY_FLAGGED = {  # recommendation -> {check: reasons} (reasons are simulator-made)
    "ALLOW": {},
    "CHALLENGE": {"document_authentication": ["document_security_features_unclear"]},
    "DENY": {"biometric_matching": ["selfie_does_not_match_document"]},
}


def docverify_result(person: Person, serial_number: str, recommendation: str) -> dict[str, Any]:
    """person, document, additional_info and checks of a complete session."""
    flagged: dict[str, list[str]] = {
        **DOCVERIFY_FLAGGED[recommendation],
        "risk_recommendation": [],
    }
    checks = {
        name: {
            "recommendation": recommendation if name in flagged else "ALLOW",
            "reasons": flagged.get(name, []),
        }
        for name in DOCVERIFY_CHECKS
    }
    person_block = {
        "full_name": person.full_name,
        "given_name": person.given_name,
        "surname": person.surname,
        "gender": "male" if person.sex == "M" else "female",
        "national_id": person.personal_code,
        "date_of_birth": person.date_of_birth,
        "age": person.age,
    }
    document_block = {
        "country": person.nationality,
        "region": None,
        "type": person.document_type,
        "number": person.document_number,
        "serial_number": serial_number,
        "issue_date": person.issue_date,
        "expiration_date": person.expiry_date,
    }
    return {
        "person": person_block,
        "document": document_block,
        "additional_info": {},
        "checks": checks,
    }


ALPHA3 = {"LT": "LTU", "DE": "DEU", "FR": "FRA", "PL": "POL", "ES": "ESP", "SE": "SWE"}
ALPHA3.update(NL="NLD", IT="ITA")
DOCVERIFY_REJECTION_DESCRIPTION = {  # simulator-made human-readable descriptions
    "CHALLENGE": ["The document's security features could not be confirmed"],
    "DENY": ["The selfie does not match the photo on the document"],
}


def _iso_midnight(day: str) -> str:
    """YYYY-MM-DD as the ISO-8601 timestamp the deprecated shape uses."""
    return f"{day}T00:00:00.000Z"


def docverify_deprecated_result(
    person: Person, serial_number: str, recommendation: str
) -> dict[str, Any]:
    """What a complete session adds to `DeprecatedSessionResult` (the answer without
    `detailed=true`): `verified_info` when ALLOW, else `rejection_description` and
    `extracted_info` (TS-oas DeprecatedSessionResult, DeprecatedPersonDto,
    DeprecatedDocumentDto)."""
    person_block = {
        "given_name": person.given_name,
        "surname": person.surname,
        "gender": person.sex,
        "full_name": person.full_name,
        "age": person.age,
        "address": {
            "country": ALPHA3[person.nationality],
            "full_address": person.address,
        },
        "date_of_birth": _iso_midnight(person.date_of_birth),
    }
    document_block = {
        "type": person.document_type,
        "country": ALPHA3[person.nationality],
        "issue_date": _iso_midnight(person.issue_date),
        "document_serial_number": serial_number,
        "id_value": person.personal_code,
        "given_name": person.given_name,
        "surname": person.surname,
        "full_name": person.full_name,
        "date_of_birth": _iso_midnight(person.date_of_birth),
        "valid_until": _iso_midnight(person.expiry_date),
    }
    if recommendation == "ALLOW":
        return {"verified_info": {"person": person_block, "document": document_block}}
    return {
        "rejection_description": list(DOCVERIFY_REJECTION_DESCRIPTION[recommendation]),
        "extracted_info": {"document": document_block, "person": person_block},
    }


# ----- idenfy ----------------------------------------------------------------------------------

IDENFY_DOCUMENT_TYPES = {
    "passport": "PASSPORT",
    "national_id": "ID_CARD",
    "drivers_license": "DRIVER_LICENSE",
}
# documented token fields and their defaults, echoed in the token response
IDENFY_TOKEN_DEFAULTS: dict[str, Any] = {
    **dict.fromkeys(("firstName", "lastName", "successUrl", "errorUrl", "unverifiedUrl")),
    **dict.fromkeys(("callbackUrl", "country", "dateOfBirth", "dateOfExpiry", "dateOfIssue")),
    **dict.fromkeys(("nationality", "personalNumber", "documentNumber", "sex", "address")),
    **dict.fromkeys(("externalRef", "additionalSteps", "additionalData", "questionnaire")),
    "riskAssessmentProfile": None,
    "locale": "en",
    "showInstructions": True,
    "expiryTime": 86400,
    "sessionLength": 1800,
    "documents": ["ID_CARD", "PASSPORT", "RESIDENCE_PERMIT", "DRIVER_LICENSE"],
    "generateDigitString": False,
    "tokenType": "IDENTIFICATION",
    "utilityBill": False,
}
IDENFY_EMPTY_DATA_KEYS = ("docFirstName", "docLastName", "docNumber", "docPersonalCode", "docDob")


def idenfy_data(person: Person | None) -> dict[str, Any]:
    """The callback's data object (nulls when no verification took place)."""
    if person is None:
        return dict.fromkeys(IDENFY_EMPTY_DATA_KEYS)
    return {
        "docFirstName": person.given_name.upper(),
        "docLastName": person.surname.upper(),
        "docNumber": person.document_number,
        "docPersonalCode": person.personal_code,
        "docExpiry": person.expiry_date,
        "docDob": person.date_of_birth,
        "docDateOfIssue": person.issue_date,
        "docType": IDENFY_DOCUMENT_TYPES[person.document_type],
        "docSex": "MALE" if person.sex == "M" else "FEMALE",
        "docNationality": person.nationality,
        "docIssuingCountry": person.nationality,
        "fullName": person.full_name.upper(),
        "selectedCountry": person.nationality,
        "manuallyDataChanged": False,
        "birthPlace": person.birth_place,
        "address": person.address,
        "ageEstimate": "OVER_25",
        "clientIpProxyRiskLevel": "LOW",
        "duplicateFaces": [],
        "duplicateDocFaces": [],
    }


IDENFY_LEGACY_DATA_KEYS = (
    "selectedCountry",
    "docFirstName",
    "docLastName",
    "docNumber",
    "docPersonalCode",
    "docExpiry",
    "docDob",
    "docType",
    "docSex",
    "docNationality",
    "docIssuingCountry",
    "manuallyDataChanged",
)
"""The data keys of the older callback (idenfy/Documentation pages/ResultCallback.md, 0c7b4bd8)."""


def idenfy_legacy_data(person: Person | None) -> dict[str, Any]:
    """The older callback's data object: fewer keys, the same values."""
    current = idenfy_data(person)
    return {key: current.get(key) for key in IDENFY_LEGACY_DATA_KEYS}


# ----- idvapi ----------------------------------------------------------------------------------

IDVAPI_FACE = {
    "verified": {"isIdentical": True, "confidence": 0.91, "similarityScore": 91},
    "rejected": {"isIdentical": False, "confidence": 0.27, "similarityScore": 27},
}
IDVAPI_ASSESSMENT = {
    "verified": {"overallScore": 88, "verificationStatus": "verified", "confidenceLevel": "high"},
    "rejected": {
        "overallScore": 24,
        "verificationStatus": "rejected",
        "confidenceLevel": "low",
        "riskFactors": ["face_mismatch"],
    },
}
IDVAPI_SUMMARY = {
    "verified": "Verification completed successfully",
    "rejected": "Face in selfie does not match ID photo",
}


def idvapi_webhook(
    check_id: str, user_identifier: str, outcome: str, timestamp: str, selfie_url: str, id_url: str
) -> dict[str, Any]:
    """The documented webhook payload."""
    result = {
        "sessionId": check_id,
        "timestamp": timestamp,
        "status": outcome,
        "faceComparison": dict(IDVAPI_FACE[outcome]),
        "verificationAssessment": dict(IDVAPI_ASSESSMENT[outcome]),
    }
    return {
        "check_id": check_id,
        "user_identifier": user_identifier,
        "verification_result": result,
        "selfie_video_url": selfie_url,
        "id_photo_url": id_url,
        "completed_at": timestamp,
    }


def idvapi_submit_answer(webhook: dict[str, Any], selfie_file: str, id_file: str) -> dict[str, Any]:
    """The documented /verif/submit response for the check a webhook describes."""
    result = webhook["verification_result"]
    outcome = result["status"]
    files = {
        "selfieVideo": {"url": webhook["selfie_video_url"], "fileName": selfie_file},
        "idPhoto": {"url": webhook["id_photo_url"], "fileName": id_file},
    }
    return {
        "success": True,
        "check_id": webhook["check_id"],
        "result": {
            "sessionId": webhook["check_id"],
            "timestamp": result["timestamp"],
            "files": files,
            "faceComparison": {**result["faceComparison"], "method": "openai_vision"},
            "verificationAssessment": {
                **result["verificationAssessment"],
                "summary": IDVAPI_SUMMARY[outcome],
            },
            "status": outcome,
        },
    }


# ----- nevis (ASSUMED: the result object's contents) -------------------------------------------


def nevis_result(person: Person) -> dict[str, Any]:
    """The result of a verified session."""
    return {
        "person": {
            "firstName": person.given_name,
            "lastName": person.surname,
            "dateOfBirth": person.date_of_birth,
            "nationality": person.nationality,
        },
        "document": {
            "type": person.document_type.upper(),
            "number": person.document_number,
            "issuingCountry": person.nationality,
            "expiryDate": person.expiry_date,
        },
    }
