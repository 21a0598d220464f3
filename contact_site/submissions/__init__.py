"""Submissions: the stored record of each message, how it is stored, and how it is found."""
