"""Kubernetes resource quantities (``64Mi``, ``500m``, ``1.5``, ``1e9``) as exact numbers.

Pure functions used by the manifest model (validation) and the runtime (cgroup values).
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation

_SUFFIXES: dict[str, Decimal] = {
    "Ki": Decimal(2**10), "Mi": Decimal(2**20), "Gi": Decimal(2**30),
    "Ti": Decimal(2**40), "Pi": Decimal(2**50), "Ei": Decimal(2**60),
    "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
    "k": Decimal(10**3), "M": Decimal(10**6), "G": Decimal(10**9),
    "T": Decimal(10**12), "P": Decimal(10**15), "E": Decimal(10**18),
}
_RE = re.compile(r"^(?P<num>\d+(?:\.\d*)?|\.\d+)(?P<suffix>[eE][+-]?\d+|[A-Za-z]*)$")


def parse(text: str | int | float) -> Decimal:
    """The value of a quantity; ``ValueError`` with a readable reason when malformed."""
    if isinstance(text, bool):
        raise ValueError("must be a quantity such as 64Mi or 500m, not a boolean")
    if isinstance(text, int | float):
        if text < 0:
            raise ValueError(f"must not be negative, got {text}")
        return Decimal(str(text))
    m = _RE.match(text.strip())
    if m is None:
        raise ValueError(f"{text!r} is not a quantity (examples: 64Mi, 1G, 500m, 0.5, 128)")
    num, suffix = m.group("num"), m.group("suffix")
    try:
        value = Decimal(num)
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only decimals
        raise ValueError(f"{text!r} is not a quantity") from exc
    if suffix[:1] in ("e", "E") and suffix[1:].lstrip("+-").isdigit():
        return value * (Decimal(10) ** int(suffix[1:]))
    if suffix not in _SUFFIXES:
        known = ", ".join(s for s in _SUFFIXES if s)
        raise ValueError(f"{text!r} has an unknown suffix {suffix!r} (known: {known})")
    return value * _SUFFIXES[suffix]


def to_bytes(text: str | int) -> int:
    """A memory size in whole bytes (rounded up, as Kubernetes does)."""
    value = parse(text)
    whole = int(value.to_integral_value(rounding="ROUND_CEILING"))
    return whole


def to_millicores(text: str | int | float) -> int:
    """A CPU amount in millicores (``500m`` → 500, ``2`` → 2000), rounded up."""
    return int((parse(text) * 1000).to_integral_value(rounding="ROUND_CEILING"))


def format_bytes(n: int) -> str:
    """The shortest exact binary form: 67108864 → ``64Mi``."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = int(_SUFFIXES[suffix])
        if n >= unit and n % unit == 0:
            return f"{n // unit}{suffix}"
    return str(n)
