"""contact_site: a self-hosted contact page whose mails are sent by a durable outbox."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from flask import Flask

from . import config as settings
from . import contact, database, delivery, devmail, errors, runtime, schema, security
from .extensions import mail

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Assemble the application: settings, extensions, blueprints, commands. Nothing starts."""
    # root_path is the project folder, where templates/, static/ and instance/ live.
    app = Flask(__name__, root_path=str(PROJECT_ROOT), instance_relative_config=True)
    settings.load(app, config)
    database.init_app(app)
    schema.init_app(app)
    mail.init_app(app)
    security.init_app(app)
    errors.init_app(app)
    contact.init_app(app)
    delivery.init_app(app)
    devmail.init_app(app)
    runtime.init_app(app)
    return app
