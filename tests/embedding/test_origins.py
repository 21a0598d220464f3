"""Which site a request comes from, and whether a form takes submissions from it: the tables of
contact_site.embedding.origins (docs/embedding.md, "Allowed origins" and "Where visitors go")."""

from __future__ import annotations

import pytest
from flask import Request
from werkzeug.test import EnvironBuilder

from contact_site.embedding.origins import (
    HIDDEN,
    allows,
    caller,
    is_own,
    next_url,
    origin_of_url,
    request_origin,
)
from contact_site.forms import Form

SITE = "https://contact.example.net"


def form_allowing(*origins: str) -> Form:
    """A form as the forms file declares it, taking submissions from `origins`."""
    return Form.model_validate({
        "slug": "contact", "title": "Contact", "allowed_origins": list(origins),
        "fields": [{"name": "email", "type": "email", "label": "Email"}]})


def request_with(base_url: str = SITE, **headers: str) -> Request:
    """A request to the site at `base_url` carrying `headers`."""
    return Request(EnvironBuilder(method="POST", base_url=base_url, headers=headers).get_environ())


@pytest.mark.parametrize(("url", "origin"), [
    ("https://www.example.com", "https://www.example.com"),
    ("https://www.example.com/contact/?x=1#form", "https://www.example.com"),
    ("http://www.example.com/", "http://www.example.com"),
    ("http://127.0.0.1:8001/page.html", "http://127.0.0.1:8001"),
    ("https://www.example.com:8443/", "https://www.example.com:8443"),
    ("https://www.example.com:443/", "https://www.example.com"),
    ("http://www.example.com:80/", "http://www.example.com"),
    ("https://www.example.com:80/", "https://www.example.com:80"),
    ("http://www.example.com:443/", "http://www.example.com:443"),
    ("http://[::1]:8001/page", "http://[::1]:8001"),
    ("http://[::1]:80/", "http://[::1]"),
    ("https://[2001:DB8::1]/", "https://[2001:db8::1]"),
    ("https://WWW.Example.COM/Page", "https://www.example.com"),
    ("HTTPS://WWW.EXAMPLE.COM", "https://www.example.com"),
    ("https://visitor@www.example.com/", "https://www.example.com"),
    ("https://www.example.com@evil.example/", "https://evil.example"),
    ("https://user:pass@www.example.com:8443/", "https://www.example.com:8443"),
    ("https://www.example.com#@evil.example", "https://www.example.com"),
    ("https://www.example.com?@evil.example", "https://www.example.com"),
], ids=lambda value: value)
def test_the_origin_of_an_http_url(url, origin):
    """`scheme://host[:port]` in lower case, the scheme's default port left out."""
    assert origin_of_url(url) == origin


@pytest.mark.parametrize("url", [
    "", "/thanks", "thanks.html", "//evil.example", "//evil.example/path",
    "\\\\evil.example", "/\\evil.example", "https:\\\\evil.example",
    "https://www.example.com\\@evil.example", "https://evil.example\\.www.example.com",
    "javascript:alert(1)", "JavaScript:alert(1)", "data:text/html,<script>alert(1)</script>",
    "ftp://www.example.com/", "file:///etc/passwd", "mailto:owner@example.com",
    "https:evil.example", "https:/evil.example", "https://", "http://[::1",
    " https://www.example.com", "https://www.example.com ", "https://www .example.com",
    "https://www.example.com\n.evil.example", "https://www.example.com\t",
    "https://www.example.com:99999/", "https://www.example.com:port/",
    "https://www.example.com:+443/",
], ids=repr)
def test_anything_but_an_http_url_has_no_origin(url):
    """Other schemes, protocol-relative and backslashed addresses, spaces, bad ports: None."""
    assert origin_of_url(url) is None


@pytest.mark.parametrize(("headers", "origin"), [
    ({"Origin": "https://www.example.com"}, "https://www.example.com"),
    ({"Origin": "https://WWW.example.com:443"}, "https://www.example.com"),
    ({"Origin": "https://www.example.com", "Referer": "https://evil.example/"},
     "https://www.example.com"),
    ({"Referer": "https://www.example.com/contact.html?x=1"}, "https://www.example.com"),
    ({"Origin": "null"}, HIDDEN),
    ({"Origin": "null", "Referer": "https://www.example.com/"}, HIDDEN),
    ({"Origin": "javascript:alert(1)"}, HIDDEN),
    ({}, None),
    ({"Referer": "about:blank"}, None),
], ids=["origin", "origin-default-port", "origin-before-referer", "referer", "null",
        "null-hides-referer", "malformed-origin", "none", "odd-referer"])
def test_a_request_names_its_origin_by_origin_then_referer(headers, origin):
    """Origin, else Referer's origin; "null" (or an Origin that is no origin) when the browser
    keeps it to itself, None when it says nothing."""
    assert request_origin(request_with(**headers)) == origin


@pytest.mark.parametrize(("origin", "own"), [
    (SITE, True),
    ("http://contact.example.net", True),  # the scheme is left to the CSRF check
    ("https://contact.example.net:8443", False),
    ("https://www.example.net", False),
    ("https://evilcontact.example.net", False),
    (HIDDEN, False),
    (None, False),
])
def test_the_sites_own_origin_is_its_host_and_port(origin, own):
    """This site is its own host and port, whatever the scheme; "null" and None are not it."""
    assert is_own(request_with(), origin) is own


def test_the_sites_own_origin_on_a_port_and_in_capitals():
    """The host the request was sent to, port included, compared in lower case."""
    request = request_with("http://Contact.Example.net:8000")
    assert is_own(request, "http://contact.example.net:8000")
    assert not is_own(request, "http://contact.example.net")


EXACT = form_allowing("https://www.example.com", "http://127.0.0.1:8001")
WILDCARD = form_allowing("https://*.example.org")
WILDCARD_PORT = form_allowing("https://*.example.org:8443")


@pytest.mark.parametrize(("form", "origin", "allowed"), [
    (EXACT, "https://www.example.com", True),
    (EXACT, "http://127.0.0.1:8001", True),
    (EXACT, "http://[::1]:8001", False),
    (EXACT, "http://www.example.com", False),  # the scheme must match
    (EXACT, "https://www.example.com:8443", False),  # and the port
    (EXACT, "http://127.0.0.1:8002", False),
    (EXACT, "http://127.0.0.1", False),
    (EXACT, "https://example.com", False),
    (EXACT, "https://shop.www.example.com", False),  # an exact origin admits no subdomain
    (EXACT, "https://www.example.com.evil.example", False),
    (EXACT, "https://evilwww.example.com", False),
    (EXACT, HIDDEN, False),
    (EXACT, None, False),
    (WILDCARD, "https://shop.example.org", True),
    (WILDCARD, "https://a.b.example.org", True),
    (WILDCARD, "https://example.org", False),  # the domain itself is not its subdomain
    (WILDCARD, "https://evilexample.org", False),
    (WILDCARD, "https://shop.example.org.evil.example", False),
    (WILDCARD, "http://shop.example.org", False),
    (WILDCARD, "https://shop.example.org:8443", False),
    (WILDCARD_PORT, "https://shop.example.org:8443", True),
    (WILDCARD_PORT, "https://shop.example.org", False),
    (WILDCARD_PORT, "https://example.org:8443", False),
    (form_allowing(), "https://www.example.com", False),
], ids=lambda value: value if isinstance(value, str) else None)
def test_a_form_allows_its_origins_exactly_or_by_subdomain(form, origin, allowed):
    """Exact origins, or `*.domain`'s subdomains; the scheme and the port always match."""
    assert allows(form, origin) is allowed


@pytest.mark.parametrize(("declared", "origin"), [
    ("https://www.example.com:443", "https://www.example.com"),
    ("http://127.0.0.1:80", "http://127.0.0.1"),
    ("https://*.example.org:443", "https://shop.example.org"),
])
def test_an_allowed_origin_written_with_its_default_port_is_the_same_origin(declared, origin):
    """Browsers leave the default port out of Origin: `:443` declared still matches them."""
    assert allows(form_allowing(declared), origin)


@pytest.mark.parametrize(("value", "kept"), [
    ("https://www.example.com/thanks.html", True),
    ("https://www.example.com/thanks?from=contact#top", True),
    ("https://shop.example.org/done", True),
    ("https://visitor@www.example.com/thanks", True),
    ("http://www.example.com/thanks", False),
    ("https://www.example.com:8443/thanks", False),
    ("https://example.org/thanks", False),
    ("https://evilexample.org/thanks", False),
    ("https://evil.example/thanks", False),
    ("https://www.example.com@evil.example/", False),
    ("https://www.example.com.evil.example/", False),
    ("//evil.example", False),
    ("//www.example.com/thanks", False),
    ("/\\evil.example", False),
    ("\\\\evil.example", False),
    ("https:\\\\evil.example", False),
    ("https://www.example.com\\@evil.example", False),
    ("javascript:alert(1)", False),
    ("javascript://www.example.com/%0aalert(1)", False),
    ("data:text/html,hello", False),
    ("/thanks", False),
    (" https://www.example.com/thanks", False),
    ("https://www.example.com/\r\nSet-Cookie: x=1", False),
    ("", False),
    (None, False),
], ids=repr)
def test_next_is_kept_only_on_an_allowed_origin(value, kept):
    """`_next` is a URL on one of the form's allowed origins, or nothing."""
    form = form_allowing("https://www.example.com", "https://*.example.org")
    assert next_url(form, value) == (value if kept else None)


@pytest.mark.parametrize(("headers", "hidden", "own", "allowed"), [
    ({"Origin": SITE}, False, True, False),
    ({"Origin": "https://www.example.com"}, False, False, True),
    ({"Referer": "https://www.example.com/page"}, False, False, True),
    ({"Origin": "https://evil.example"}, False, False, False),
    ({"Origin": "null"}, True, False, False),
    ({}, True, False, False),
], ids=["own", "allowed", "allowed-by-referer", "foreign", "null", "none"])
def test_a_caller_is_judged_for_its_form(headers, hidden, own, allowed):
    """Where a POST comes from: hidden, this site, an allowed origin, or none of them."""
    who = caller(request_with(**headers), form_allowing("https://www.example.com"))
    assert (who.hidden, who.own, who.allowed) == (hidden, own, allowed)
