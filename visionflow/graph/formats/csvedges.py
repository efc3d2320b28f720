"""CSV edge lists: ``source,target[,weight]``, one edge a row, UTF-8 (a byte-order mark is
skipped), RFC 4180 quoting (a quoted field may hold commas, quotes doubled, line breaks).

The first row is a header when it has a ``source`` and a ``target`` cell (any case, as Gephi
writes them); the columns are then found by name, ``weight`` is optional, and every other
column is edge metadata (text; an empty cell gives none). Without a header a row has two or
three fields. Nodes are the ids named, in the order first named; spaces at the start of a
field are skipped (quote it to keep them). A row that breaks these rules is refused with its
line.
"""

from __future__ import annotations

import csv
import io
from typing import Any, Final

from visionflow.errors import GraphError
from visionflow.graph import document
from visionflow.graph.formats.common import Limits, Parsed, parsed_by_line

__all__ = ["MEDIA_TYPE", "read"]

MEDIA_TYPE: Final = "text/csv"


def _weight(cell: str, line: int) -> float:
    try:
        value = float(cell.strip())
    except ValueError:
        raise GraphError(
            "invalid_weight", f"weight {cell[:40]!r} is not a number", f"line {line}"
        ) from None
    return document.check_weight(value, f"line {line}")


def _not_utf8(data: bytes) -> GraphError:
    # The stream decodes a chunk ahead of the rows: find the first bad byte in the whole body.
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        return GraphError("bad_csv", f"not UTF-8 text: {exc.reason}", f"line {line}")
    return GraphError("bad_csv", "not UTF-8 text", "")


def read(data: bytes, limits: Limits) -> Parsed:
    """A CSV edge list as a validated section 7 document."""
    # Decoded as it is read (no second copy of a large body), line breaks left to csv.
    stream = io.TextIOWrapper(io.BytesIO(data), encoding="utf-8-sig", newline="")
    rows = csv.reader(stream, strict=True, skipinitialspace=True)
    nodes: dict[str, int] = {}  # id -> line first named
    edges: list[dict[str, Any]] = []
    edge_lines: list[int] = []
    header: list[str] | None = None
    columns = (0, 1, 2)  # where source, target and weight are (weight: -1 when absent)
    first = True
    line = 1  # where the next row starts
    try:
        for row in rows:
            start, line = line, rows.line_num + 1
            if not row:
                continue
            if first:
                first = False
                names = [cell.strip().lower() for cell in row]
                if "source" in names and "target" in names:
                    if len(set(names)) != len(names):
                        raise GraphError("bad_csv", "a column name used twice", f"line {start}")
                    header = row
                    weight = names.index("weight") if "weight" in names else -1
                    columns = (names.index("source"), names.index("target"), weight)
                    continue
            if header is not None and len(row) != len(header):
                raise GraphError(
                    "bad_csv",
                    f"{len(row)} fields where the header has {len(header)}",
                    f"line {start}",
                )
            if header is None and len(row) not in (2, 3):
                raise GraphError(
                    "bad_csv",
                    f"{len(row)} fields: expected source,target[,weight] (or a header row"
                    " naming the columns)",
                    f"line {start}",
                )
            source, target = row[columns[0]], row[columns[1]]
            if not source or not target:
                raise GraphError("bad_csv", "empty source or target", f"line {start}")
            edge: dict[str, Any] = {"source": source, "target": target}
            at = columns[2] if header is not None else 2
            if 0 <= at < len(row) and row[at].strip():
                edge["weight"] = _weight(row[at], start)
            if header is not None:
                meta = {
                    name: cell
                    for k, (name, cell) in enumerate(zip(header, row, strict=True))
                    if k not in columns and cell
                }
                if meta:
                    edge["metadata"] = meta
            if len(edges) >= limits.max_edges:
                raise GraphError(
                    "too_many_edges", f"more than {limits.max_edges} edges", f"line {start}"
                )
            edges.append(edge)
            edge_lines.append(start)
            for end in (source, target):
                if end not in nodes:
                    if len(nodes) >= limits.max_nodes:
                        raise GraphError(
                            "too_many_nodes", f"more than {limits.max_nodes} nodes", f"line {start}"
                        )
                    nodes[end] = start
    except csv.Error as exc:
        raise GraphError("bad_csv", str(exc), f"line {rows.line_num}") from None
    except UnicodeDecodeError:
        raise _not_utf8(data) from None
    if not edges:
        # an empty body is more often a mistake (curl's @file mistyped) than a wish to empty
        # the graph, which a replace would do; a JSON document with no nodes says that plainly
        raise GraphError(
            "bad_csv",
            "no edges: an empty CSV (or a header alone) is refused; to empty the graph, import "
            '{"nodes": [], "edges": []} with mode=replace',
            "",
        )
    node_records = [{"id": node_id} for node_id in nodes]
    return parsed_by_line(node_records, edges, list(nodes.values()), edge_lines)
