"""Settings from the environment, validated once at start-up."""

from __future__ import annotations

import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, tzinfo
from email.utils import getaddresses
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from flask import Flask

from .private_files import make_private_folder
from .scanning.clamd import parse_address

MIB = 2**20
# Room in the request body for the form fields beside the largest attachment.
FORM_FIELDS_ROOM = MIB
PLACEHOLDER_KEYS = {"", "changeme", "secret", "secretkey", "dev", "development", "xxx",
                    "test", "default", "password", "flask", "insecure"}
# Words of the keys people copy from examples and forget to replace.
PLACEHOLDER_WORDS = ("changeme", "replaceme", "yoursecret", "placeholder", "notsecret")


class ConfigError(SystemExit):
    """A setting is missing or malformed; the message names the variable."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"contact_site: configuration error: {name} {problem}")


@dataclass(frozen=True)
class Recipient:
    """One entry of CONTACT_RECIPIENTS: the slug posted, the name shown, the address."""

    slug: str
    name: str
    address: str


def _text(name: str, value: Any) -> str | None:
    return None if value is None else str(value)


def _integer(low: int, high: int) -> Callable[[str, Any], int]:
    def parse(name: str, value: Any) -> int:
        try:
            number = int(str(value).strip())
        except ValueError:
            raise ConfigError(name, f"must be a whole number, got {value!r}") from None
        if not low <= number <= high:
            raise ConfigError(name, f"must be between {low} and {high}, got {number}")
        return number

    return parse


def _per_minute(name: str, value: Any) -> int | None:
    """A positive rate, or none/off/empty for no cap."""
    if str(value).strip().lower() in {"", "none", "off"}:
        return None
    return _integer(1, 1_000_000)(name, value)


def _boolean(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off", ""}:
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def _extensions(name: str, value: Any) -> tuple[str, ...]:
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    exts = tuple(dict.fromkeys(e.strip().lower().lstrip(".") for e in items if e.strip()))
    if not exts or not all(re.fullmatch(r"[a-z0-9]{1,10}", e) for e in exts):
        raise ConfigError(name, f"must be a comma-separated list of extensions, got {value!r}")
    return exts


def _readable_file(name: str, value: Any) -> str | None:
    """The path of a readable file, or None when the setting is empty."""
    path = str(value).strip()
    if not path:
        return None
    if not Path(path).is_file() or not os.access(path, os.R_OK):
        raise ConfigError(name, f"must name a readable file, got {path!r}")
    return path


def _ca_file(name: str, value: Any) -> str | None:
    """A readable PEM bundle of CA certificates, loaded once now to fail early."""
    path = _readable_file(name, value)
    if path is None:
        return None
    import ssl  # imported here: only this setting needs it

    try:
        ssl.create_default_context().load_verify_locations(cafile=path)
    except ssl.SSLError:
        raise ConfigError(name, f"must hold PEM CA certificates, got {path!r}") from None
    return path


HOST_NAME = re.compile(r"(?=.{1,253}$)([a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)"
                       r"(?:\.[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?)*", re.IGNORECASE)


def _host_name(name: str, value: Any) -> str | None:
    """A host name such as mail.example.com (EHLO's greeting): never an address literal."""
    text = str(value).strip().rstrip(".")
    if not text:
        return None
    if not HOST_NAME.fullmatch(text) or text.replace(".", "").isdigit():
        raise ConfigError(name, f"must be a host name such as mail.example.com, got {value!r}")
    return text


def _dkim_key_file(name: str, value: Any) -> str | None:
    """A readable PEM RSA private key that signs: a bad key stops start-up, not the mail."""
    path = _readable_file(name, value)
    if path is None:
        return None
    import dkim  # imported here: only this setting needs it

    try:
        dkim.sign(b"From: check@example.com\r\n\r\nkey check\r\n", b"check",
                  b"example.com", Path(path).read_bytes())
    except (dkim.DKIMException, ValueError, IndexError, KeyError) as error:
        raise ConfigError(name, f"must hold an RSA private key in PEM (of at least 1024 bits) "
                                f"that can sign: {error}") from None
    return path


def _log_level(name: str, value: Any) -> str:
    level = str(value).strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
        raise ConfigError(name, f"must be DEBUG, INFO, WARNING, ERROR or CRITICAL, got {value!r}")
    return level


def _backend(name: str, value: Any) -> str:
    if value not in {"thread", "celery"}:
        raise ConfigError(name, f"must be 'thread' or 'celery', got {value!r}")
    return str(value)


def _rate_limit(name: str, value: Any) -> str:
    text = str(value).strip()
    if text.lower() == "off":
        return "off"
    from limits import parse_many  # imported here: only this setting needs it

    try:
        parse_many(text)
    except ValueError:
        example = "'5 per minute;50 per day' or 'off'"
        raise ConfigError(name, f"must look like {example}, got {value!r}") from None
    return text


def _languages(name: str, value: Any) -> tuple[str, ...]:
    # Which of these have a catalogue is checked by i18n.init_app, which knows translations/.
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    codes = tuple(dict.fromkeys(item.strip().lower().replace("-", "_") for item in items
                                if item.strip()))
    if not codes or not all(re.fullmatch(r"[a-z]{2,3}(_[a-z0-9]{2,4})?", c) for c in codes):
        raise ConfigError(name, f"must be a comma-separated list of language codes, got {value!r}")
    return codes


def _proof_of_work(name: str, value: Any) -> str:
    text = str(value).strip().lower()
    if text not in {"altcha", "off"}:
        raise ConfigError(name, f"must be 'altcha' or 'off', got {value!r}")
    return text


def _blocklist_file(name: str, value: Any) -> str | None:
    """An existing, readable file; it is read (and re-read when it changes) by spam.content."""
    path = str(value).strip()
    if not path:
        return None
    if not Path(path).is_file() or not os.access(path, os.R_OK):
        raise ConfigError(name, f"must name a readable file, got {path!r}")
    return str(Path(path).resolve())


def _fallback_keys(name: str, value: Any) -> list[str]:
    """Previous SECRET_KEYs, comma-separated: a list, as Flask's session signing reads it."""
    items = value if isinstance(value, list | tuple) else str(value).split(",")
    keys = [str(item).strip() for item in items if str(item).strip()]
    for number, key in enumerate(keys, 1):
        if is_placeholder_key(key):  # the key itself is never printed
            raise ConfigError(name, f"key {number} of {len(keys)} is a placeholder or shorter "
                              "than 16 characters: list only keys that were real SECRET_KEYs")
    return keys


def time_zone(name: str) -> tzinfo:
    """The zone of a CONTACT_TIMEZONE name; UTC needs no time zone database."""
    return UTC if name == "UTC" else ZoneInfo(name)


def _time_zone_name(name: str, value: Any) -> str:
    """An IANA zone name (Europe/Paris), checked against the time zone database now."""
    text = str(value).strip()
    if text.upper() in {"", "UTC"}:
        return "UTC"
    zones = available_timezones() - {"localtime"}  # the machine's own zone, not an IANA name
    if not zones:
        raise ConfigError(name, f"cannot be {text!r}: no time zone database is installed "
                          "(the system's tzdata package, or `pip install tzdata`)")
    problem = f"must be an IANA time zone name such as 'Europe/Paris' or 'UTC', got {text!r}"
    if text not in zones:
        raise ConfigError(name, problem)
    try:
        time_zone(text)
    except (ZoneInfoNotFoundError, ValueError):  # listed, yet not a zone file Python can read
        raise ConfigError(name, problem) from None
    return text


def _digest(name: str, value: Any) -> str:
    """`off` or `daily`."""
    text = str(value).strip().lower()
    if text not in {"off", "daily"}:
        raise ConfigError(name, f"must be 'off' or 'daily', got {value!r}")
    return text


def _clamd(name: str, value: Any) -> str | None:
    """`tcp://host:port` or `unix:///path/to/clamd.ctl`; empty for no scanning."""
    text = str(value).strip()
    if not text:
        return None
    try:
        parse_address(text)
    except ValueError as error:
        raise ConfigError(name, str(error)) from None
    return text


def _scan_policy(name: str, value: Any) -> str:
    """`hold` or `send`."""
    text = str(value).strip().lower()
    if text not in {"hold", "send"}:
        raise ConfigError(name, f"must be 'hold' or 'send', got {value!r}")
    return text


def _base_url(name: str, value: Any) -> str | None:
    """The site's public http(s) address, without query or fragment, no trailing slash."""
    text = str(value).strip()
    if not text:
        return None
    problem = f"must be an http(s) address such as 'https://contact.example.com', got {text!r}"
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 -- a port that is not a number raises here
    except ValueError:
        raise ConfigError(name, problem) from None
    if "@" in parts.netloc:  # the value is not repeated: it may hold a password
        raise ConfigError(name, "must not hold a user name or password")
    if (parts.scheme not in {"http", "https"} or not parts.hostname
            or any(c.isspace() or not c.isprintable() for c in text)):
        raise ConfigError(name, problem)
    if "?" in text or "#" in text:
        raise ConfigError(name, f"must be the site's address without a query or fragment, "
                          f"got {text!r}")
    return text.rstrip("/")


def slugify(name: str) -> str:
    """Lower-case slug of a recipient's name, as posted in the form."""
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def parse_recipients(name: str, value: Any) -> tuple[Recipient, ...]:
    """Parse `Name <address>, Name <address>` into recipients with unique slugs."""
    text = str(value)
    if any(ord(c) < 32 for c in text):
        raise ConfigError(name, "must not contain control characters")
    recipients: list[Recipient] = []
    for display, address in getaddresses([text]):
        if address.count("@") != 1 or not all(address.split("@")) or " " in address:
            raise ConfigError(name, f"has an entry without a valid address: {text!r}")
        display = display.strip() or address.split("@")[0]
        recipients.append(Recipient(slugify(display) or "recipient", display, address))
    if not recipients:
        raise ConfigError(name, "must name at least one 'Name <address>'")
    slugs = [r.slug for r in recipients]
    if len(set(slugs)) != len(slugs):
        raise ConfigError(name, f"has two names with the same slug: {slugs}")
    return tuple(recipients)


# name: (default, parser). Every value, from the environment or a test mapping,
# goes through its parser, so both may be given as strings.
SETTINGS: dict[str, tuple[Any, Callable[[str, Any], Any]]] = {
    "SECRET_KEY": (None, _text),
    "SECRET_KEY_FALLBACKS": ("", _fallback_keys),
    "DATABASE_URL": (None, _text),
    "UPLOAD_FOLDER": (None, _text),
    "MAIL_SERVER": ("localhost", _text),
    "MAIL_PORT": (25, _integer(1, 65535)),
    "MAIL_USE_TLS": (False, _boolean),
    "MAIL_USE_SSL": (False, _boolean),
    "MAIL_USERNAME": (None, _text),
    "MAIL_PASSWORD": (None, _text),
    "MAIL_DEFAULT_SENDER": ("Contact form <noreply@localhost>", _text),
    "MAIL_TIMEOUT": (30, _integer(1, 3600)),
    "MAIL_TLS_CA_FILE": (None, _ca_file),
    # EHLO's name; unset: the domain of MAIL_DEFAULT_SENDER.
    "MAIL_HELO_NAME": (None, _host_name),
    # DKIM signatures (delivery/dkim.py), all three or none.
    "DKIM_DOMAIN": (None, _host_name),
    "DKIM_SELECTOR": (None, _text),
    "DKIM_PRIVATE_KEY_FILE": (None, _dkim_key_file),
    "CONTACT_RECIPIENTS": ("Site Owner <owner@localhost>", parse_recipients),
    "CONTACT_FORMS_FILE": (None, _text),  # unset: the one built-in form (contact_site/forms)
    "CONTACT_SUBJECT_PREFIX": ("[Contact]", _text),
    "CONTACT_MAX_UPLOAD_MB": (10, _integer(1, 100)),
    "CONTACT_UPLOAD_QUOTA_MB": (2048, _integer(1, 10_000_000)),  # all stored files together
    "CONTACT_ALLOWED_EXTENSIONS": ("pdf,png,jpg,jpeg,gif,txt,docx,odt", _extensions),
    "CONTACT_RATE_LIMIT": ("5 per minute;50 per day", _rate_limit),
    "CONTACT_THANK_YOU_PDF": ("static/thank-you.pdf", _text),
    "CONTACT_THANK_YOU_PER_DAY": (3, _integer(0, 1000)),
    "RATELIMIT_STORAGE_URI": (None, _text),
    "PROXY_FIX_X_FOR": (0, _integer(0, 10)),
    "PROXY_FIX_X_PROTO": (0, _integer(0, 10)),
    "DELIVERY_BACKEND": ("thread", _backend),
    "CELERY_BROKER_URL": ("redis://localhost:6379/0", _text),
    "DELIVERY_RETRY_BASE_SECONDS": (60, _integer(1, 86400)),
    "DELIVERY_RETRY_MAX_SECONDS": (3600, _integer(1, 7 * 86400)),
    "DELIVERY_GIVE_UP_HOURS": (120, _integer(1, 24 * 365)),
    "DELIVERY_CLAIM_SECONDS": (900, _integer(5, 86400)),
    "DELIVERY_BATCH_SIZE": (50, _integer(1, 1000)),
    "DELIVERY_POLL_SECONDS": (5, _integer(1, 3600)),
    "DELIVERY_CONCURRENCY": (4, _integer(1, 64)),
    "DELIVERY_MAX_PER_MINUTE": (None, _per_minute),
    # Webhooks (contact_site.webhooks): given up after this; private targets for tests and LANs.
    "WEBHOOK_GIVE_UP_HOURS": (72, _integer(1, 24 * 365)),
    "WEBHOOK_ALLOW_PRIVATE": (False, _boolean),
    # The site's public address, for links to the console in mails and notifications
    # (e.g. https://contact.example.com).
    "CONTACT_BASE_URL": (None, _base_url),
    # Times in the console and the owner's mail; stored times stay UTC (database.utcnow).
    "CONTACT_TIMEZONE": ("UTC", _time_zone_name),
    # The morning mail to each recipient (records/digest.py): off or daily, at this hour.
    "CONTACT_DIGEST": ("off", _digest),
    "CONTACT_DIGEST_HOUR": (8, _integer(0, 23)),
    # Virus scanning with clamd (contact_site/scanning): its address, how long one file may
    # take, and what the owner's mail does while the scanner is away (hold or send).
    "CONTACT_CLAMD": (None, _clamd),
    "CONTACT_SCAN_TIMEOUT": (30, _integer(1, 3600)),
    "CONTACT_SCAN_UNAVAILABLE": ("hold", _scan_policy),
    # Every console account must add a second factor (authenticator app or passkey) first.
    "CONTACT_REQUIRE_2FA": (False, _boolean),
    "DEV_MAILBOX": (False, _boolean),
    "DEV_MAILBOX_PORT": (1025, _integer(1, 65535)),
    "LOG_LEVEL": ("INFO", _log_level),
    "HEALTHZ_TOKEN": (None, _text),  # Bearer token for /healthz's details; unset: loopback only
    # Retention (docs/privacy.md); 0 keeps for ever.
    "CONTACT_RETENTION_DAYS": (180, _integer(0, 36500)),
    "CONTACT_UPLOAD_RETENTION_DAYS": (30, _integer(0, 36500)),
    "CONTACT_SPAM_RETENTION_DAYS": (14, _integer(0, 36500)),
    "CONTACT_LANGUAGES": ("en,zh", _languages),
    "CONTACT_OWNER_LANGUAGE": (None, _text),
    # Spam defence (docs/spam-verdicts.md).
    "CONTACT_MIN_FILL_SECONDS": (3, _integer(0, 3600)),
    "CONTACT_PROOF_OF_WORK": ("altcha", _proof_of_work),
    "CONTACT_MAX_LINKS": (3, _integer(0, 1000)),
    "CONTACT_SUSPECT_PREFIX": ("[Possible spam]", _text),
    "CONTACT_BLOCKLIST_FILE": (None, _blocklist_file),
    "CONTACT_DUPLICATE_HOURS": (24, _integer(0, 24 * 30)),
}


def load(app: Flask, overrides: Mapping[str, Any] | None) -> None:
    """Fill app.config from defaults, the environment and `overrides`, then validate."""
    raw = {name: default for name, (default, _) in SETTINGS.items()}
    raw.update({name: os.environ[name] for name in SETTINGS if name in os.environ})
    overrides = dict(overrides or {})
    raw.update({k: v for k, v in overrides.items() if k in SETTINGS})
    app.config.update({k: v for k, v in overrides.items() if k not in SETTINGS})
    explicit = {name for name in SETTINGS if name in os.environ} | set(overrides)
    if "DEV_MAILBOX" not in explicit:
        raw["DEV_MAILBOX"] = app.debug
    for name, (_, parse) in SETTINGS.items():
        app.config[name] = parse(name, raw[name]) if raw[name] is not None else None
    _derive(app, explicit)


def _derive(app: Flask, explicit: set[str]) -> None:
    """Settings computed from others: paths, limits, which settings were given."""
    config = app.config
    make_private_folder(app.instance_path)  # it holds the key, the database, captured mail
    config["SECRET_KEY"] = _secret_key(app)
    config.setdefault("SQLALCHEMY_DATABASE_URI", config["DATABASE_URL"]
                      or f"sqlite:///{Path(app.instance_path) / 'contact_site.sqlite'}")
    # Beside instance/: in the checkout, or the folder an installed package runs in.
    upload = Path(config["UPLOAD_FOLDER"] or Path(app.instance_path).parent / "uploads")
    config["UPLOAD_FOLDER"] = str(upload.resolve())
    config["CONTACT_MAX_UPLOAD_BYTES"] = config["CONTACT_MAX_UPLOAD_MB"] * MIB
    config["MAX_CONTENT_LENGTH"] = config["CONTACT_MAX_UPLOAD_BYTES"] + FORM_FIELDS_ROOM
    # Flask's own defaults (500 kB and 1,000 form parts, no SameSite) are not safe enough
    # here; Flask has set them already, so setdefault would leave them as they are.
    # 128 KiB holds the longest message even percent-encoded (10,000 CJK characters).
    safer = {"MAX_FORM_MEMORY_SIZE": 128 * 1024, "MAX_FORM_PARTS": 50,
             "SESSION_COOKIE_HTTPONLY": True, "SESSION_COOKIE_SAMESITE": "Lax"}
    config.update({name: value for name, value in safer.items() if name not in explicit})
    config["MAIL_SUPPRESS_SEND"] = False  # Flask-Mail suppresses under TESTING otherwise
    if config["MAIL_USE_TLS"] and config["MAIL_USE_SSL"]:
        raise ConfigError("MAIL_USE_SSL", "cannot be true together with MAIL_USE_TLS")
    config["MAIL_HELO_NAME"] = config["MAIL_HELO_NAME"] or _sender_domain(
        config["MAIL_DEFAULT_SENDER"])
    _check_dkim(config)
    # The development mailbox may point MAIL_SERVER at itself, but never over a
    # server the operator named.
    config["CONTACT_EXPLICIT_SETTINGS"] = frozenset(explicit)


def _sender_domain(sender: str) -> str:
    """The domain of MAIL_DEFAULT_SENDER, which EHLO names by default."""
    address = getaddresses([sender])[0][1]
    domain = address.rpartition("@")[2].strip().rstrip(".")
    if not domain or not HOST_NAME.fullmatch(domain):
        raise ConfigError("MAIL_DEFAULT_SENDER", f"must be an address with a domain, got "
                                                 f"{sender!r} (or set MAIL_HELO_NAME)")
    return domain


def _check_dkim(config: Mapping[str, Any]) -> None:
    """DKIM_DOMAIN, DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE go together."""
    names = ("DKIM_DOMAIN", "DKIM_SELECTOR", "DKIM_PRIVATE_KEY_FILE")
    given = [name for name in names if config[name]]
    if given and len(given) < len(names):
        missing = ", ".join(name for name in names if name not in given)
        raise ConfigError(missing, f"must be set too: DKIM signing needs {', '.join(names)}")
    selector = config["DKIM_SELECTOR"]
    if selector and not HOST_NAME.fullmatch(selector):
        raise ConfigError("DKIM_SELECTOR", f"must be a DNS label such as 'mail2026', "
                                           f"got {selector!r}")


def is_placeholder_key(key: str) -> bool:
    """True for a SECRET_KEY that is short, repetitive or copied from an example."""
    letters = re.sub(r"[^a-z0-9]", "", key.lower())
    return (len(key) < 16 or len(set(key)) < 8 or letters in PLACEHOLDER_KEYS
            or any(word in letters for word in PLACEHOLDER_WORDS))


def _secret_key(app: Flask) -> str:
    """The configured key; in debug mode a generated one kept in instance/."""
    key: str | None = app.config["SECRET_KEY"]
    if key and not is_placeholder_key(key):
        return key
    if not (app.debug or app.testing):
        problem = "is missing" if not key else "is a placeholder or shorter than 16 characters"
        hint = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"
        raise ConfigError("SECRET_KEY", f"{problem}: set it to a long random string ({hint})")
    if key and app.testing:
        return key
    path = Path(app.instance_path) / "secret_key"
    # Checked by runtime.leave_development_mode: this key is for `flask run --debug` only.
    app.config["CONTACT_DEVELOPMENT_SECRET_KEY"] = True
    if not path.exists():  # created private: the key signs sessions and CSRF tokens
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(32))
    return path.read_text().strip()
