"""Graph documents in other formats: read into docs/protocol.md section 7, written from an
export. One module per format, each sans-IO (bytes in, a validated document out; an
:class:`~visionflow.graph.document.ExportedDocument` in, bytes out):

- ``json``: ours (:mod:`visionflow.graph.document`); read and written;
- ``d3``: d3-force / 3d-force-graph JSON (:mod:`.d3`); read;
- ``networkx``: networkx node-link JSON (:mod:`.nodelink`); read;
- ``graphml``: GraphML, networkx's and Gephi's (:mod:`.graphml`); read and written;
- ``gexf``: GEXF 1.2 / 1.3 (:mod:`.gexf`); read, written as 1.2;
- ``csv``: edge lists (:mod:`.csvedges`); read.

:mod:`.detect` picks the reader; :mod:`.common` holds what they share, among it the rule that
an attribute a format does not map to a field becomes metadata.
"""

from __future__ import annotations

from typing import Final

import msgspec

from visionflow import jsonsafe
from visionflow.errors import GraphError
from visionflow.graph import document
from visionflow.graph.document import ExportedDocument
from visionflow.graph.formats import csvedges, d3, gexf, graphml, nodelink
from visionflow.graph.formats.common import Limits, Parsed
from visionflow.graph.formats.detect import FORMATS, choose

__all__ = ["EXPORTS", "FORMATS", "Limits", "Parsed", "choose", "read", "write"]

#: Export format -> (media type, file name extension).
EXPORTS: Final = {
    "json": ("application/json", "json"),
    "graphml": (graphml.MEDIA_TYPE, "graphml"),
    "gexf": (gexf.MEDIA_TYPE, "gexf"),
}


def _json(data: bytes) -> object:
    try:
        return jsonsafe.decode(data)
    except msgspec.DecodeError as exc:
        raise GraphError("bad_json", f"body is not valid JSON: {exc}", "") from exc


def read(fmt: str, data: bytes, limits: Limits) -> Parsed:
    """``data`` in format ``fmt`` (one of :data:`FORMATS`) as a validated document."""
    if fmt == "json":
        return Parsed(document.decode(data))
    if fmt == "d3":
        return d3.read(_json(data))
    if fmt == "networkx":
        return nodelink.read(_json(data))
    if fmt == "graphml":
        return graphml.read(data, limits)
    if fmt == "gexf":
        return gexf.read(data, limits)
    if fmt == "csv":
        return csvedges.read(data, limits)
    raise GraphError("invalid_parameter", f"format must be one of {', '.join(FORMATS)}", "format")


# Items encoded per msgspec call: one call over a 300k-node document held the GIL for ~0.5 s
# in the export's worker thread, and the event loop waited with it; between chunks the
# interpreter can switch threads (a chunk of 5000 takes a few ms).
JSON_CHUNK = 5000


def _json_in_chunks(doc: ExportedDocument) -> bytes:
    """``msgspec.json.encode(doc)``, byte for byte, a chunk of nodes or edges at a time.

    The chunks are encoded into one growing buffer, not each into bytes of its own that are
    then sliced and joined: at 300k nodes that was ~120 MB of temporary blocks per export, each
    a fresh mapping once glibc's mmap threshold is fixed (visionflow/memory.py)."""
    encoder = msgspec.json.Encoder()
    buf = bytearray(b'{"nodes":')
    for name, items in (("nodes", doc.nodes), ("edges", doc.edges)):
        if name == "edges":
            buf += b',"edges":'
        if not items:
            buf += b"[]"
        for start in range(0, len(items), JSON_CHUNK):
            # a chunk is written as "[...]"; the next one is written over its "]" and its own
            # "[" becomes the comma between them
            at = len(buf) - 1 if start else len(buf)
            encoder.encode_into(items[start : start + JSON_CHUNK], buf, at)
            if start:
                buf[at] = ord(",")
    buf += b',"revision":%d}' % doc.revision
    return bytes(buf)


def write(fmt: str, doc: ExportedDocument) -> bytes:
    """An export in format ``fmt`` (a key of :data:`EXPORTS`)."""
    if fmt == "graphml":
        return graphml.write(doc)
    if fmt == "gexf":
        return gexf.write(doc)
    if fmt == "json":
        return _json_in_chunks(doc)
    raise GraphError("invalid_parameter", f"format must be one of {', '.join(EXPORTS)}", "format")
