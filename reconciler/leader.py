"""A leader lock in Redis: one active scheduler among many, taken over within one lock period.

The holder renews the lock well before it expires; only the holder's own token can renew or
release it (compare-and-set in Lua). A holder that dies simply stops renewing.
"""

from __future__ import annotations

import os
import socket
import uuid

from redis import Redis
from redis.exceptions import RedisError

LEADER_KEY = "verihook:{queue}:scheduler-leader"

_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('del', KEYS[1])
end
return 0
"""


class LeaderLock:
    """Acquire-or-renew in one call; `is_leader` reflects the last answer from Redis.

    The token names its holder (`host:pid:random`) so that operators can see who leads.
    """

    def __init__(self, redis: Redis, queue_name: str, ttl_seconds: float) -> None:
        self.redis = redis
        self.key = LEADER_KEY.format(queue=queue_name)
        self.ttl_ms = int(ttl_seconds * 1000)
        self.token = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"
        self.is_leader = False

    def refresh(self) -> bool:
        """Renew the lock if held, else try to take it; False on any Redis error."""
        try:
            if self.is_leader and self.redis.eval(_RENEW, 1, self.key, self.token, self.ttl_ms):
                return True
            self.is_leader = bool(self.redis.set(self.key, self.token, nx=True, px=self.ttl_ms))
        except RedisError:
            self.is_leader = False
        return self.is_leader

    def holder(self) -> str | None:
        """The current holder's token, if any."""
        value = self.redis.get(self.key)
        return value.decode() if isinstance(value, bytes) else value

    def release(self) -> None:
        """Give the lock up if we hold it."""
        try:
            self.redis.eval(_RELEASE, 1, self.key, self.token)
        except RedisError:
            pass
        self.is_leader = False
