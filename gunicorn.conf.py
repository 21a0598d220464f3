"""gunicorn settings, loaded from the working directory: `gunicorn 'contact_site:create_app()'`.

The master checks the settings and upgrades the schema once, before any worker
starts; each worker then starts its own delivery once it has loaded the app,
and gives its unsent claims back when it stops (SIGTERM, restart, reload,
max_requests). Any setting here can be overridden on the command line.
"""

from __future__ import annotations

import os
import signal
from typing import Any

wsgi_app = "contact_site:create_app()"

# gthread: a request's body is read in one of the worker's threads while the
# worker's main loop keeps telling the master it is alive, so an upload on a slow
# line is never killed by `timeout` (a sync worker reads it in the heartbeat's
# thread and is killed after 30 s). Four threads per worker serve four uploads
# at once; each worker also runs one delivery thread.
worker_class = "gthread"
threads = 4
# A contact form is light on CPU: a few workers, for the cores and for a spare
# when one restarts. Each worker has its own delivery thread and database
# connections, so more workers are not more useful. WEB_CONCURRENCY overrides.
workers = int(os.environ.get("WEB_CONCURRENCY", 0)) or min((os.cpu_count() or 1) + 1, 4)
# With gthread this bounds only a worker whose main loop hangs, not a request.
timeout = 60
# A stopping worker finishes requests in flight (an upload) for this long; its
# delivery thread gives back unsent mails at once and abandons the mail in hand
# after 10 s. Keep it below systemd's TimeoutStopSec (90 s by default).
graceful_timeout = 60
keepalive = 5
# Each worker tells the master it is alive by touching a file (os.fchmod) on every
# turn of its loop: on a RAM disk that never waits for the disk (gunicorn's advice).
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") else None
limit_request_line = 4094
limit_request_fields = 100
limit_request_field_size = 8190
# gunicorn 25.1+ opens a control socket for `gunicornc` at one path per user
# ($XDG_RUNTIME_DIR/gunicorn.ctl, else ~/.gunicorn/gunicorn.ctl): a second deployment
# under the same user takes it over (and unlinks it when it stops), so `gunicornc`
# would reload or scale the wrong site. Nothing here uses it: off. To use gunicornc,
# set control_socket_disable = False and control_socket to a path of that deployment alone.
control_socket_disable = True

accesslog = "-"
errorlog = "-"
loglevel = "info"
# The path without its query string (%(U)s, not %(r)s), no referrer and no user
# agent: a query string or a referrer may carry a token or an address. No client
# address either (personal data): the rate limit and the console keep what is needed.
access_log_format = '%(t)s "%(m)s %(U)s %(H)s" %(s)s %(B)s %(M)sms'


def on_starting(server: Any) -> None:
    """In the master: a bad setting stops gunicorn here, with one line; the schema is made."""
    from contact_site import create_app
    from contact_site.extensions import db
    from contact_site.runtime import leave_development_mode
    from contact_site.schema import upgrade_schema

    app = create_app()
    leave_development_mode(app)  # FLASK_DEBUG's generated key would stop it here
    upgrade_schema(app)
    with app.app_context():
        db.engine.dispose()  # the workers are forked from here: no shared connections


def post_worker_init(worker: Any) -> None:
    """In each worker: start its share of delivery."""
    from flask import Flask

    from contact_site.runtime import start_process

    if isinstance(worker.wsgi, Flask):
        start_process(worker.wsgi)
        _give_back_on_sigterm(worker.wsgi)


def _give_back_on_sigterm(app: Any) -> None:
    """Before gunicorn's own SIGTERM handling, ask delivery to give its unsent claims back."""
    from contact_site.delivery.backend import backend_of

    gunicorn_handler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: Any) -> None:
        backend_of(app).stop(timeout=0)  # only asks: the waiting is done in worker_exit
        if callable(gunicorn_handler):
            gunicorn_handler(signum, frame)

    signal.signal(signal.SIGTERM, on_sigterm)
    signal.siginterrupt(signal.SIGTERM, False)  # as gunicorn sets it: requests go on


def worker_int(worker: Any) -> None:
    """SIGINT or SIGQUIT (a quick stop): ask delivery to give its claims back now."""
    from flask import Flask

    from contact_site import runtime
    from contact_site.delivery.backend import backend_of

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask) and runtime.state(app).started:
        backend_of(app).stop(timeout=0)


def worker_exit(server: Any, worker: Any) -> None:
    """A worker that stops gives its unsent claims back, and waits for that before exiting."""
    from flask import Flask

    from contact_site import runtime
    from contact_site.delivery.backend import backend_of

    app = getattr(worker, "wsgi", None)
    if isinstance(app, Flask) and runtime.state(app).started:
        backend_of(app).stop(timeout=15)  # the mail in hand is abandoned after 10 s
