"""PostgreSQL log sequence numbers: ``'16/B374D848'`` text <-> the 64-bit integer the protocols carry."""

from __future__ import annotations


def parse_lsn(text: str | None) -> int:
    """``'16/B374D848'`` → int; ``None`` or empty → 0."""
    if not text:
        return 0
    hi, _, lo = text.partition("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def format_lsn(value: int) -> str:
    """int → ``'16/B374D848'`` (the form ``pg_lsn`` accepts)."""
    return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"
