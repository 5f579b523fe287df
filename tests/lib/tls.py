"""Throwaway TLS material for tests (a CA and a server certificate for 127.0.0.1)."""

import datetime
import ipaddress
import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID


def _name(common_name):
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca_and_server(directory, prefix='test'):
    """Write ``<prefix>-ca.crt``, ``<prefix>-server.crt`` and ``<prefix>-server.key``; return their paths."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (x509.CertificateBuilder().subject_name(_name(prefix + '-ca')).issuer_name(_name(prefix + '-ca'))
               .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
               .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
               .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name('127.0.0.1')).issuer_name(ca_cert.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address('127.0.0.1')), x509.DNSName('localhost')]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = {}
    for label, data in (('ca', ca_cert.public_bytes(serialization.Encoding.PEM)),
                        ('cert', cert.public_bytes(serialization.Encoding.PEM)),
                        ('key', key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                  serialization.NoEncryption()))):
        path = os.path.join(directory, '%s-%s.pem' % (prefix, label))
        with open(path, 'wb') as handle:
            handle.write(data)
        paths[label] = path
    return paths
