"""Which floats msgspec's encoder writes exactly as `json.dumps` does, and a decoder hook that
notes any other.

Both write the shortest text that reads back as the same float, but with an exponent they differ
(`json.dumps`: `1e-05`, `1e+16`; msgspec: `1e-5`, `1e16`), and for NaN and infinities (`NaN`,
`Infinity` vs `null`). `repr` uses no exponent for 0 and for magnitudes in [1e-4, 1e16): such
floats are *plain*. A decoded document whose floats are all plain can take msgspec's C encoder
where the content hash needs `json.dumps`'s text (`contract.PlainJson`, `sync.records`).
"""

from __future__ import annotations

import threading

PLAIN_FLOAT_MIN = 1e-4
PLAIN_FLOAT_MAX = 1e16


class FloatWatch:
    """A msgspec `float_hook` that notes, per thread, whether the document being decoded held a
    float that is not plain. `reset()` before a decode, `odd` after it."""

    def __init__(self) -> None:
        self._local = threading.local()

    def reset(self) -> None:
        self._local.odd = False

    @property
    def odd(self) -> bool:
        return getattr(self._local, "odd", False)

    def hook(self, literal: str) -> float:
        """Parsed as msgspec would (correctly rounded), except that an out-of-range literal is
        an infinity, as `json.loads` makes it, instead of a decode error."""
        value = float(literal)
        if not (PLAIN_FLOAT_MIN <= abs(value) < PLAIN_FLOAT_MAX or value == 0.0):
            self._local.odd = True
        return value
