"""Forms files for tests (CONTACT_FORMS_FILE), and posting a declared form as a browser does.

    path = write_forms(tmp_path, SITE_FORMS)           # the file, in a folder of its own
    app = make_app(CONTACT_FORMS_FILE=str(path))
    answer = post_declared(client, "/f/careers", {"email": ...}, files=[("cv", data, "cv.pdf")])
"""

from __future__ import annotations

import io
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from flask.testing import FlaskClient
from werkzeug.datastructures import FileStorage, MultiDict
from werkzeug.test import TestResponse, encode_multipart

from support.forms import HIDDEN_FIELDS

# The page's honeypot: a control people never see or fill in (contact_site.spam).
HONEYPOT = "website"
# The sentence each form's consent asks the visitor to agree to, per language.
PRIVACY = {"en": "I agree that Example Ltd keeps what I send for twelve months.",
           "zh": "我同意 Example Ltd 将我发送的内容保存十二个月。"}
TERMS = {"en": "I have read the terms of this test form.",
         "zh": "我已阅读此测试表单的条款。"}

# One form with a field of every type, each type's limits declared (test_fields.py).
EVERY_TYPE = f"""
[[forms]]
slug = "kinds"
title = {{ en = "Every kind of field", zh = "各类字段" }}
recipients = ["Owner <owner@example.com>"]
thank_you = false

  [[forms.fields]]
  name = "email"
  type = "email"
  label = {{ en = "Email", zh = "电子邮箱" }}
  required = true

  [[forms.fields]]
  name = "line"
  type = "text"
  label = {{ en = "Line", zh = "单行" }}
  max_length = 20

  [[forms.fields]]
  name = "notes"
  type = "textarea"
  label = {{ en = "Notes", zh = "备注" }}
  max_length = 50

  [[forms.fields]]
  name = "phone"
  type = "tel"
  label = {{ en = "Phone", zh = "电话" }}

  [[forms.fields]]
  name = "homepage"
  type = "url"
  label = {{ en = "Homepage", zh = "主页" }}

  [[forms.fields]]
  name = "count"
  type = "number"
  label = {{ en = "Count", zh = "数量" }}
  min = 1
  max = 10

  [[forms.fields]]
  name = "day"
  type = "date"
  label = {{ en = "Day", zh = "日期" }}

  [[forms.fields]]
  name = "colour"
  type = "select"
  label = {{ en = "Colour", zh = "颜色" }}
  options = [{{ value = "red", label = {{ en = "Red", zh = "红色" }} }},
             {{ value = "green", label = {{ en = "Green", zh = "绿色" }} }}]

  [[forms.fields]]
  name = "news"
  type = "checkbox"
  label = {{ en = "News", zh = "新闻" }}

  [[forms.fields]]
  name = "agree"
  type = "checkbox"
  label = {{ en = "Agree", zh = "同意" }}
  required = true

  [[forms.fields]]
  name = "terms"
  type = "consent"
  label = {{ en = "Terms", zh = "条款" }}
  text = {{ en = "{TERMS['en']}", zh = "{TERMS['zh']}" }}
  required = true

  [[forms.fields]]
  name = "docs"
  type = "file"
  label = {{ en = "Documents", zh = "文件" }}
  max_files = 2
  max_mb = 1
  extensions = ["pdf", "txt"]
"""

# The contact form of SITE_FORMS, its fields as listed here; `extra` is added before
# `message` (the test of an edited file), `phone_label` relabels the phone.
CONTACT_FORM = """
[[forms]]
slug = "contact"
title = {{ en = "Contact us", zh = "联系我们" }}

  [[forms.fields]]
  name = "name"
  type = "text"
  label = {{ en = "Full name", zh = "姓名" }}

  [[forms.fields]]
  name = "email"
  type = "email"
  label = {{ en = "Email", zh = "电子邮箱" }}
  required = true

  [[forms.fields]]
  name = "phone"
  type = "tel"
  label = {phone_label}

  [[forms.fields]]
  name = "topic"
  type = "select"
  label = {{ en = "Topic", zh = "主题" }}
  options = [{{ value = "sales", label = {{ en = "Buying", zh = "购买" }} }},
             {{ value = "help", label = {{ en = "Getting help", zh = "获取帮助" }} }}]

  [[forms.fields]]
  name = "callback"
  type = "checkbox"
  label = {{ en = "Call me back", zh = "请回电" }}

  [[forms.fields]]
  name = "privacy"
  type = "consent"
  label = {{ en = "Privacy", zh = "隐私" }}
  text = {{ en = "{privacy_en}", zh = "{privacy_zh}" }}
  required = true
{extra}
  [[forms.fields]]
  name = "message"
  type = "textarea"
  label = {{ en = "Message", zh = "留言" }}
  required = true
"""
PHONE_LABEL = '{ en = "Phone", zh = "电话" }'
# A field added to the contact form by an edit of the file.
COMPANY_FIELD = """
  [[forms.fields]]
  name = "company"
  type = "text"
  label = { en = "Company", zh = "公司" }
"""

CAREERS_FORM = f"""
[[forms]]
slug = "careers"
title = {{ en = "Job application", zh = "求职申请" }}
recipients = ["Hiring <hiring@example.com>"]
thank_you_pdf = false

  [[forms.fields]]
  name = "name"
  type = "text"
  label = {{ en = "Full name", zh = "姓名" }}

  [[forms.fields]]
  name = "email"
  type = "email"
  label = {{ en = "Email", zh = "电子邮箱" }}
  required = true

  [[forms.fields]]
  name = "portfolio"
  type = "url"
  label = {{ en = "Portfolio", zh = "作品集" }}

  [[forms.fields]]
  name = "years"
  type = "number"
  label = {{ en = "Years of experience", zh = "工作年限" }}
  min = 0
  max = 60

  [[forms.fields]]
  name = "start"
  type = "date"
  label = {{ en = "Earliest start", zh = "最早入职日期" }}

  [[forms.fields]]
  name = "privacy"
  type = "consent"
  label = {{ en = "Privacy", zh = "隐私" }}
  text = {{ en = "{PRIVACY['en']}", zh = "{PRIVACY['zh']}" }}
  required = true

  [[forms.fields]]
  name = "cv"
  type = "file"
  label = {{ en = "CV and letter", zh = "简历和求职信" }}
  required = true
  max_files = 2
  extensions = ["pdf", "txt", "png"]
"""

SITE = """
[site]
name = "Example Ltd"
home_url = "https://www.example.com/"
"""


def site_forms(extra: str = "", phone_label: str = PHONE_LABEL) -> str:
    """[site], the contact form (with `extra` fields, the phone labelled so), the careers form."""
    contact = CONTACT_FORM.format(extra=extra, phone_label=phone_label,
                                  privacy_en=PRIVACY["en"], privacy_zh=PRIVACY["zh"])
    return SITE + contact + CAREERS_FORM


SITE_FORMS = site_forms()


def write_forms(folder: Path, text: str, name: str = "forms.toml") -> Path:
    """The forms file written in `folder` (made if need be); its path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def hidden_fields(client: FlaskClient, path: str, language: str = "en") -> dict[str, str]:
    """The csrf_token and submission_key of the form served at `path`, freshly rendered."""
    page = client.get(path, headers={"Accept-Language": language})
    assert page.status_code == 200, page.get_data(as_text=True)[:500]
    found = dict(HIDDEN_FIELDS.findall(page.get_data(as_text=True)))
    assert set(found) == {"csrf_token", "submission_key"}, "form lacks its hidden fields"
    return found


def post_declared(client: FlaskClient, path: str, fields: Mapping[str, str | None],
                  files: Sequence[tuple[str, bytes, str]] = (), language: str = "en",
                  json: bool = True) -> TestResponse:
    """POST the form at `path` like a browser: fresh hidden fields, multipart, `files` as
    (field, bytes, file name), in `language`; a None value is not posted."""
    parts: list[tuple[str, Any]] = list(hidden_fields(client, path, language).items())
    parts += [(name, value) for name, value in fields.items() if value is not None]
    parts += [(name, FileStorage(io.BytesIO(data), filename=filename))
              for name, data, filename in files]
    # Encoded in memory, as support.forms does: no temporary file left unclosed.
    boundary, body = encode_multipart(MultiDict(parts))
    accept = "application/json" if json else "text/html"
    return client.post(path, data=body, content_type=f"multipart/form-data; boundary={boundary}",
                       headers={"Accept": accept, "Accept-Language": language})


def field_names(page: str) -> list[str]:
    """The names of the visible controls of a form page, in order (hidden ones left out)."""
    names = []
    for tag in re.finditer(r"<(input|select|textarea)\b([^>]*)>", page):
        attributes = tag.group(2)
        name = re.search(r'\bname="([^"]+)"', attributes)
        if (name is None or re.search(r'\btype="hidden"', attributes)
                or name.group(1) == HONEYPOT):
            continue
        if name.group(1) not in names:
            names.append(name.group(1))
    return names
