"""Virus scanning of uploaded files with ClamAV's daemon (clamd).

clamd.py is the client: parse_address reads a tcp://host:port or unix:///path setting,
scan_file streams one file and returns a ScanResult (clean, infected with a signature, or
unscanned with the reason), ping asks whether clamd is there. The delivery worker scans
a submission's files before the owner's mail carries them (delivery/scan_gate.py).
"""

from .clamd import ClamdAddress, ScanResult, parse_address, ping, scan_file

__all__ = ["ClamdAddress", "ScanResult", "parse_address", "ping", "scan_file"]
