"""``python _glibc_default.py serve --config ...``: the ``visionflow`` command line, unchanged,
except that the service leaves glibc's mmap threshold to glibc (``map_large_blocks`` does
nothing), for benchmarks/bodies_memory.py's ``--compare``: what memory does without it, in the
same run and conditions."""

from __future__ import annotations

import sys

import visionflow.memory

# before visionflow.service is imported: it binds the name when it is
visionflow.memory.map_large_blocks = lambda threshold=0: False

from visionflow.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
