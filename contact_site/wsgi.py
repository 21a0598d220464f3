"""The WSGI entry point: `gunicorn contact_site.wsgi:app` or any WSGI server.

Builds the app from the environment and starts this process's share of the
work (schema, delivery). The development mailbox never starts here.
"""

from __future__ import annotations

from contact_site import create_app
from contact_site.runtime import start_process

app = create_app()
start_process(app)
