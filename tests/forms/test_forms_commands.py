"""`flask --app contact_site forms check|show`: the forms file checked without starting the
site, and the forms shown as the site serves them."""

from __future__ import annotations

import base64
import json
import subprocess

import pytest

from support.processes import FLASK, PROJECT_ROOT, worker_env

# The commands need no delivery thread, whose log lines would mix into what they print.
pytestmark = pytest.mark.manual_delivery

EMAIL = '  [[forms.fields]]\n  name = "email"\n  type = "email"\n  label = "Email"\n'
GOOD = """
[site]
name = "Example Ltd"
home_url = "https://www.example.com/"
accent_color = "#0b5fff"

[[forms]]
slug = "contact"
title = { en = "Contact us", zh = "联系我们" }
recipients = ["Sales <sales@example.com>", "Support <support@example.com>"]
thank_you_pdf = "thank-you.pdf"
allowed_origins = ["https://www.example.com"]

  [[forms.webhooks]]
  url = "https://crm.example.com/hooks/contact"
  format = "slack"
  secret_env = "CRM_WEBHOOK_SECRET"
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
  name = "topic"
  type = "select"
  label = "Topic"
  options = [{ value = "sales", label = { en = "Buying", zh = "购买" } }]

  [[forms.fields]]
  name = "seats"
  type = "number"
  label = "Seats"
  min = 1
  max = 50

  [[forms.fields]]
  name = "cv"
  type = "file"
  label = "CV"
  max_files = 2

[[forms]]
slug = "careers"
title = "Careers"
thank_you = false
""" + EMAIL
FORM = '[[forms]]\nslug = "contact"\ntitle = "Contact"\n'
BAD_FILES = [
    ("unknown type", FORM + EMAIL + '  [[forms.fields]]\n  name = "x"\n  type = "phone"\n'
     '  label = "X"\n', "form 'contact': field 'x': type: unknown type 'phone'"),
    ("duplicate name", FORM + EMAIL + EMAIL,
     "form 'contact': fields: field 'email' is declared twice"),
    ("no email", FORM + '  [[forms.fields]]\n  name = "n"\n  type = "text"\n  label = "N"\n',
     "form 'contact': fields: no field named 'email'"),
    ("slug twice", FORM + EMAIL + FORM + EMAIL,
     "forms: form #2 uses slug 'contact', already the slug of form #1"),
    ("label missing for zh", FORM + EMAIL.replace('"Email"', '{ en = "Email" }'),
     "form 'contact': field 'email': label: missing for language zh"),
    ("low contrast", '[site]\naccent_color = "#aaaaaa"\n' + FORM + EMAIL,
     "site.accent_color: #aaaaaa has a contrast of 2.32:1 on white, under 4.5:1"),
    ("logo of another type", '[site]\nlogo = "thank-you.pdf"\n' + FORM + EMAIL,
     "site.logo: 'thank-you.pdf' must be an image: .svg, .png, .jpg or .webp"),
]
# Clear the screen, a C1 CSI, a right-to-left override: what a label must not do to a terminal.
HOSTILE = "Hi\\u001b[2J \\u009b31m \\u202eevil"

# The webhook's secret, as an operator puts it in the environment (never in the file).
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()


def write(tmp_path, text, name="forms.toml"):
    """The forms file `text` in tmp_path, with the PDF it names beside it; its path as text."""
    (tmp_path / "thank-you.pdf").write_bytes(b"%PDF-1.4")
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_check_says_ok_with_the_forms_slugs(runner, tmp_path, monkeypatch):
    """A good file: one line naming it, its forms and their slugs; status 0."""
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    path = write(tmp_path, GOOD)
    result = runner.invoke(args=["forms", "check", "--file", path])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok, 2 forms (contact, careers)\n"


@pytest.mark.parametrize(("secret", "problem"), [
    (None, "the environment variable CRM_WEBHOOK_SECRET is not set"),
    ("whsec_!!!", "the environment variable CRM_WEBHOOK_SECRET does not hold a secret"),
])
def test_check_names_a_webhook_secret_missing_from_the_environment(
        runner, tmp_path, monkeypatch, secret, problem):
    """As start-up would: the secret's variable named, never its value; status 1."""
    if secret is None:
        monkeypatch.delenv("CRM_WEBHOOK_SECRET", raising=False)
    else:
        monkeypatch.setenv("CRM_WEBHOOK_SECRET", secret)
    path = write(tmp_path, GOOD)
    result = runner.invoke(args=["forms", "check", "--file", path])
    assert result.exit_code == 1
    [line] = result.stderr.splitlines()
    assert line.startswith(f"{path}: form 'contact': webhook 1: {problem}")


def test_check_reads_the_sites_own_file_by_default(make_app, tmp_path):
    """Without --file, the file CONTACT_FORMS_FILE names."""
    path = write(tmp_path, FORM + EMAIL)
    runner = make_app(deliver=False, CONTACT_FORMS_FILE=path).test_cli_runner()
    result = runner.invoke(args=["forms", "check"])
    assert result.exit_code == 0, result.output
    assert result.stdout == f"{path}: ok, 1 form (contact)\n"


def test_check_without_any_file_is_a_usage_error(runner):
    """No file named anywhere: nothing to check, said as a usage error (status 2)."""
    result = runner.invoke(args=["forms", "check"])
    assert result.exit_code == 2
    assert "CONTACT_FORMS_FILE is not set" in result.stderr


@pytest.mark.parametrize(("text", "problem"), [case[1:] for case in BAD_FILES],
                         ids=[case[0] for case in BAD_FILES])
def test_check_names_the_problem_of_a_bad_file_in_one_line(runner, tmp_path, text, problem):
    """A bad file: status 1 and one line naming the file, the form, the field, the problem,
    while the site itself (without the setting) runs on."""
    path = write(tmp_path, text)
    result = runner.invoke(args=["forms", "check", "--file", path])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith(f"{path}: {problem}")
    assert result.stderr.count("\n") == 1


def test_check_escapes_a_hostile_file_name(runner, tmp_path):
    """The file's name is shown with its control characters escaped."""
    path = write(tmp_path, FORM, name="forms\x1b[2J.toml")
    result = runner.invoke(args=["forms", "check", "--file", path])
    assert result.exit_code == 1
    assert "\x1b" not in result.output
    assert "forms\\x1b[2J.toml: form 'contact': fields: missing" in result.stderr


def test_a_bad_forms_file_stops_the_app_and_every_command_with_that_line(app, tmp_path):
    """With a bad CONTACT_FORMS_FILE the app does not load: `flask forms check` (as any
    command) prints the file's one line, the same as `check --file` does, with status 1."""
    path = write(tmp_path, FORM + EMAIL + EMAIL)
    result = subprocess.run([FLASK, "--app", "contact_site", "forms", "check"],
                            cwd=PROJECT_ROOT, env=worker_env(app, CONTACT_FORMS_FILE=path,
                                                             CRM_WEBHOOK_SECRET=WEBHOOK_SECRET),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[-1] == (
        f"{path}: form 'contact': fields: field 'email' is declared twice")


def test_flask_forms_check_runs_as_an_operator_types_it(app, tmp_path):
    """The group is on the app's command line: a good file checks from a shell."""
    path = write(tmp_path, GOOD)
    result = subprocess.run([FLASK, "--app", "contact_site", "forms", "check"],
                            cwd=PROJECT_ROOT, env=worker_env(app, CONTACT_FORMS_FILE=path,
                                                             CRM_WEBHOOK_SECRET=WEBHOOK_SECRET),
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{path}: ok, 2 forms (contact, careers)\n"


def show(make_app, tmp_path, *args, text=GOOD):
    """`forms show` on an app serving the forms file `text`; the result."""
    path = write(tmp_path, text)
    runner = make_app(deliver=False, CONTACT_FORMS_FILE=path).test_cli_runner()
    result = runner.invoke(args=["forms", "show", *args])
    assert result.exit_code == 0, result.output
    return result


def test_show_prints_the_forms_as_the_site_serves_them(make_app, tmp_path, monkeypatch):
    """Site, paths, titles per language, recipients, thank-you and PDF, origins, webhooks
    (the secret's variable, never its value), and each field with its limits and options."""
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    lines = show(make_app, tmp_path).stdout.splitlines()
    pdf = tmp_path / "thank-you.pdf"
    assert lines[0] == ("site: name Example Ltd, home_url https://www.example.com/, "
                        "accent_color #0b5fff")
    assert lines[2].startswith("form contact: / and /f/contact (version ")
    assert lines[3:10] == [
        "  title: en Contact us | zh 联系我们",
        "  recipients: sales = Sales <sales@example.com>; support = Support "
        "<support@example.com>",
        f"  thank-you mail: with {pdf}",
        "  allowed origins: https://www.example.com",
        "  webhook: https://crm.example.com/hooks/contact (slack; submission.created; "
        "suspect included; secret from $CRM_WEBHOOK_SECRET)",
        "  fields:",
        "    recipient: select, required",  # added first: the form has two recipients
    ]
    assert lines[11:13] == ["      option sales: en Sales | zh Sales",
                            "      option support: en Support | zh Support"]
    assert lines[13].startswith("    email: email, required, max_length ")
    assert "    phone: tel, optional, max_length 30" in lines
    assert "      option sales: en Buying | zh 购买" in lines
    assert "    seats: number, optional, min 1, max 50" in lines
    assert ("    cv: file, optional, max_files 2, max_mb 10, "
            "extensions pdf,png,jpg,jpeg,gif,txt,docx,odt") in lines
    assert "form careers: /f/careers" in " ".join(lines)
    assert "  thank-you mail: none" in lines
    assert WEBHOOK_SECRET not in "\n".join(lines)


def test_show_without_a_forms_file_prints_the_built_in_form(runner):
    """No forms file: the built-in form, its words in each language from the catalogue."""
    result = runner.invoke(args=["forms", "show"])
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert lines[0] == "site: nothing declared"
    assert "  title: en Contact | zh 联系我们" in lines
    assert "      label: en Your name | zh 您的姓名" in lines
    assert "  thank-you mail: with static/thank-you.pdf" in lines


def test_show_json_holds_the_same_forms(make_app, tmp_path, monkeypatch):
    """--json: the same description as data, for scripts."""
    monkeypatch.setenv("CRM_WEBHOOK_SECRET", WEBHOOK_SECRET)
    shown = json.loads(show(make_app, tmp_path, "--json").stdout)
    assert shown["site"]["name"] == "Example Ltd"
    contact, careers = shown["forms"]
    assert contact["paths"] == ["/", "/f/contact"]
    assert careers["paths"] == ["/f/careers"]
    assert contact["title"] == {"en": "Contact us", "zh": "联系我们"}
    assert [r["address"] for r in contact["recipients"]] == ["sales@example.com",
                                                             "support@example.com"]
    assert contact["webhooks"][0]["secret_env"] == "CRM_WEBHOOK_SECRET"
    assert [f["name"] for f in contact["fields"]] == ["recipient", "email", "phone", "topic",
                                                      "seats", "cv"]
    seats = contact["fields"][4]
    assert (seats["type"], seats["required"], seats["min"], seats["max"]) == ("number", False,
                                                                              1, 50)
    assert contact["fields"][3]["options"] == [{"value": "sales",
                                                "label": {"en": "Buying", "zh": "购买"}}]
    assert (careers["thank_you"], careers["thank_you_pdf"]) == (False, None)


def test_show_escapes_what_a_terminal_would_act_on(make_app, tmp_path):
    """A label holding escape sequences and a bidi override is shown escaped, as text and
    as JSON (where the escapes are JSON's, so the data reads back the same)."""
    text = FORM + EMAIL.replace('"Email"', f'"{HOSTILE}"')
    shown = show(make_app, tmp_path, text=text).stdout
    assert "      label: en Hi\\x1b[2J \\x9b31m \\u202eevil | zh Hi\\x1b[2J" in shown
    as_json = show(make_app, tmp_path, "--json", text=text).stdout
    for char in ("\x1b", "\x9b", "\u202e"):
        assert char not in shown + as_json
    email = next(f for f in json.loads(as_json)["forms"][0]["fields"] if f["name"] == "email")
    label = email["label"]
    assert label["en"] == "Hi\x1b[2J \x9b31m \u202eevil"
