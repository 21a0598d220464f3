"""`[site]` on the public pages: name, title, home link, accent stylesheet and logo; without
it every page looks as it always did."""

from __future__ import annotations

from html.parser import HTMLParser

import pytest

from contact_site.forms.declaration import FormsFileError

SITE = """
[site]
name = "Example Ltd"
home_url = "https://www.example.com/"
accent_color = "#0b5fff"
logo = "logo.svg"
"""
FORM = """
[[forms]]
slug = "contact"
title = { en = "Contact us", zh = "联系我们" }

  [[forms.fields]]
  name = "email"
  type = "email"
  label = { en = "Email", zh = "电子邮件" }
  required = true
"""
SVG = b'<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>'
# Enough of each format to be that format; the site serves the bytes as they are.
IMAGES = {"svg": (SVG, "image/svg+xml"), "png": (b"\x89PNG\r\n\x1a\n", "image/png"),
          "jpg": (b"\xff\xd8\xff\xe0", "image/jpeg"), "webp": (b"RIFF\0\0\0\0WEBP", "image/webp")}


class Page(HTMLParser):
    """What a page shows of the site: its title, the header's and the footer's links and
    images, the stylesheets, and any inline style the policy would block."""

    def __init__(self, html: str) -> None:
        super().__init__()
        self.title = ""
        self.stylesheets: list[str] = []
        self.parts: dict[str, list[dict[str, str | None]]] = {"header": [], "footer": []}
        self.inline_styles: list[str] = []
        self._part: str | None = None
        self._in_title = False
        self._link: dict[str, str | None] | None = None
        self.feed(html)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        """Note where we are, and the tags that matter."""
        found = dict(attrs)
        self._in_title = self._in_title or tag == "title"
        self._part = tag if tag in self.parts else self._part
        if tag == "style" or "style" in found:
            self.inline_styles.append(tag)
        if tag == "link" and found.get("rel") == "stylesheet":
            self.stylesheets.append(found["href"] or "")
        if self._part and tag in ("a", "img"):
            self.parts[self._part].append({"tag": tag, **found, "text": ""})
            self._link = self.parts[self._part][-1] if tag == "a" else self._link

    def handle_endtag(self, tag: str) -> None:
        """Leave the title, a link, the header or the footer."""
        if tag == "title":
            self._in_title = False
        if tag == "a":
            self._link = None
        if tag == self._part:
            self._part = None

    def handle_data(self, data: str) -> None:
        """The title's words, and each link's."""
        if self._in_title:
            self.title += data
        if self._link is not None:
            self._link["text"] = (self._link["text"] or "") + data

    def links(self, part: str) -> dict[str, str | None]:
        """The part's links: their text → their address."""
        return {(a["text"] or "").strip(): a["href"] for a in self.parts[part] if a["tag"] == "a"}

    def images(self, part: str) -> list[dict[str, str | None]]:
        """The part's images."""
        return [i for i in self.parts[part] if i["tag"] == "img"]


def forms_file(tmp_path, site=SITE, logo="logo.svg", image=SVG):
    """A forms file with `site` as its [site], and its logo beside it; its path as text."""
    (tmp_path / logo).write_bytes(image)
    path = tmp_path / "forms.toml"
    path.write_text(site + FORM, encoding="utf-8")
    return str(path)


def page(client, path="/thanks", language="en"):
    """The page at `path`, parsed."""
    response = client.get(path, headers={"Accept-Language": language})
    assert response.status_code in (200, 404)
    return Page(response.get_data(as_text=True))


def test_without_site_the_pages_are_as_before(client):
    """No [site]: "Contact" in the header and the title, no home link, no logo."""
    thanks = page(client)
    assert thanks.title == "Thank you – Contact"
    assert thanks.links("header")["Contact"] == "/"
    assert thanks.images("header") == []
    assert [text for text in thanks.links("footer") if text.startswith("Back to")] == []
    assert page(client, "/").title == "Contact"


def test_without_site_the_accent_sheet_sets_nothing(client):
    """/site.css is always there, linked after style.css; without an accent it is empty."""
    assert page(client).stylesheets == ["/static/style.css", "/site.css"]
    response = client.get("/site.css")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert response.get_data(as_text=True) == ":root {}\n"
    assert client.get("/site/logo").status_code == 404


def test_the_site_name_heads_every_page_and_titles_it(make_app, tmp_path):
    """The name replaces "Contact": in the header (as the logo's alt text) and the title."""
    client = make_app(CONTACT_FORMS_FILE=forms_file(tmp_path)).test_client()
    thanks = page(client)
    assert thanks.title == "Thank you – Example Ltd"
    assert thanks.images("header") == [
        {"tag": "img", "class": "site-logo", "src": "/site/logo", "alt": "Example Ltd",
         "text": ""}]
    assert page(client, language="zh").title == "感谢您的留言 – Example Ltd"
    assert page(client, "/no-such-page").images("header")[0]["alt"] == "Example Ltd"


def test_the_thanks_page_names_the_site(make_app, tmp_path):
    """The thank-you page says whom the message went to."""
    client = make_app(CONTACT_FORMS_FILE=forms_file(tmp_path)).test_client()
    text = client.get("/thanks").get_data(as_text=True)
    assert "Your message to Example Ltd has been received" in text


def test_without_a_logo_the_header_shows_the_name(make_app, tmp_path):
    """A name and no logo: the name is the header's link."""
    site = '[site]\nname = "Example & Sons"\n'
    client = make_app(CONTACT_FORMS_FILE=forms_file(tmp_path, site=site)).test_client()
    thanks = page(client)
    assert thanks.links("header")["Example & Sons"] == "/"
    assert thanks.images("header") == []
    assert thanks.title == "Thank you – Example & Sons"
    assert client.get("/site/logo").status_code == 404


@pytest.mark.parametrize("path", ["/", "/thanks", "/no-such-page"],
                         ids=["form", "thanks", "not-found"])
def test_every_public_page_links_back_to_the_site(make_app, tmp_path, path):
    """home_url: "Back to <name>" in the footer of every public page."""
    client = make_app(CONTACT_FORMS_FILE=forms_file(tmp_path)).test_client()
    assert page(client, path).links("footer")["Back to Example Ltd"] == "https://www.example.com/"


def test_a_home_link_without_a_name_goes_back_to_the_site(make_app, tmp_path):
    """home_url alone: "Back to the site", and the header still says "Contact"."""
    site = '[site]\nhome_url = "https://www.example.com/"\n'
    client = make_app(CONTACT_FORMS_FILE=forms_file(tmp_path, site=site)).test_client()
    thanks = page(client)
    assert thanks.links("footer")["Back to the site"] == "https://www.example.com/"
    assert thanks.links("header")["Contact"] == "/"
    assert thanks.title == "Thank you – Contact"


def test_the_accent_colour_is_a_stylesheet_of_its_own(make_app, tmp_path):
    """/site.css sets --accent, as text/css with a cache header; its address carries the
    colour, so a new colour is never hidden by a cached sheet."""
    client = make_app(CONTACT_FORMS_FILE=forms_file(tmp_path)).test_client()
    assert page(client).stylesheets == ["/static/style.css", "/site.css?v=0b5fff"]
    response = client.get("/site.css?v=0b5fff")
    assert response.status_code == 200
    assert response.mimetype == "text/css"
    assert response.get_data(as_text=True) == ":root { --accent: #0b5fff; }\n"
    assert response.cache_control.max_age == 86_400
    assert response.cache_control.public
    again = client.get("/site.css?v=0b5fff", headers={"If-None-Match": response.headers["ETag"]})
    assert again.status_code == 304


def test_the_stylesheet_reads_the_accent_with_the_old_colour_as_fallback(client):
    """style.css writes the accent only as var(--accent, #0b4f9c): with no accent set,
    links and buttons keep their colour."""
    with client.get("/static/style.css") as response:
        css = response.get_data(as_text=True)
    bare = css.replace("var(--accent, #0b4f9c)", "")
    assert "#0b4f9c" not in bare.replace("#083b75 is of #0b4f9c", "")
    assert css.count("var(--accent, #0b4f9c)") >= 5


@pytest.mark.parametrize("extension", IMAGES)
def test_the_logo_is_served_with_its_type(make_app, tmp_path, extension):
    """The logo beside the forms file, with the content type of its extension, nosniff,
    and a policy under which an SVG runs nothing."""
    image, content_type = IMAGES[extension]
    site = f'[site]\nname = "Example Ltd"\nlogo = "logo.{extension}"\n'
    path = forms_file(tmp_path, site=site, logo=f"logo.{extension}", image=image)
    client = make_app(CONTACT_FORMS_FILE=path).test_client()
    with client.get("/site/logo") as response:
        assert response.status_code == 200
        assert response.mimetype == content_type
        assert response.get_data() == image
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = [d.strip() for d in response.headers["Content-Security-Policy"].split(";")]
    assert "sandbox" in policy
    assert "default-src 'none'" in policy


@pytest.mark.parametrize("path", ["/", "/thanks", "/no-such-page"],
                         ids=["form", "thanks", "not-found"])
def test_no_page_holds_an_inline_style(make_app, tmp_path, path):
    """The policy forbids inline style: the accent and the logo need none."""
    client = make_app(CONTACT_FORMS_FILE=forms_file(tmp_path)).test_client()
    assert page(client, path).inline_styles == []


def test_a_pale_accent_colour_stops_start_up_with_one_line(make_app, tmp_path):
    """An accent under 4.5:1 on white: create_app stops, naming the file and the problem."""
    path = forms_file(tmp_path, site='[site]\naccent_color = "#7f9fff"\n')
    with pytest.raises(SystemExit) as stopped:
        make_app(CONTACT_FORMS_FILE=path)
    assert str(stopped.value) == (f"{path}: site.accent_color: #7f9fff has a contrast of "
                                  "2.53:1 on white, under 4.5:1")


def test_a_logo_the_pages_cannot_serve_stops_start_up(make_app, tmp_path):
    """A logo that is not an SVG, PNG, JPEG or WebP image: one line, at start-up."""
    path = forms_file(tmp_path, site='[site]\nlogo = "logo.gif"\n', logo="logo.gif",
                      image=b"GIF89a")
    with pytest.raises(FormsFileError) as stopped:
        make_app(CONTACT_FORMS_FILE=path)
    assert str(stopped.value) == (f"{path}: site.logo: 'logo.gif' must be an image: "
                                  ".svg, .png, .jpg or .webp")
