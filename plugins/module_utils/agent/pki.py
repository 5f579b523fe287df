# Copyright: Ferry developers
# GNU General Public License v3.0+ (see LICENSE or https://www.gnu.org/licenses/gpl-3.0.txt)
"""Per-sync TLS material: a throwaway CA and one leaf certificate per party.

The control node makes a fresh CA for every sync and hands each agent its certificate in a
Secret. Agents accept only peers whose certificate that CA signed *and* whose role (in the
certificate's organisational unit) is one they expect, so a certificate leaked from one sync is
useless for another, and a source agent cannot pose as the control node.
"""

from __future__ import annotations

import datetime
import ipaddress

try:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
    HAS_CRYPTOGRAPHY = True
except ImportError:  # pragma: no cover - reported by the modules
    HAS_CRYPTOGRAPHY = False

ROLES = ('control', 'source', 'sink')
DEFAULT_LIFETIME = datetime.timedelta(hours=48)


def _name(common_name, role=None, sync_id=None):
    attributes = [x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    if role:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, role))
    if sync_id:
        attributes.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, 'ferry-sync-%s' % sync_id))
    return x509.Name(attributes)


def _pem_key(key):
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode('ascii')


def _pem_cert(cert):
    return cert.public_bytes(serialization.Encoding.PEM).decode('ascii')


class SyncPKI:
    """A CA for one sync, able to issue role certificates."""

    def __init__(self, sync_id, ca_key, ca_cert):
        self.sync_id = sync_id
        self._ca_key = ca_key
        self._ca_cert = ca_cert

    @classmethod
    def create(cls, sync_id, lifetime=DEFAULT_LIFETIME):
        now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        name = _name('ferry sync %s CA' % sync_id, sync_id=sync_id)
        cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(x509.random_serial_number())
                .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + lifetime)
                .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                                             encipher_only=False, decipher_only=False), critical=True)
                .sign(key, hashes.SHA256()))
        return cls(sync_id, key, cert)

    @property
    def ca_pem(self):
        return _pem_cert(self._ca_cert)

    def issue(self, role, common_name, hosts=(), lifetime=DEFAULT_LIFETIME):
        """(cert_pem, key_pem) for ``role``; ``hosts`` (IPs or DNS names) go into the SAN for servers."""
        if role not in ROLES:
            raise ValueError('role must be one of %s' % ', '.join(ROLES))
        now = datetime.datetime.now(datetime.timezone.utc)
        key = ec.generate_private_key(ec.SECP256R1())
        sans = []
        for host in hosts:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                sans.append(x509.DNSName(host))
        builder = (x509.CertificateBuilder().subject_name(_name(common_name, role, self.sync_id)).issuer_name(self._ca_cert.subject)
                   .public_key(key.public_key()).serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + lifetime)
                   .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                   .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False))
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        cert = builder.sign(self._ca_key, hashes.SHA256())
        return _pem_cert(cert), _pem_key(key)

    def bundle(self, role, common_name, hosts=()):
        """The files an agent needs, as a Secret's ``stringData``: ca.crt, tls.crt, tls.key."""
        cert, key = self.issue(role, common_name, hosts)
        return {'ca.crt': self.ca_pem, 'tls.crt': cert, 'tls.key': key}
