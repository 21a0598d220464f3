"""contact_site: a self-hosted contact page whose mails are sent by a durable outbox."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from flask import Flask

from . import (
    admin,
    contact,
    database,
    delivery,
    devmail,
    errors,
    forms,
    i18n,
    limits,
    logs,
    records,
    runtime,
    schema,
    security,
    spam,
    webhooks,
)
from . import config as settings
from .extensions import mail
from .forms import cli as forms_cli
from .forms import site as forms_site
from .paths import data_root, resource_root


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Assemble the application: settings, extensions, blueprints, commands. Nothing starts."""
    # root_path holds templates/, static/ and translations/ (a checkout's own, or the
    # installed package's copies); instance/ is in the checkout or the current folder.
    app = Flask(__name__, root_path=str(resource_root()),
                instance_path=str(data_root() / "instance"), instance_relative_config=True)
    settings.load(app, config)
    logs.init_app(app)
    database.init_app(app)
    schema.init_app(app)
    mail.init_app(app)
    security.init_app(app)
    forms.init_app(app)  # the declared forms: the limits, pages and mails follow them
    forms_site.init_app(app)  # [site] on every page: its stylesheet, logo and name
    forms_cli.init_app(app)  # flask forms check|show
    webhooks.init_app(app)  # every declared webhook's secret is in the environment
    limits.init_app(app)  # the request class: every reader of a body meets the bound
    errors.init_app(app)
    i18n.init_app(app)  # before the blueprints: their templates and forms use it
    contact.init_app(app)
    spam.init_app(app)
    admin.init_app(app)  # after security: it gives the console a session cookie of its own
    delivery.init_app(app)
    records.init_app(app)
    devmail.init_app(app)
    runtime.init_app(app)
    return app
