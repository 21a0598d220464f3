"""The Celery worker's entry point: `celery -A contact_site.celery_app worker`.

Flask's pattern: the Flask app is built here, and its Celery app is the one
`celery_init_app` keeps in `app.extensions["celery"]`.
"""

from __future__ import annotations

from celery import Celery

from contact_site import create_app
from contact_site.delivery.celery import connect_worker_signals
from contact_site.schema import upgrade_schema

flask_app = create_app({"DELIVERY_BACKEND": "celery"})
celery_app: Celery = flask_app.extensions["celery"]
upgrade_schema(flask_app)
connect_worker_signals(flask_app)
