"""gunicorn settings for the verihook receiver: the real ones ship inside the package
(`receiver/gunicorn_conf.py`, used by `verihook web` as `-c python:receiver.gunicorn_conf`);
this file lets `gunicorn -c deploy/gunicorn.conf.py` work from a checkout."""

from receiver.gunicorn_conf import *  # noqa: F403
from receiver.gunicorn_conf import (  # noqa: F401
    child_exit,
    on_starting,
    post_fork,
    pre_fork,
    pre_request,
    worker_exit,
)
