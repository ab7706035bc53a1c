"""The Golioth device-list page as typed msgspec Structs: the provider's fast decode path.

One C pass decodes and type-checks a whole `{list, total}` page, instead of `json.loads`
followed by per-field checks in Python. The Structs are deliberately no more lenient than the
generic path (`golioth._to_device`): a page they cannot take — bad JSON, a wrong type, a
value only the generic path knows how to reject — makes `decode_page` return None, and the
provider decodes that page the generic way, which rejects records one by one with its usual
messages. So a page decoded here yields exactly what the generic path would have.
"""

from __future__ import annotations

from typing import Any

import msgspec

from sync_pipelines.plain_floats import FloatWatch

#: a field the page left out (not the same as a JSON null)
UNSET = msgspec.UNSET


class WireDevice(msgspec.Struct, rename="camel", gc=False):
    """`goliothDevice` (PROVIDERS.md §1.4) as the provider reads it; other fields are ignored.

    protojson omits zero values, so everything but `id` and `name` may be absent. `None`
    defaults stand for "absent or null" where the generic path treats the two alike."""

    id: str
    name: str
    hardware_ids: tuple[str, ...] = ()
    tag_ids: tuple[str, ...] = ()
    blueprint_id: str | None = None
    cohort_id: str | None = None
    certificate_id: str | None = None
    #: the LightDB State subtree asked for with `statePath`: any JSON (UNSET: not listed,
    #: None: listed as null)
    data: Any = msgspec.UNSET
    enabled: bool | None = None
    status: str | None = None
    created_at: str | None = None
    updated_at: str | None = None
    last_report: str | None = None
    metadata: dict[str, Any] | None = None


class WirePage(msgspec.Struct, gc=False):
    """`goliothListDeviceResponse`; `total` is int64, which protojson may send as a string."""

    devices: list[WireDevice] = msgspec.field(name="list")
    total: int | str = 0


# whether the page this thread is decoding held a float that is not plain (plain_floats) in a
# free-form field (`data`, `metadata`)
_floats = FloatWatch()
# one decoder for every page thread: msgspec's decoders are thread-safe (msgspec PR #402, 0.16)
_PAGE_DECODER = msgspec.json.Decoder(WirePage, float_hook=_floats.hook)


def decode_page(content: bytes) -> tuple[WirePage, bool] | None:
    """The page and whether any free-form field on it held a float that is not plain (the
    content hash encodes `PlainJson` documents the fast way), or None when its body is not one this decoder can take
    whole.

    None covers both "not JSON" and "JSON with a record of the wrong shape": the generic path
    tells the two apart (and words the error) exactly as it always has."""
    _floats.reset()
    try:
        page = _PAGE_DECODER.decode(content)
    except (msgspec.DecodeError, ValueError):  # ValueError: bytes that are not UTF-8
        return None
    except RecursionError:  # nested past msgspec's stack: the generic path refuses it by name
        return None
    return page, _floats.odd
