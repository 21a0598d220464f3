"""Declared forms and embedding: what they cost beside the built-in form and the own page.

Run with `python -m benchmarks.shapes [--seconds S] [--rounds N] [--concurrency C]`, on
loopback. Two product instances run under real gunicorn (benchmarks/run.py's `Server`,
the settings of `product_env`) in front of one SMTP sink at 0 s: one without a forms
file (the built-in form), one with FORMS, a form of 20 declared fields covering every
field type, which also allows the origin ORIGIN. Measured at concurrency 8, each figure
over `--seconds` of load after a 1 s warm-up, the two runs of a pair taking turns in
`--rounds` slices (so a change in the machine's load falls on both), the sink drained
between slices:

- the POST of the built-in form and of the declared form, each with the same 2 KB PDF
  (GET the page, POST it back filled in as load.Visitor.submit does; only the POST timed);
- `GET /f/<slug>/token` beside `GET /` (the declared form's page);
- the embedded POST as embed.js makes it (from ORIGIN, no cookie: the fragment, a fresh
  token, `_token`, `Accept: application/json`, `X-Requested-With`) beside the own page's
  POST as contact.js makes it (the page's cookie and CSRF token, the same headers);
- whether `/embed.js` answers 304 to `If-None-Match` and to `If-Modified-Since`.

Prints a table and writes benchmarks/results/shapes.json ("figures" and the raw runs).
"""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import sys
import tempfile
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.load import (
    LoadResult,
    Upload,
    Visitor,
    hidden_fields,
    multipart,
    run_visits,
)
from benchmarks.run import RESULTS, Server, Sink, machine

OUTPUT = RESULTS / "shapes.json"
SLUG = "request"
ORIGIN = "https://shop.example"
WARM_UP_SECONDS = 1.0
SETTLE_LIMIT_SECONDS = 30.0
RATIO_TARGET = 0.8
# Twenty fields, every type the forms file takes; the first form, so also served at /.
FORMS = f"""
[site]
name = "Example Ltd"
home_url = "https://www.example.com/"

[[forms]]
slug = "{SLUG}"
title = {{ en = "Ask for a quote", zh = "询价" }}
recipients = ["Sales <sales@example.com>"]
allowed_origins = ["{ORIGIN}"]
"""
FIELDS = [  # name, type, what else the field declares
    ("name", "text", "max_length = 100"),
    ("email", "email", "required = true"),
    ("subject", "text", "required = true"),
    ("company", "text", ""),
    ("city", "text", "max_length = 80"),
    ("phone", "tel", "max_length = 30"),
    ("mobile", "tel", 'help = { en = "For a call back.", zh = "用于回电。" }'),
    ("homepage", "url", ""),
    ("profile", "url", ""),
    ("quantity", "number", "min = 1\n  max = 10\n  required = true"),
    ("budget", "number", "min = 0\n  max = 100000"),
    ("start", "date", ""),
    ("deadline", "date", ""),
    ("topic", "select", 'required = true\n  options = [{ value = "quote", label = "A quote" },'
                        ' { value = "other", label = "Something else" }]'),
    ("size", "select", 'options = [{ value = "small", label = "Small" },'
                       ' { value = "medium", label = "Medium" }, { value = "large", '
                       'label = "Large" }]'),
    ("newsletter", "checkbox", ""),
    ("callback", "checkbox", ""),
    ("privacy", "consent", 'required = true\n  text = { en = "I agree that Example Ltd keeps '
                           'what I send for a year.", zh = "我同意 Example Ltd 将我发送的内容'
                           '保存一年。" }'),
    ("message", "textarea", "required = true\n  max_length = 5000"),
    ("attachment", "file", 'extensions = ["pdf", "txt"]\n  max_mb = 2'),
]
# What a visitor types into the declared form (email, subject and message are its own).
DECLARED_VALUES = {
    "name": "Ada Lovelace", "company": "Analytical Engines Ltd", "city": "London",
    "phone": "+44 20 7946 0000", "mobile": "+44 7700 900000",
    "homepage": "https://example.com/ada", "profile": "https://example.org/people/ada",
    "quantity": "3", "budget": "2500", "start": "2027-01-15", "deadline": "2027-03-01",
    "topic": "quote", "size": "medium", "newsletter": "yes", "callback": "yes",
    "privacy": "yes", "website": "",
}
DEFAULT_VALUES = {"recipient": "sales", "name": "Ada Lovelace", "website": ""}
JSON_HEADERS = {"Accept": "application/json", "X-Requested-With": "XMLHttpRequest"}
PAIRS = ("pages", "posts", "gets", "embedded")
VALIDATORS = {"etag": "If-None-Match", "last-modified": "If-Modified-Since"}
CORS_HEADERS = ("Access-Control-Allow-Origin", "Vary")
NUMBERS = itertools.count(1)  # visitors, one address each, across every run of this process


def forms_text() -> str:
    """The forms file: FORMS and its twenty FIELDS."""
    fields = [f'\n  [[forms.fields]]\n  name = "{name}"\n  type = "{kind}"\n'
              f'  label = "{name.capitalize()}"\n' + (f"  {more}\n" if more else "")
              for name, kind, more in FIELDS]
    return FORMS + "".join(fields)


def small_pdf(size: int = 2048) -> bytes:
    """A PDF-looking file of `size` bytes: the tests' minimal PDF, padded with comments."""
    head = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj <<>> endobj\n"
    tail = b"trailer <<>>\n%%EOF\n"
    room = size - len(head) - len(tail)
    lines = (b"% " + b"x" * 62 + b"\n") * (room // 65)
    return head + lines + b"%" * (room - len(lines) - 1) + b"\n" + tail


PDF = small_pdf()
FILES: list[Upload] = [("attachment", "quote-request.pdf", PDF, "application/pdf")]


def own_text(number: int) -> dict[str, str]:
    """An address, subject and message of the visitor's own (no duplicates, no mailbox cap)."""
    return {"email": f"visitor{number}@example.com", "subject": f"Question {number}",
            "message": f"Hello,\nI have question {number} about the analytical engine."}


class CrossSiteVisitor(Visitor):
    """A page on ORIGIN calling the site as embed.js does: every request with that Origin,
    none with a cookie (`credentials: 'omit'`)."""

    def request(self, method: str, path: str, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        """One request from ORIGIN, its cookies forgotten."""
        self.cookies.clear()
        return super().request(method, path, body, {**(headers or {}), "Origin": ORIGIN})


def page_post(path: str, values: dict[str, str], headers: dict[str, str] | None = None,
              expect: int = 303) -> Callable[[Visitor], float]:
    """GET `path`, POST it back with its hidden fields, `values` and the PDF; the POST's
    seconds."""

    def action(visitor: Visitor) -> float:
        _, page = visitor.fetch(path)
        fields = {**hidden_fields(page.decode()), **values, **own_text(next(NUMBERS))}
        return visitor.post(path, fields, FILES, headers, expect)

    return action


def embedded_post(visitor: Visitor) -> float:
    """embed.js sending the declared form once: its fragment, a fresh token, the POST
    (timed) with `_token`."""
    _, fragment = visitor.fetch(f"/f/{SLUG}/fragment")
    _, answer = visitor.fetch(f"/f/{SLUG}/token")
    fields = {**hidden_fields(fragment.decode()), **DECLARED_VALUES,
              **own_text(next(NUMBERS)), "_token": json.loads(answer)["token"]}
    return visitor.post(f"/f/{SLUG}", fields, FILES, JSON_HEADERS, expect=202)


def getter(path: str) -> Callable[[Visitor], float]:
    """GET `path`; its seconds."""
    return lambda visitor: visitor.fetch(path)[0]


@dataclass
class Run:
    """One kind of request measured: where, what each visitor does, and as whom."""

    name: str
    port: int
    action: Callable[[Visitor], float]
    make_visitor: Callable[[int], Visitor] = Visitor


def settle(sink: Sink) -> int:
    """The sink's mail count once it has stopped growing (every queued mail delivered)."""
    deadline = time.monotonic() + SETTLE_LIMIT_SECONDS
    last, steady = -1, 0
    while time.monotonic() < deadline and steady < 5:
        count = int(sink.ask("stats")["count"])
        steady = steady + 1 if count == last else 0
        last = count
        time.sleep(0.1)
    return last


def merged(parts: list[LoadResult]) -> LoadResult:
    """One result of several slices: their latencies, errors and seconds together."""
    whole = LoadResult()
    for part in parts:
        whole.latencies += part.latencies
        whole.errors += part.errors
        whole.seconds += part.seconds
        whole.refusals.update(part.refusals)
    return whole


def load(run: Run, seconds: float, concurrency: int) -> LoadResult:
    """`run` by `concurrency` visitors for `seconds`."""
    return run_visits(run.port, concurrency, seconds, run.action, make_visitor=run.make_visitor)


def compare(sink: Sink, pair: tuple[Run, Run], args: argparse.Namespace) -> dict[str, Any]:
    """Both runs of a pair warmed up, then measured in turns; their summaries, refusals and
    mails per accepted request."""
    slices: dict[str, list[LoadResult]] = {run.name: [] for run in pair}
    mails = dict.fromkeys(slices, 0)
    for run in pair:
        load(run, WARM_UP_SECONDS, args.concurrency)
    before = settle(sink)
    for _ in range(args.rounds):
        for run in pair:
            slices[run.name].append(load(run, args.seconds / args.rounds, args.concurrency))
            after = settle(sink)
            mails[run.name] += after - before
            before = after
    return {name: summary(merged(parts), mails[name]) for name, parts in slices.items()}


def summary(result: LoadResult, mails: int) -> dict[str, Any]:
    """LoadResult's summary, the refusals by reason, and mails per request answered."""
    found = result.summary()
    found["refusals"] = dict(result.refusals)
    found["mails"] = mails
    found["mails_per_request"] = round(mails / found["requests"], 2) if found["requests"] else None
    return found


def revalidation(port: int) -> dict[str, Any]:
    """GET /embed.js, then again with each validator it sent: the statuses and headers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        status, headers, _ = exchange(connection, "GET", "/embed.js")
        named = {name.lower(): value for name, value in headers.items()}
        found: dict[str, Any] = {"status": status, "headers": list(headers),
                                 "validators": [name for name in headers
                                                if name.lower() in VALIDATORS],
                                 "cache_control": named.get("cache-control")}
        for validator, sent in VALIDATORS.items():
            value = named.get(validator)
            found[sent] = (exchange(connection, "GET", "/embed.js", headers={sent: value})[0]
                           if value else None)
        return found
    finally:
        connection.close()


def exchange(connection: http.client.HTTPConnection, method: str, path: str,
             body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request from ORIGIN, no cookie; its status, headers (names as sent) and body."""
    connection.request(method, path, body=body, headers={**(headers or {}), "Origin": ORIGIN})
    response = connection.getresponse()
    answer = response.read()
    return response.status, dict(response.getheaders()), answer


def cors_answers(port: int) -> dict[str, dict[str, Any]]:
    """What each request embed.js makes answers a page on ORIGIN: the preflight of the POST,
    the fragment, the token and the POST; each one's status and CORS headers."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    preflight = {"Access-Control-Request-Method": "POST",
                 "Access-Control-Request-Headers": "accept, x-requested-with"}
    try:
        answers = {"preflight": exchange(connection, "OPTIONS", f"/f/{SLUG}", None, preflight),
                   "fragment": exchange(connection, "GET", f"/f/{SLUG}/fragment"),
                   "token": exchange(connection, "GET", f"/f/{SLUG}/token")}
        fields = {**hidden_fields(answers["fragment"][2].decode()), **DECLARED_VALUES,
                  **own_text(next(NUMBERS)), "_token": json.loads(answers["token"][2])["token"]}
        body, content_type = multipart(fields, FILES)
        answers["post"] = exchange(connection, "POST", f"/f/{SLUG}", body,
                                   {**JSON_HEADERS, "Content-Type": content_type})
    finally:
        connection.close()
    return {name: {"status": status, **{key: headers.get(key) for key in CORS_HEADERS}}
            for name, (status, headers, _) in answers.items()}


def start(stack: ExitStack, folder: Path, sink: Sink, settings: dict[str, str]) -> Server:
    """A product instance in `folder` with `settings`, stopped when `stack` closes."""
    folder.mkdir(parents=True)
    server = Server("product", folder, sink.port, settings)
    stack.callback(server.stop)
    return server


def pairs(default: int, declared: int) -> dict[str, tuple[Run, Run]]:
    """The pairs of runs compared, by name: each a reference and what is measured against it."""
    own_origin = {**JSON_HEADERS, "Origin": f"http://127.0.0.1:{declared}"}
    return {
        "pages": (Run("default", default, getter("/")), Run("declared", declared, getter("/"))),
        "posts": (Run("default", default, page_post("/", DEFAULT_VALUES)),
                  Run("declared", declared, page_post("/", DECLARED_VALUES))),
        "gets": (Run("page", declared, getter("/")),
                 Run("token", declared, getter(f"/f/{SLUG}/token"), CrossSiteVisitor)),
        "embedded": (Run("own_page", declared, page_post("/", DECLARED_VALUES, own_origin, 202)),
                     Run("embedded", declared, embedded_post, CrossSiteVisitor)),
    }


def measure(sink: Sink, args: argparse.Namespace) -> dict[str, Any]:
    """Both instances started, each pair compared, embed.js revalidated; the raw figures."""
    with tempfile.TemporaryDirectory() as folder, ExitStack() as stack:
        forms = Path(folder) / "forms.toml"
        forms.write_text(forms_text(), encoding="utf-8")
        default = start(stack, Path(folder) / "default", sink, {})
        declared = start(stack, Path(folder) / "declared", sink,
                         {"CONTACT_FORMS_FILE": str(forms)})
        raw: dict[str, Any] = {}
        for name, pair in pairs(default.port, declared.port).items():
            print(f"measuring {name}: {pair[0].name} and {pair[1].name}", flush=True)
            raw[name] = compare(sink, pair, args)
        raw["embed_js"] = revalidation(declared.port)
        raw["cors"] = cors_answers(declared.port)
        raw["peak_rss_mib"] = {"default": round(default.peak_rss / 2**20, 1),
                               "declared": round(declared.peak_rss / 2**20, 1)}
    return raw


def valid(*found: dict[str, Any]) -> bool:
    """Whether runs count: requests answered, and none refused."""
    return all(run["requests"] and not run["errors"] for run in found)


def figure(measure: str, value: float | None, unit: str, reference: float | None,
           reference_label: str, target: str | None = None, note: str = "") -> dict[str, Any]:
    """One row of "figures": the ratio value / reference, and the target's verdict (≥ 0.8)."""
    ratio = round(value / reference, 2) if value is not None and reference else None
    met = None if target is None or ratio is None else ratio >= RATIO_TARGET
    return {"measure": measure, "value": value, "unit": unit, "reference": reference,
            "reference_label": reference_label, "ratio": ratio, "target": target,
            "met": met, "note": note}


def pair_figures(label: str, found: dict[str, Any], names: tuple[str, str], reference: str,
                 target: str | None, note: str) -> list[dict[str, Any]]:
    """Rows for rps, p50 and p99 of a measured run against its reference run."""
    base, measured = found[names[0]], found[names[1]]
    if not valid(base, measured):
        note = f"not a valid figure: refused {base['refusals']} / {measured['refusals']}"
    rows = []
    for key, unit in (("rps", "req/s"), ("p50_ms", "ms"), ("p99_ms", "ms")):
        value, ref = (run[key] if valid(base, measured) else None for run in (measured, base))
        rows.append(figure(f"{label} {key.removesuffix('_ms')}", value, unit, ref, reference,
                           target if key == "rps" else None, note))
    return rows


def script_figures(found: dict[str, Any]) -> list[dict[str, Any]]:
    """A row per validator of /embed.js: 1 when the revalidation answered 304."""
    names = ", ".join(found["validators"]) or "none"
    rows = []
    for validator, sent in VALIDATORS.items():
        status = found[sent]
        value = None if status is None else int(status == 304)
        note = (f"{sent} answered {status}; " if status else f"no {validator} header; ") \
            + f"validators sent: {names}; Cache-Control: {found['cache_control']}"
        rows.append({**figure(f"embed.js revalidated with {sent}", value, "1 = 304",
                              None, "", None, note),
                     "target": "304 on revalidation",
                     "met": None if value is None else value == 1})
    return rows


def cors_figure(found: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """How many of embed.js's requests were answered (2xx) naming ORIGIN exactly."""
    named = [name for name, answer in found.items()
             if answer["status"] < 300 and answer["Access-Control-Allow-Origin"] == ORIGIN]
    note = "; ".join(f"{name} {answer['status']} Access-Control-Allow-Origin "
                     f"{answer['Access-Control-Allow-Origin']}, Vary {answer['Vary']}"
                     for name, answer in found.items())
    return {**figure(f"embed.js's requests answered to {ORIGIN}", len(named), f"of {len(found)}",
                     None, "", None, note),
            "target": "every one", "met": len(named) == len(found)}


def all_figures(raw: dict[str, Any], concurrency: int) -> list[dict[str, Any]]:
    """Every row of "figures"."""
    posts, mails = raw["posts"], "mails per POST: {} built-in, {} declared".format(
        raw["posts"]["default"]["mails_per_request"], raw["posts"]["declared"]["mails_per_request"])
    return [
        *pair_figures(f"POST c{concurrency}, 20 declared fields + 2 KB PDF", posts,
                      ("default", "declared"), "built-in form + 2 KB PDF",
                      f"≥ {RATIO_TARGET}", mails),
        *pair_figures(f"GET / c{concurrency}, 20 declared fields", raw["pages"],
                      ("default", "declared"), "GET / of the built-in form", None,
                      "each POST above also made this GET (untimed), on the same 2 cores"),
        *pair_figures(f"GET /f/{SLUG}/token c{concurrency}", raw["gets"], ("page", "token"),
                      "GET / (the form's page)", None, f"Origin: {ORIGIN}, no cookie"),
        *pair_figures(f"embedded POST c{concurrency}", raw["embedded"], ("own_page", "embedded"),
                      "own page's POST (JSON)", None,
                      f"from {ORIGIN} with _token; both 202 JSON"),
        *script_figures(raw["embed_js"]),
        cors_figure(raw["cors"]),
    ]


def print_table(figures: list[dict[str, Any]]) -> None:
    """The figures as a table."""
    print(f"\n{'measure':52} {'value':>9} {'unit':7} {'reference':>9} {'ratio':>6}  "
          f"{'target':19} met")
    for row in figures:
        print(f"{row['measure']:52} {_cell(row['value']):>9} {row['unit']:7} "
              f"{_cell(row['reference']):>9} {_cell(row['ratio']):>6}  "
              f"{_cell(row['target']):19} {_cell(row['met'])}")
    notes = dict.fromkeys(row["note"] for row in figures if row["note"])
    for note in notes:
        print(f"  {note}")


def _cell(value: Any) -> str:
    """A table cell; '-' for nothing."""
    return "-" if value is None else str(value)


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=4.0,
                        help="seconds of load per figure (after a 1 s warm-up)")
    parser.add_argument("--rounds", type=int, default=4,
                        help="slices the seconds are cut into, the two runs of a pair in turn")
    parser.add_argument("--concurrency", type=int, default=8, help="visitors at once")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="JSON file to write")
    args = parser.parse_args()
    if args.rounds < 1 or args.seconds <= 0 or args.concurrency < 1:
        parser.error("--rounds, --seconds and --concurrency must be positive")
    return args


def main() -> None:
    """Measure, print the table, write the JSON; exit 1 when some request was refused."""
    args = arguments()
    started = time.monotonic()
    sink = Sink()
    try:
        sink.ask("delay 0")
        raw = measure(sink, args)
    finally:
        sink.close()
    figures = all_figures(raw, args.concurrency)
    results = {"machine": machine(), "settings": {**vars(args), "output": str(args.output)},
               "seconds": round(time.monotonic() - started, 1), "figures": figures, **raw}
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print_table(figures)
    print(f"\n{results['seconds']} s; written to {args.output}")
    refused = sum(run["errors"] for pair in pairs_of(raw) for run in pair.values())
    if refused:
        sys.exit(f"{refused} requests refused: those figures are not valid")


def pairs_of(raw: dict[str, Any]) -> list[dict[str, Any]]:
    """The raw results of the compared pairs."""
    return [raw[name] for name in PAIRS]


if __name__ == "__main__":
    main()
