"""The record over submissions and their mails: search, export, retention and erasure.

It sits above `submissions` and `delivery` (it reads both); the console (`admin`)
and the `flask submissions` commands use it.
"""
