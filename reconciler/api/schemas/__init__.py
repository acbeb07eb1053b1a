"""The API's request and response models (pydantic), one module per resource.

spectree validates requests with them and writes `/api/v1/openapi.json` from them
(reconciler/api/spec.py); status enums come from the code's own definitions (receiver/canonical.py,
receiver/store/models.py), never copied.
"""
