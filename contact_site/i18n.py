"""Languages (docs/languages.md): which one a request is answered in, and the catalogues behind it.

Visitors get `?lang=` (remembered in a cookie), then the cookie, then their
browser's Accept-Language, then the first of CONTACT_LANGUAGES. The console and
the owner's mail use CONTACT_OWNER_LANGUAGE, and show times in CONTACT_TIMEZONE
(`local_time`). Mails composed by a worker name their language explicitly
(`in_language`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from babel import Locale, UnknownLocaleError
from flask import Flask, Response, current_app, g, has_request_context, request
from flask_babel import force_locale, get_locale

from .config import ConfigError, time_zone
from .extensions import babel
from .paths import resource_root

TRANSLATIONS = resource_root() / "translations"
SOURCE_LANGUAGE = "en"  # the msgids are English: an `en` catalogue is optional (overrides)
COOKIE = "lang"
COOKIE_MAX_AGE = 365 * 24 * 3600
CONSOLE_BLUEPRINT = "admin"
# BCP 47 tags for <html lang> where the catalogue's code is not one: Chinese is written
# in two scripts, and `zh` here is Simplified Chinese.
HTML_LANG = {"zh": "zh-Hans", "zh_tw": "zh-Hant", "zh_hk": "zh-Hant-HK"}


@dataclass(frozen=True)
class LanguageLink:
    """One entry of the page's language switcher."""

    code: str
    name: str  # the language's own name ("中文"), as its speakers look for it
    html_lang: str
    href: str
    current: bool


def languages() -> tuple[str, ...]:
    """The languages offered, the default first."""
    return tuple(current_app.config["CONTACT_LANGUAGES"])


def owner_language() -> str:
    """The language of the console and of the owner's mail."""
    return str(current_app.config["CONTACT_OWNER_LANGUAGE"] or languages()[0])


def current_language() -> str:
    """The language this request (or this `in_language` block) is answered in."""
    locale = get_locale()
    return str(locale) if locale is not None else languages()[0]


def _offered(code: str | None) -> str | None:
    """The offered language this code names (`zh-CN` style accepted), or None."""
    wanted = (code or "").strip().lower().replace("-", "_")
    return wanted if wanted in languages() else None


def _requested() -> str | None:
    """A valid `?lang=`, remembered for the cookie set on the answer."""
    asked = _offered(request.args.get("lang"))
    if asked:
        g.contact_lang_chosen = asked
    return asked


def select_locale() -> str:
    """The language of this request (docs/languages.md)."""
    if not has_request_context():
        return languages()[0]
    if request.blueprint == CONSOLE_BLUEPRINT:
        return owner_language()
    # Werkzeug falls back to the primary subtag: `zh-CN` and `zh-Hans` find `zh`.
    return (_requested() or _offered(request.cookies.get(COOKIE))
            or request.accept_languages.best_match(languages()) or languages()[0])


def remember_choice(response: Response) -> Response:
    """Keep a language chosen with `?lang=` for the visitor's next pages."""
    chosen = g.get("contact_lang_chosen")
    if chosen:
        response.set_cookie(COOKIE, chosen, max_age=COOKIE_MAX_AGE, samesite="Lax",
                            secure=request.is_secure, httponly=True)
    if request.blueprint != CONSOLE_BLUEPRINT:
        # A shared cache must not hand a Chinese page to an English browser.
        response.vary.update(("Accept-Language", "Cookie"))
    return response


def html_lang(code: str | None = None) -> str:
    """The BCP 47 tag for `<html lang>` of this language (the current one by default)."""
    code = code or current_language()
    return HTML_LANG.get(code, code.replace("_", "-"))


def native_name(code: str) -> str:
    """The language's name in itself: English, 中文, Deutsch."""
    try:
        name = Locale.parse(code).get_display_name(code)
    except (ValueError, UnknownLocaleError):
        return code
    return name[:1].upper() + name[1:] if name else code


def language_links() -> list[LanguageLink]:
    """Links to this page in each offered language; plain links, so no script is needed."""
    current = current_language()
    kept = [(key, value) for key, value in request.args.items(multi=True) if key != "lang"]
    return [LanguageLink(code, native_name(code), html_lang(code),
                         "?" + urlencode([*kept, ("lang", code)]), code == current)
            for code in languages()]


def template_values() -> dict[str, Any]:
    """`html_lang` for every page; the language links on public pages when there is a choice."""
    values: dict[str, Any] = {"html_lang": html_lang()}
    if has_request_context() and request.blueprint != CONSOLE_BLUEPRINT and len(languages()) > 1:
        values["language_links"] = language_links()
    return values


@contextmanager
def in_language(code: str | None) -> Iterator[None]:
    """Compose in this language (a stored submission's, or the owner's)."""
    with force_locale(_offered(code) or languages()[0]):
        yield


def local_time(value: datetime) -> str:
    """A time (naive ones are UTC, as stored) as the owner reads it: `2026-12-07 14:05 CET`."""
    aware = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    local = aware.astimezone(time_zone(current_app.config["CONTACT_TIMEZONE"]))
    return f"{local:%Y-%m-%d %H:%M} {zone_label(local)}"


def zone_label(local: datetime) -> str:
    """The zone's abbreviation (CET, IST); its offset (UTC+05:45) where it has only numbers."""
    name = local.tzname() or ""
    if name and name[0] not in "+-":
        return name
    minutes = int((local.utcoffset() or timedelta(0)).total_seconds()) // 60
    sign = "-" if minutes < 0 else "+"
    return f"UTC{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def _check_languages(app: Flask) -> None:
    """Every offered language but the source has a compiled catalogue; the owner's is offered."""
    codes = app.config["CONTACT_LANGUAGES"]
    # A checkout has the .po files; an installed package only the compiled .mo files.
    missing = [c for c in codes if c != SOURCE_LANGUAGE
               and not any((TRANSLATIONS / c / "LC_MESSAGES" / f"messages.{kind}").is_file()
                           for kind in ("po", "mo"))]
    if missing:
        raise ConfigError("CONTACT_LANGUAGES", f"has no catalogue in translations/ for {missing}")
    # Without its .mo file a language would quietly fall back to English.
    uncompiled = [c for c in codes if (TRANSLATIONS / c / "LC_MESSAGES" / "messages.po").is_file()
                  and not (TRANSLATIONS / c / "LC_MESSAGES" / "messages.mo").is_file()]
    if uncompiled:
        raise ConfigError("CONTACT_LANGUAGES", f"catalogues of {uncompiled} are not compiled: "
                          "run `make install` (pybabel compile -d translations)")
    owner = app.config["CONTACT_OWNER_LANGUAGE"]
    if owner is not None:
        code = owner.strip().lower().replace("-", "_")
        if code not in codes:
            raise ConfigError("CONTACT_OWNER_LANGUAGE",
                              f"must be one of {list(codes)}, got {owner!r}")
        app.config["CONTACT_OWNER_LANGUAGE"] = code


def init_app(app: Flask) -> None:
    """Flask-Babel on translations/, the locale selector, the language cookie, local times."""
    _check_languages(app)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", str(TRANSLATIONS))
    app.config.setdefault("BABEL_DEFAULT_LOCALE", app.config["CONTACT_LANGUAGES"][0])
    babel.init_app(app, locale_selector=select_locale)
    app.after_request(remember_choice)
    app.context_processor(template_values)
    app.add_template_filter(local_time, "local_time")
