"""Code the tests share that is not a fixture (fixtures are in the conftest.py files).

settings     the settings every test app starts from; skip_or_fail for absent services
databases    PostgreSQL schemas of a test's own, a locked SQLite
factories    the submission factory: rows straight in the database, their mails queued
forms        posting the contact form as a browser does
forms_files  forms files (CONTACT_FORMS_FILE) and posting a declared form
outbox       reading the outbox, delivering by hand
records      reading and ageing stored submissions
admin        the owner's account, signing in, console forms
spam         a solved proof of work, a form served a while ago
processes    flask commands, gunicorn and celery as an operator runs them
waiting      wait_until, for what another thread or process does
mails        parsing composed mails
files        small files of each kind, what is left on disk
browser      Chromium: the served site, watched pages, axe-core
host_page    a static page of another site (docs/embed-example.html) on a second origin
inline_code  what a CSP without unsafe-inline blocks on a page
webhook_receiver  a loopback HTTP(S) server that answers webhooks as told and records them
clamd        a private ClamAV daemon with a test signature, stopped and started at will
smtp_server, browser_server, tls_certs, upload_samples, altcha_replay_app: test servers,
the TLS PKI, sample documents; test_smtp_server.py tests the SMTP test server itself.
"""
