"""Where an ingest request's time goes: cProfile of N signed deliveries through the real app.

In-process (Flask test client, no gunicorn), one thread, against a fresh database and a private
Redis, so the profile shows our code, SQLAlchemy/psycopg and the database round trips without
the load generator competing for the CPU. Prints the rate and the top functions.

    .venv/bin/python -m bench.profile_ingest --backend postgresql --requests 3000
"""

from __future__ import annotations

import argparse
import cProfile
import logging
import pstats
import tempfile
import time
from pathlib import Path

from app import create_app
from receiver.services import Services
from receiver.store.db import make_engine
from receiver.store.migrate import upgrade
from tests.conftest import create_private_database, drop_private_database, make_settings
from tests.support import signing
from tests.support.redis_server import RedisServer

FILLER = "x" * 1200


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["sqlite", "postgresql"], default="postgresql")
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--sort", default="cumulative", choices=["cumulative", "tottime"])
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="verihook-profile-"))
    database = create_private_database() if args.backend == "postgresql" else None
    engine = make_engine(database or f"sqlite:///{tmp / 'profile.db'}")
    redis = RedisServer().start()
    try:
        upgrade(engine)
        services = Services.build(make_settings(engine, redis.url, tmp, log_level="INFO"))
        client = create_app(services=services).test_client()
        logging.getLogger().handlers[0].setStream(open("/dev/null", "w"))  # noqa: SIM115
        now = int(time.time())
        requests = []
        for index in range(args.requests):
            body = signing.contiguity_event(
                "processing",
                f"vs_p{index}",
                user_ref=f"p{index}",
                timestamp=now,
                event_id=f"evt_profile_{index}_{now}",
                metadata={"filler": FILLER},
            )
            requests.append((body, signing.contiguity_header(body, timestamp=now)))
        profile = cProfile.Profile()
        started = time.perf_counter()
        profile.enable()
        for body, signature in requests:
            answer = client.post(
                "/webhooks/contiguity",
                data=body,
                headers={"Content-Type": "application/json", "Contiguity-Signature": signature},
            )
            assert answer.status_code == 200, answer.status_code
        profile.disable()
        elapsed = time.perf_counter() - started
        print(
            f"{args.requests / elapsed:.0f} requests/s on one thread (profiled), "
            f"{elapsed / args.requests * 1000:.2f} ms each"
        )
        pstats.Stats(profile).sort_stats(args.sort).print_stats(args.top)
    finally:
        engine.dispose()
        redis.kill()
        if database:
            drop_private_database(database)


if __name__ == "__main__":
    main()
