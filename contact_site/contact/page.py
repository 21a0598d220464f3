"""The form's page: its fields with their hints, limits and the script's words, and where
it leads after a message is accepted."""

from __future__ import annotations

from typing import Any

from flask import current_app, render_template, request, url_for
from flask_babel import format_number
from flask_babel import gettext as _
from flask_babel import lazy_gettext as _l

from .. import i18n
from ..forms import Field, Form, declaration_of, local_text
from ..spam import issue_form_time
from ..submissions.content import new_submission_key
from . import uploads
from .fields import file_rule
from .forms import SubmissionForm
from .rules import required_message
from .uploads import FileRule

CHOOSE_FILE_AGAIN = _l("Choose your file again: a file cannot be kept for you when nothing "
                       "was sent.")


def render_form(form: SubmissionForm, status: int = 200, notice: str | None = None,
                template: str = "contact/form.html",
                **context: Any) -> tuple[str, int, dict[str, str]]:
    """The form's page with its fields, limits, error messages and a notice if any
    (`template`: the iframe's page or the embed script's fragment instead)."""
    if not form.submission_key.data:
        form.submission_key.data = new_submission_key()
    # A form sent again after an error keeps the time it was first served: a fresh one
    # would make a quick fix-and-resend look too fast.
    if not form.form_time.data:
        form.form_time.data = issue_form_time()
    declared = form.declared
    rules = {f.name: file_rule(f) for f in declared.fields if f.type == "file"}
    # The fragment is put in another site's page: every address in it names this site.
    external = template == "contact/fragment.html"
    framed = template == "contact/embed.html"  # its thanks page must be one it may frame
    page = render_template(
        template, form=form, declared=declared, notice=notice,
        local=lambda text: local_text(text, i18n.current_language()),
        default_help=default_help, required_messages=required_messages,
        title=local_text(declared.title, i18n.current_language()),
        action=action_of(declared.slug, external or framed, external),
        file_rules=rules,
        thanks_url=thanks_url(declared.slug, framed, external, context.get("parent_origin")),
        external=external,
        max_upload_bytes=max((form.declared.file_bytes(current_app.config[
            "CONTACT_MAX_UPLOAD_MB"]), 1)),
        too_large={name: uploads.too_large_message(rule) for name, rule in rules.items()},
        bad_type={name: uploads.bad_type_message(rule) for name, rule in rules.items()},
        **{"back_url": None, "next_url": None, "token_field": None, **context},
    )
    # The page holds a token and a key for this visitor alone: no cache may keep it.
    return page, status, {"Cache-Control": "no-store"}


def default_help(declared: Field, rules: dict[str, FileRule]) -> str | None:  # noqa: PLR0911
    """The hint under a field that declares none: where the answer goes, how long, which files."""
    if declared.name == "email":
        return str(_("The answer and a confirmation will be sent to this address."))
    if declared.type == "textarea" and declared.max_length:
        return str(_("Up to %(max)s characters.", max=format_number(declared.max_length)))
    if declared.type != "file":
        return None
    rule = rules[declared.name]
    size, types = f"{rule.max_mb:g}", ", ".join(rule.extensions)
    if declared.max_files == 1:
        if declared.required:
            return str(_("One file up to %(size)s MB: %(types)s.", size=size, types=types))
        return str(_("Optional. One file up to %(size)s MB: %(types)s.", size=size, types=types))
    if declared.required:
        return str(_("Up to %(count)s files, each up to %(size)s MB: %(types)s.",
                 count=declared.max_files, size=size, types=types))
    return str(_("Optional. Up to %(count)s files, each up to %(size)s MB: %(types)s.",
             count=declared.max_files, size=size, types=types))


def required_messages(declared: Form) -> dict[str, str]:
    """What the page's script says of each required field left empty: the server's words."""
    language = i18n.current_language()
    return {f.name: required_message(f.name, f.type, local_text(f.label, language))
            for f in declared.fields if f.required}


def ask_for_file_again(form: SubmissionForm) -> None:
    """A page cannot hand a file back to the browser: say so beside each field a file was
    sent with."""
    for declared in form.declared.fields:
        if declared.type == "file" and any(
                file.filename for file in request.files.getlist(declared.name)):
            form[declared.name].errors = [str(CHOOSE_FILE_AGAIN)]


def action_of(slug: str, elsewhere: bool, external: bool) -> str:
    """Where the form posts: this address on the site's own page; for a form in another
    site's page or a frame, the form's own address with its language (no cookie keeps it
    there)."""
    if not elsewhere:
        return request.path
    return url_for("contact.submit", slug=slug, lang=i18n.current_language(),
                   _external=external)


def thanks_url(slug: str, framed: bool = False, external: bool = False,
               parent: str | None = None) -> str:
    """The thanks page, naming the form unless it is the first (served at /); `framed`:
    inside the form's iframe (`parent`: the page around it, told the frame's height)."""
    first = declaration_of().forms[0].slug
    named = None if slug == first and not framed else slug
    return url_for("contact.thanks", form=named, embed="1" if framed else None,
                   origin=parent if framed else None, _external=external)
