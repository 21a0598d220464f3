"""Webhooks: what a form tells other systems about each submission, signed and checked.

payload.py builds the body of each event in each format (chat.py the notices for
people), signing.py the Standard Webhooks headers from a secret in the environment,
guard.py checks a target against private addresses, and sender.py makes one POST to
the checked address, within a deadline (deadline.py), and classifies its outcome.
"""
