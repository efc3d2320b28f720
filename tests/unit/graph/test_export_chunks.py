"""The JSON export is encoded a chunk at a time (the GIL is free between chunks), same bytes."""

from __future__ import annotations

import msgspec
import pytest

from visionflow.graph import formats
from visionflow.graph.store import GraphStore


@pytest.mark.parametrize(
    "n", [0, 1, formats.JSON_CHUNK - 1, formats.JSON_CHUNK, formats.JSON_CHUNK + 1, 12_345]
)
def test_chunked_json_is_byte_for_byte_one_encode(n: int) -> None:
    store = GraphStore()
    store.import_document(
        {
            "nodes": [
                {"id": str(i), "label": 'é"\\x', "metadata": {"k": [i, None]}} for i in range(n)
            ],
            "edges": [{"source": str(i), "target": str(i + 1)} for i in range(max(0, n - 1))],
        }
    )
    doc = store.export({})
    assert formats.write("json", doc) == msgspec.json.encode(doc)
