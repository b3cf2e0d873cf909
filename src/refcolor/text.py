"""Small helpers for user-facing text."""


def plural(n: int, noun: str, nouns: str | None = None) -> str:
    """``plural(1, "frame")`` -> ``1 frame``; ``plural(2, "frame")`` -> ``2 frames``."""
    return f"{n} {noun if n == 1 else (nouns or noun + 's')}"
