"""The development mailbox: an SMTP sink on loopback and a page listing what it caught."""

from __future__ import annotations

import ipaddress
import logging
import re
import uuid
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from flask import Blueprint, Flask, Response, abort, current_app, render_template, request

from .app_state import state_of
from .database import utcnow
from .private_files import make_private_folder, write_private

log = logging.getLogger("contact_site.devmail")
bp = Blueprint("devmail", __name__, url_prefix="/dev/mailbox")
MAIL_ID = re.compile(r"[0-9]{8}T[0-9]{6}-[0-9a-f]{32}")
_controllers: dict[str, Controller] = {}


@dataclass
class DevMailboxState:
    """Whether this process started the sink: the pages answer only then."""

    started: bool = False


def state(app: Flask) -> DevMailboxState:
    """The app's dev mailbox state in this process."""
    return state_of(app, DevMailboxState)


class SaveToFolder:
    """aiosmtpd handler that writes each received mail as an .eml file."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    async def handle_DATA(self, _server: Any, _session: Any, envelope: Any) -> str:
        """Keep the exact bytes received; answer 250."""
        name = f"{utcnow():%Y%m%dT%H%M%S}-{uuid.uuid4().hex}.eml"
        write_private(self.folder / name, envelope.original_content or envelope.content)
        return "250 Message captured by the dev mailbox"


def mailbox_folder(app: Flask | None = None) -> Path:
    """Where captured mails are kept: DEV_MAILBOX_FOLDER, by default instance/devmail/."""
    app = app or current_app
    return Path(app.config.get("DEV_MAILBOX_FOLDER") or Path(app.instance_path) / "devmail")


def start_sink(app: Flask) -> bool:
    """Listen on 127.0.0.1:DEV_MAILBOX_PORT once per process; False if the port is taken."""
    folder = mailbox_folder(app)
    make_private_folder(folder)  # the mails carry visitors' messages and files
    port = app.config["DEV_MAILBOX_PORT"]
    if str(folder) in _controllers:
        return True
    # SMTPUTF8 as most providers offer it: mails to international addresses are captured.
    controller = Controller(SaveToFolder(folder), hostname="127.0.0.1", port=port,
                            data_size_limit=64 * 2**20, enable_SMTPUTF8=True)
    try:
        controller.start()
    except (OSError, RuntimeError):
        log.warning("dev mailbox port %s is taken; another process may capture the mail", port)
        return False
    _controllers[str(folder)] = controller
    log.info("dev mailbox listening on 127.0.0.1:%s, shown at /dev/mailbox", port)
    return True


def start(app: Flask) -> None:
    """Capture this process's mail: the sink, and MAIL_SERVER pointed at it unless set."""
    start_sink(app)
    state(app).started = True
    if "MAIL_SERVER" not in app.config["CONTACT_EXPLICIT_SETTINGS"]:
        app.config["MAIL_SERVER"], app.config["MAIL_PORT"] = "127.0.0.1", app.config[
            "DEV_MAILBOX_PORT"]
        app.config["MAIL_USE_TLS"] = app.config["MAIL_USE_SSL"] = False


def stop_sinks() -> None:
    """Stop every sink this process started (for tests)."""
    while _controllers:
        _controllers.popitem()[1].stop()


@dataclass
class CapturedMail:
    """A captured mail as the mailbox pages show it."""

    id: str
    message: EmailMessage
    date: str = ""
    to: str = ""
    from_: str = ""
    reply_to: str = ""
    subject: str = ""
    message_id: str = ""
    headers: list[tuple[str, str]] = field(default_factory=list)
    text: str | None = None
    has_html: bool = False
    attachments: list[dict[str, Any]] = field(default_factory=list)

    @property
    def attachment_count(self) -> int:
        """How many files the mail carries."""
        return len(self.attachments)


def load(mail_id: str) -> CapturedMail:
    """Parse one captured mail, or 404."""
    path = mailbox_folder() / f"{mail_id}.eml"
    if not MAIL_ID.fullmatch(mail_id) or not path.is_file():
        abort(404)
    message = BytesParser(policy=policy.default).parsebytes(path.read_bytes())
    text_part = message.get_body(("plain",))
    parts = list(message.iter_attachments())
    return CapturedMail(
        id=mail_id, message=message, date=str(message["Date"] or ""), to=str(message["To"] or ""),
        from_=str(message["From"] or ""), reply_to=str(message["Reply-To"] or ""),
        subject=str(message["Subject"] or ""), message_id=str(message["Message-ID"] or ""),
        headers=[(k, str(v)) for k, v in message.items()],
        text=text_part.get_content() if text_part else None,
        has_html=message.get_body(("html",)) is not None,
        attachments=[{"index": i, "filename": p.get_filename() or f"part-{i}",
                      "content_type": p.get_content_type(),
                      "size": len(p.get_payload(decode=True) or b"")} for i, p in enumerate(parts)],
    )


@bp.get("")
def mailbox() -> Any:
    """Every captured mail, newest first."""
    names = sorted((p.stem for p in mailbox_folder().glob("*.eml")), reverse=True)
    return render_template("dev/mailbox.html", mails=[load(n) for n in names])


@bp.get("/<mail_id>")
def message(mail_id: str) -> Any:
    """One captured mail: headers, text, HTML in a sandbox, attachments."""
    return render_template("dev/message.html", mail=load(mail_id))


@bp.get("/<mail_id>/html")
def html_body(mail_id: str) -> Any:
    """The HTML body alone, for the sandboxed frame; scripts stay forbidden by CSP."""
    part = load(mail_id).message.get_body(("html",))
    if part is None:
        abort(404)
    response = Response(part.get_content(), mimetype="text/html")
    response.headers["Content-Security-Policy"] = "default-src 'none'; frame-ancestors 'self'"
    return response


@bp.get("/<mail_id>/attachments/<int:index>")
def attachment(mail_id: str, index: int) -> Any:
    """Download one attachment under its own name."""
    parts = list(load(mail_id).message.iter_attachments())
    if not 0 <= index < len(parts):
        abort(404)
    part = parts[index]
    response = Response(part.get_payload(decode=True), mimetype="application/octet-stream")
    response.headers.set("Content-Disposition", "attachment",
                         filename=part.get_filename() or f"part-{index}")
    return response


def is_loopback_client(address: str | None) -> bool:
    """127.0.0.0/8, ::1 and their IPv4-mapped form; anything unparsable is not."""
    try:
        ip = ipaddress.ip_address(address or "")
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_loopback


# Set by a proxy for the client it forwards: a request carrying one is not a local user.
FORWARDING_HEADERS = ("HTTP_FORWARDED", "HTTP_X_FORWARDED_FOR", "HTTP_X_REAL_IP")


def is_direct_loopback(environ: dict[str, Any]) -> bool:
    """Whether the peer of the connection itself is loopback, and forwards nobody.

    Behind a proxy on the same host every visitor arrives from 127.0.0.1, so a request
    with a forwarding header is refused; and the address is the server's, from before
    ProxyFix (PROXY_FIX_X_FOR) replaced it with one a header named.
    """
    if any(name in environ for name in FORWARDING_HEADERS):
        return False
    original = environ.get("werkzeug.proxy_fix.orig") or environ
    return is_loopback_client(original.get("REMOTE_ADDR"))


@bp.before_request
def only_where_started() -> None:
    """The pages exist only in a process whose sink was started, and only for local users."""
    if not state(current_app).started:
        abort(404)
    if not is_direct_loopback(request.environ):
        abort(404)


def init_app(app: Flask) -> None:
    """Add the mailbox pages in development mode; they answer once `start` ran."""
    if app.config["DEV_MAILBOX"]:
        app.register_blueprint(bp)
