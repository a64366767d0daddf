"""Certificates for a one-node cluster whose Pods reach the API server: one CA, the API
server's serving certificate (with the Service IP and DNS names in-cluster clients use), the
kubelet's, and a client certificate per component, named as Kubernetes' RBAC expects."""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID

from album_operator_dev.localcluster.pki import key_pem, sign_cert, subject_name

# Component -> (common name, organization): the identities the default RBAC roles bind.
CLIENT_IDENTITIES = {
    "admin": ("albumops-node-admin", "system:masters"),
    "kubelet": ("system:node:{node}", "system:nodes"),
    "kube-scheduler": ("system:kube-scheduler", None),
    "kube-controller-manager": ("system:kube-controller-manager", None),
    "kube-proxy": ("system:kube-proxy", None),
    # The API server's own identity towards the kubelet (logs, exec, port-forward).
    "apiserver-kubelet-client": ("kube-apiserver-kubelet-client", "system:masters"),
    "coredns": ("albumops:coredns", None),
}


@dataclass(frozen=True)
class NodePki:
    directory: Path

    @property
    def ca_cert(self) -> Path:
        return self.directory / "ca.crt"

    def cert(self, name: str) -> Path:
        return self.directory / f"{name}.crt"

    def key(self, name: str) -> Path:
        return self.directory / f"{name}.key"

    @property
    def service_account_key(self) -> Path:
        return self.directory / "sa.key"

    @property
    def service_account_pub(self) -> Path:
        return self.directory / "sa.pub"


def _write(pki: NodePki, name: str, cert: x509.Certificate,
           key: ec.EllipticCurvePrivateKey) -> None:
    pki.cert(name).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    pki.key(name).write_bytes(key_pem(key))
    pki.key(name).chmod(0o600)


def _serving_sans(dns_names: list[str], ips: list[str]) -> list[x509.GeneralName]:
    sans: list[x509.GeneralName] = [x509.DNSName(name) for name in dns_names]
    sans += [x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips]
    return sans


def create_node_pki(directory: Path, now: dt.datetime, *, node_name: str, node_ip: str,
                    service_ip: str) -> NodePki:
    directory.mkdir(parents=True, exist_ok=True)
    pki = NodePki(directory)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = subject_name("albumops-node-ca")
    ca = sign_cert(ca_name, ca_key, ca_name, ca_key, now, is_ca=True)
    pki.ca_cert.write_bytes(ca.public_bytes(serialization.Encoding.PEM))

    def issue(name: str, subject: x509.Name, usage: x509.ObjectIdentifier,
              sans: list[x509.GeneralName] | None = None) -> None:
        key = ec.generate_private_key(ec.SECP256R1())
        _write(pki, name, sign_cert(subject, key, ca_name, ca_key, now, usages=[usage], sans=sans),
               key)

    issue("apiserver", subject_name("kube-apiserver"), ExtendedKeyUsageOID.SERVER_AUTH,
          _serving_sans(["localhost", "kubernetes", "kubernetes.default",
                         "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"],
                        ["127.0.0.1", node_ip, service_ip]))
    issue("kubelet-serving", subject_name(node_name), ExtendedKeyUsageOID.SERVER_AUTH,
          _serving_sans([node_name, "localhost"], ["127.0.0.1", node_ip]))
    for component, (common_name, organization) in CLIENT_IDENTITIES.items():
        issue(component, subject_name(common_name.format(node=node_name), organization),
              ExtendedKeyUsageOID.CLIENT_AUTH)

    sa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pki.service_account_key.write_bytes(key_pem(sa_key))
    pki.service_account_key.chmod(0o600)
    pki.service_account_pub.write_bytes(sa_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    return pki
