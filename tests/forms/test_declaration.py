"""The forms file: typed objects from a good file, one line naming the problem of a bad one."""

from __future__ import annotations

from pathlib import Path

import pytest

from contact_site.config import Recipient
from contact_site.forms.declaration import (
    Declaration,
    FormsFileError,
    contrast_on_white,
    default_declaration,
    load_forms,
)
from contact_site.submissions.models import EMAIL_MAX, MESSAGE_MAX, NAME_MAX, SUBJECT_MAX

LANGUAGES = ("en", "zh")
EMAIL = '[[forms.fields]]\nname = "email"\ntype = "email"\nlabel = "Email"\n'
FORM = '[[forms]]\nslug = "contact"\ntitle = "Contact"\n'
GOOD = """
[site]
name = "Example Ltd"
home_url = "https://www.example.com/"
accent_color = "#0b5fff"
logo = "logo.svg"

[[forms]]
slug = "contact"
title = { en = "Contact us", zh = "联系我们" }
recipients = ["Sales <sales@example.com>", "Support <support@example.com>"]
thank_you_pdf = "thank-you.pdf"
allowed_origins = ["https://www.example.com", "https://*.example.org:8443"]

  [[forms.webhooks]]
  url = "https://crm.example.com/hooks/contact"
  format = "slack"
  secret_env = "CRM_WEBHOOK_SECRET"
  events = ["submission.created", "delivery.failed"]
  include_suspect = true

  [[forms.fields]]
  name = "email"
  type = "email"
  label = { en = "Email", zh = "电子邮件" }
  required = true

  [[forms.fields]]
  name = "phone"
  type = "tel"
  label = "Phone"
  max_length = 30

  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = "Message"

  [[forms.fields]]
  name = "topic"
  type = "select"
  label = "Topic"
  options = [{ value = "sales", label = "Sales" }, { value = "help", label = "Help" }]

  [[forms.fields]]
  name = "seats"
  type = "number"
  label = "Seats"
  min = 1
  max = 50

  [[forms.fields]]
  name = "privacy"
  type = "consent"
  label = "Privacy"
  required = true
  text = { en = "I agree.", zh = "我同意。" }

  [[forms.fields]]
  name = "cv"
  type = "file"
  label = "CV"
  max_files = 2
  max_mb = 5
  extensions = ["pdf"]

[[forms]]
slug = "careers"
title = "Careers"
thank_you_pdf = false
""" + EMAIL


def write(tmp_path, text, name="forms.toml"):
    """The forms file `text` in tmp_path, with the files it may name beside it."""
    (tmp_path / "logo.svg").write_text("<svg/>")
    (tmp_path / "thank-you.pdf").write_bytes(b"%PDF-1.4")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def with_field(lines):
    """A form with an email field and one more field of `lines`."""
    return FORM + EMAIL + "[[forms.fields]]\n" + lines


BAD_FILES = [
    ("not toml", "[[forms]\n", "is not valid TOML: "),
    ("no forms", '[site]\nname = "X"\n', "forms: missing"),
    ("unknown top-level key", "colour = 1\n" + FORM + EMAIL, "colour: unknown key"),
    ("unknown form key", FORM + "colour = 1\n" + EMAIL, "form 'contact': colour: unknown key"),
    ("unknown field key", FORM + EMAIL + "colour = 1\n",
     "form 'contact': field 'email': colour: unknown key"),
    ("unknown type", with_field('name = "x"\ntype = "phone"\nlabel = "X"\n'),
     "form 'contact': field 'x': type: unknown type 'phone' (one of: text, textarea, email, "
     "tel, url, number, date, select, checkbox, consent, file)"),
    ("duplicate field", FORM + EMAIL + EMAIL,
     "form 'contact': fields: field 'email' is declared twice"),
    ("no email field", FORM + '[[forms.fields]]\nname = "n"\ntype = "text"\nlabel = "N"\n',
     "form 'contact': fields: no field named 'email' (every form needs the visitor's address)"),
    ("no fields", FORM, "form 'contact': fields: missing"),
    ("slug twice", FORM + EMAIL + FORM + EMAIL,
     "forms: form #2 uses slug 'contact', already the slug of form #1"),
    ("bad slug", FORM.replace("contact", "Contact Us") + EMAIL,
     "form 'Contact Us': slug: 'Contact Us' does not match [a-z0-9-]{1,40}"),
    ("form without slug", '[[forms]]\ntitle = "T"\n' + EMAIL, "form #1: slug: missing"),
    ("bad field name", with_field('name = "Phone"\ntype = "tel"\nlabel = "P"\n'),
     "form 'contact': field 'Phone': name: 'Phone' does not match [a-z][a-z0-9_]{0,39}"),
    ("label missing a language", with_field('name = "x"\ntype = "text"\nlabel = { en = "X" }\n'),
     "form 'contact': field 'x': label: missing for language zh"),
    ("title missing a language", FORM.replace('"Contact"', '{ zh = "联系" }') + EMAIL,
     "form 'contact': title: missing for language en"),
    ("empty label", with_field('name = "x"\ntype = "text"\nlabel = ""\n'),
     "form 'contact': field 'x': label: must be a non-empty string or a table of one string "
     "per language"),
    ("options on a text field",
     with_field('name = "x"\ntype = "text"\nlabel = "X"\n'
                'options = [{ value = "a", label = "A" }]\n'),
     "form 'contact': field 'x': options is not taken by type text (only by select)"),
    ("min on a text field", with_field('name = "x"\ntype = "text"\nlabel = "X"\nmin = 1\n'),
     "form 'contact': field 'x': min is not taken by type text (only by number)"),
    ("select without options", with_field('name = "x"\ntype = "select"\nlabel = "X"\n'),
     "form 'contact': field 'x': a select field needs options"),
    ("option without label",
     with_field('name = "x"\ntype = "select"\nlabel = "X"\noptions = [{ value = "a" }]\n'),
     "form 'contact': field 'x': options[1].label: missing"),
    ("consent without text", with_field('name = "x"\ntype = "consent"\nlabel = "X"\n'),
     "form 'contact': field 'x': a consent field needs the text the visitor agrees to"),
    ("min above max", with_field('name = "x"\ntype = "number"\nlabel = "X"\nmin = 5\nmax = 1\n'),
     "form 'contact': field 'x': min 5 is above max 1"),
    ("email of another type",
     FORM + '[[forms.fields]]\nname = "email"\ntype = "text"\nlabel = "E"\n',
     "form 'contact': field 'email': a field named email must have type email"),
    ("zero max_length", with_field('name = "x"\ntype = "text"\nlabel = "X"\nmax_length = 0\n'),
     "form 'contact': field 'x': max_length: Input should be greater than 0"),
    ("bad recipient", FORM + 'recipients = ["Sales"]\n' + EMAIL,
     "form 'contact': recipients: has an entry without a valid address: 'Sales'"),
    ("thank_you_pdf true", FORM + "thank_you_pdf = true\n" + EMAIL,
     "form 'contact': thank_you_pdf: must be a file name, or false for a thank-you mail "
     "without a PDF"),
    ("thank_you_pdf absent", FORM + 'thank_you_pdf = "gone.pdf"\n' + EMAIL,
     "form 'contact': thank_you_pdf: 'gone.pdf' is not a file beside the forms file"),
    ("origin with a path", FORM + 'allowed_origins = ["https://x.org/contact"]\n' + EMAIL,
     "form 'contact': allowed_origins[1]: 'https://x.org/contact' is not an origin like "
     "https://www.example.com (no path; only a leading '*.' wildcard)"),
    ("wildcard inside", FORM + 'allowed_origins = ["https://www.*.x.org"]\n' + EMAIL,
     "form 'contact': allowed_origins[1]: 'https://www.*.x.org' is not an origin like "
     "https://www.example.com (no path; only a leading '*.' wildcard)"),
    ("webhook event", FORM + '[[forms.webhooks]]\nurl = "https://x.org/h"\nevents = ["x"]\n'
     + EMAIL, "form 'contact': webhooks[1].events[1]: Input should be 'submission.created' "
     "or 'delivery.failed'"),
    ("webhook format", FORM + '[[forms.webhooks]]\nurl = "https://x.org/h"\nformat = "teams"\n'
     + EMAIL, "form 'contact': webhooks[1].format: Input should be 'standard', 'slack' or "
     "'ntfy'"),
    ("pale accent colour", '[site]\naccent_color = "#aaaaaa"\n' + FORM + EMAIL,
     "site.accent_color: #aaaaaa has a contrast of 2.32:1 on white, under 4.5:1"),
    ("logo in a folder", '[site]\nlogo = "../logo.svg"\n' + FORM + EMAIL,
     "site.logo: '../logo.svg' must be a file name beside the forms file, without folders"),
]


@pytest.mark.parametrize(("text", "expected"), [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_a_bad_file_is_refused_with_one_line(tmp_path, text, expected):
    """Each problem is one line: the file, the form, the field, the problem."""
    path = write(tmp_path, text)
    with pytest.raises(FormsFileError) as raised:
        load_forms(path, LANGUAGES)
    line = str(raised.value)
    assert "\n" not in line
    assert line.startswith(f"{path}: {expected}")
    if not expected.endswith(": "):
        assert line == f"{path}: {expected}"


def test_a_missing_file_is_named(tmp_path):
    """A file that is not there stops start-up naming it."""
    with pytest.raises(FormsFileError, match=r"forms\.toml: cannot be read: No such file"):
        load_forms(tmp_path / "forms.toml", LANGUAGES)


def test_a_good_file_becomes_typed_objects(tmp_path):
    """Site, forms, fields, webhooks and recipients come back typed, defaults filled in."""
    declaration = load_forms(write(tmp_path, GOOD), LANGUAGES)
    assert declaration.site.name == "Example Ltd"
    assert declaration.site.accent_color == "#0b5fff"
    contact, careers = declaration.forms
    assert contact.title == {"en": "Contact us", "zh": "联系我们"}
    assert contact.recipients == (Recipient("sales", "Sales", "sales@example.com"),
                                  Recipient("support", "Support", "support@example.com"))
    assert contact.allowed_origins == ("https://www.example.com", "https://*.example.org:8443")
    hook = contact.webhooks[0]
    assert (hook.format, hook.secret_env, hook.include_suspect) == (
        "slack", "CRM_WEBHOOK_SECRET", True)
    assert hook.events == ("submission.created", "delivery.failed")
    assert [f.name for f in contact.fields] == [
        "email", "phone", "message", "topic", "seats", "privacy", "cv"]
    assert contact.field("phone").max_length == 30
    assert contact.field("message").max_length == 10_000
    assert [o.value for o in contact.field("topic").options] == ["sales", "help"]
    assert (contact.field("seats").min, contact.field("seats").max) == (1, 50)
    cv = contact.field("cv")
    assert (cv.max_files, cv.max_mb, cv.extensions) == (2, 5, ("pdf",))
    assert (contact.thank_you, contact.thank_you_pdf) == (True, "thank-you.pdf")
    assert (careers.thank_you_pdf, careers.recipients) == (False, ())
    assert careers.field("email").max_length == EMAIL_MAX  # an address may take all 254
    assert declaration.form("careers") is careers and declaration.form("nope") is None


def test_plain_string_labels_serve_every_language(tmp_path):
    """A label given as one string needs no table, whatever languages are offered."""
    declaration = load_forms(write(tmp_path, FORM + EMAIL), ("en", "zh", "fr"))
    assert declaration.forms[0].fields[0].label == "Email"


def test_without_a_file_the_form_of_today():
    """The default declaration: today's six fields, with today's limits and recipients."""
    recipients = (Recipient("sales", "Sales", "sales@example.com"),
                  Recipient("support", "Support", "support@example.com"))
    declaration = default_declaration(recipients)
    (form,) = declaration.forms
    assert isinstance(declaration, Declaration)
    assert form.recipients == recipients
    assert [f.name for f in form.fields] == [
        "recipient", "name", "email", "subject", "message", "attachment"]
    assert [f.max_length for f in form.fields[1:5]] == [
        NAME_MAX, EMAIL_MAX, SUBJECT_MAX, MESSAGE_MAX]
    assert [f.required for f in form.fields] == [True, False, True, True, True, False]
    assert form.field("attachment").type == "file"


def test_one_recipient_is_not_a_choice():
    """With one recipient the form has nothing to choose: no recipient field, declared or not."""
    only = (Recipient("sales", "Sales", "sales@example.com"),)
    assert [f.name for f in default_declaration(only).forms[0].fields] == [
        "name", "email", "subject", "message", "attachment"]


def test_the_worked_example_of_the_readme_loads():
    """docs/forms.example.toml, which the README points to, is a valid forms file."""
    path = Path(__file__).resolve().parents[2] / "docs" / "forms.example.toml"
    declaration = load_forms(path, ("en", "zh"))
    assert [f.slug for f in declaration.forms] == ["contact", "careers"]
    assert declaration.site.name == "Example Ltd"


def test_the_version_changes_only_with_its_own_form(tmp_path):
    """Editing one form changes its version and leaves the other's alone."""
    before = load_forms(write(tmp_path, GOOD), LANGUAGES).forms
    edited = GOOD.replace('title = "Careers"', 'title = "Jobs"')
    after = load_forms(write(tmp_path, edited, "edited.toml"), LANGUAGES).forms
    assert after[0].version == before[0].version
    assert after[1].version != before[1].version
    assert len(before[0].version) == 64


def test_the_version_ignores_layout_and_spelled_out_defaults(tmp_path):
    """Comments, spacing and a default written out do not change a form's version."""
    plain = load_forms(write(tmp_path, FORM + EMAIL), LANGUAGES).forms[0]
    spelled = FORM + "thank_you = true  # the default\n\n" + EMAIL + "required = false\n"
    same = load_forms(write(tmp_path, spelled, "spelled.toml"), LANGUAGES).forms[0]
    assert same.version == plain.version


@pytest.mark.parametrize(("color", "ratio"), [
    ("#000000", 21.0), ("#ffffff", 1.0), ("#0b5fff", 5.13), ("#777", 4.48)])
def test_contrast_on_white_follows_wcag(color, ratio):
    """The relative-luminance contrast of WCAG 2, to two decimals."""
    assert round(contrast_on_white(color), 2) == ratio
