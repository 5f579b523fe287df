# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Ferry's exception hierarchy.

Every layer raises a FerryError subclass whose message says what is wrong and how to fix it;
modules turn it into ``fail_json`` with ``details`` as structured extra keys.
"""

from __future__ import annotations


def first_line(exc):
    """The first line of an exception's text (client libraries append whole responses), else its class name."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else exc.__class__.__name__


class FerryError(Exception):
    """Base of every error Ferry reports to a user."""

    def __init__(self, message, **details):
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self):
        return self.message


class ClusterError(FerryError):
    """A cluster could not be reached, authenticated against, or asked for something."""


class ConnectionConfigError(ClusterError):
    """The connection options themselves are wrong (missing file, unknown context...)."""


class ApiError(ClusterError):
    """The API server answered a request with an error Status."""

    def __init__(self, message, status=None, reason=None, **details):
        super().__init__(message, status=status, reason=reason, **details)
        self.status = status
        self.reason = reason
