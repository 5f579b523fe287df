# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""When compressing a stream's next piece is worth trying (the pool's blobs of one file, the wire's payloads)."""

from __future__ import annotations

SHRINK_RATIO = 0.97  # compressed data at least this large is kept as it was
SKIP_AFTER_INCOMPRESSIBLE = 16


class CompressionProbe:
    """Media, compressed and encrypted data do not shrink, and zstd spends about a CPU-second per GB
    to find that out. After a piece that did not shrink, the next ``skip`` are left as they are
    without trying; then one is tried again, so a stream whose data changes kind is followed."""

    __slots__ = ('skip', '_left')

    def __init__(self, skip=SKIP_AFTER_INCOMPRESSIBLE):
        self.skip = skip
        self._left = 0

    def worth_trying(self):
        if self._left:
            self._left -= 1
            return False
        return True

    def shrank(self, length, compressed_length):
        """Whether ``compressed_length`` is worth keeping over ``length``; when not, skip the next pieces."""
        if compressed_length < SHRINK_RATIO * length:
            return True
        self._left = self.skip
        return False
