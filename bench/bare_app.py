"""The baseline for the ingest benchmark: a bare Flask app that reads the body and answers 200."""

from flask import Flask, jsonify, request

app = Flask("bare")


@app.post("/webhooks/<name>")
def webhook(name: str):  # type: ignore[no-untyped-def]
    """Read the body and say accepted, like the receiver's answer but with no work."""
    request.get_data()
    return jsonify({"status": "accepted", "event_id": 0})
