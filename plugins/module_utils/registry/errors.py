# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Errors of registry replication: each says what is wrong and which option fixes it."""

from __future__ import annotations

from ansible_collections.ferry.kube.plugins.module_utils.kube.errors import FerryError


class RegistryError(FerryError):
    """A registry could not be reached, refused a request, or served something wrong."""


class RegistryAuthError(RegistryError):
    """A registry or its token service refused the credentials (HTTP 401) or the permission (403)."""


class NotFoundError(RegistryError):
    """A manifest, blob or repository does not exist at the registry."""


class DigestMismatchError(RegistryError):
    """What a registry served does not hash to the digest it was asked for."""


class RetryableError(RegistryError):
    """A transient failure (connection reset, 429, 5xx) worth another attempt."""
