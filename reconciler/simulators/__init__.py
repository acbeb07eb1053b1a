"""Provider simulators for verihook: real HTTP servers speaking each IDV provider's API.

Written from docs/PROVIDERS.md and the provider documents only; they share no code with receiver/
on purpose (a simulator signing with the verifier's own code would let a wrong scheme pass).

    with start("contiguity", webhook_url="http://127.0.0.1:8000/webhooks/contiguity") as sim:
        ...  # point verihook at sim.url, create a session through the provider API, then
        sim.script(session_id, "verified")  # or POST {sim.control_url}/sessions/<id>/script
        sim.wait_idle(10)

Config keys (start() kwargs and POST /_sim/config; defaults in config.py and each provider):
webhook_url, callback_url, webhook_secret, retry_on_failure, step_interval, delivery_timeout,
max_sessions, variants{<variant>: share}, chaos{drop, duplicate, shuffle, delay_max, status_5xx,
status_429, status_garbage, slow_ms, seed},
plus per provider: contiguity api_token; docverify client_id, client_secret, token_expires_in;
idvapi api_key, default_outcome; idenfy api_key, api_secret, per_notification_urls,
late_notification_delay; nevis access_key.

Real-world variants (what providers really send, beyond what verihook's parsers were written
from): a script names one with "variant" (null for none), else config "variants" draws one by its
share. contiguity: report_event, anonymous_report_event, completed_event; idenfy: late_expiry,
late_cancel, manual_prefilled, legacy_shape; nevis: bare_redirect, unknown_id_redirect. docverify
answers the shape its result call asks for (`detailed=true`, else the deprecated one) and scripts
`error` as outcome requires_input with provider_status "error". Each module's docstring says what
each variant sends and where it was seen.
"""

from __future__ import annotations

from .server import PROVIDERS, Simulator, serve, start

__all__ = ["PROVIDERS", "Simulator", "serve", "start"]
