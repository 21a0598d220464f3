"""A receiver for the site's `standard` webhooks: check the signature, then use the event.

    pip install flask standardwebhooks
    CRM_WEBHOOK_SECRET=whsec_... flask --app verify_webhook run --port 8000
"""

import os

from flask import Flask, abort, request
from standardwebhooks import Webhook, WebhookVerificationError

app = Flask(__name__)
webhook = Webhook(os.environ["CRM_WEBHOOK_SECRET"])  # the same secret as the site's
handled: set[str] = set()  # keep these in your database: a retry repeats the webhook-id


@app.post("/hooks/contact")
def contact_hook() -> tuple[str, int]:
    try:  # the exact bytes received, and the three webhook-* headers
        event = webhook.verify(request.get_data(), dict(request.headers))
    except WebhookVerificationError:
        abort(400)  # not signed with your secret, altered, or older than 5 minutes
    if request.headers["webhook-id"] not in handled:
        handled.add(request.headers["webhook-id"])
        print(event["type"], event["data"])  # your code here: create the lead, …
    return "", 204  # answer within 10 s, or the site counts a failure and tries again later
