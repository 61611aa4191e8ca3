import { expect } from "chai";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import forge from "node-forge";
import {
  certificateDer,
  certificateInfo,
  fingerprint,
  generateCertificate,
  importCertificate,
  readCertificateFiles,
  type CertificateMaterial,
} from "../../src/identity/certificate";
import { StatetrailError } from "../../src/errors";

function expectCode(fn: () => unknown, code: string): StatetrailError {
  try {
    fn();
  } catch (error) {
    expect(error).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code).to.equal(code);
    return error as StatetrailError;
  }
  expect.fail(`expected a ${code} error`);
}

/** node's colon-separated upper-case fingerprint256 in statetrail's wire form. */
function nodeFingerprint(pem: string): string {
  return new X509Certificate(pem).fingerprint256.replace(/:/g, "").toLowerCase();
}

/** A self-signed RSA-1024 certificate made without statetrail, valid in [notBefore, notAfter]. */
function foreignCertificate(notBefore: Date, notAfter: Date): { certPem: string; keyPem: string } {
  const keys = forge.pki.rsa.generateKeyPair({ bits: 1024, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = "01";
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  cert.setSubject([{ name: "commonName", value: "operator.example" }]);
  cert.setIssuer([{ name: "commonName", value: "operator.example" }]);
  cert.sign(keys.privateKey, forge.md.sha256.create());
  return { certPem: forge.pki.certificateToPem(cert), keyPem: forge.pki.privateKeyToPem(keys.privateKey) };
}

describe("identity/certificate", function () {
  let localhost: CertificateMaterial;

  before(function () {
    localhost = generateCertificate({ host: "localhost" });
  });

  describe("generateCertificate", function () {
    it("makes a certificate whose fingerprint equals node's X509Certificate fingerprint256", function () {
      expect(localhost.fingerprint).to.match(/^[0-9a-f]{64}$/);
      expect(localhost.fingerprint).to.equal(nodeFingerprint(localhost.certPem));
    });

    it("makes an RSA-2048 key that belongs to the certificate", function () {
      const x509 = new X509Certificate(localhost.certPem);
      expect(x509.publicKey.asymmetricKeyType).to.equal("rsa");
      expect(x509.publicKey.asymmetricKeyDetails?.modulusLength).to.equal(2048);
      expect(importCertificate(localhost.certPem, localhost.keyPem).fingerprint).to.equal(localhost.fingerprint);
    });

    it("names localhost by DNS and 127.0.0.1 by IP, and is self-signed for server auth", function () {
      expect(localhost.subjectAltNames).to.include.members(["DNS:localhost", "IP Address:127.0.0.1"]);
      const x509 = new X509Certificate(localhost.certPem);
      expect(x509.checkHost("localhost")).to.equal("localhost");
      expect(x509.checkIP("127.0.0.1")).to.equal("127.0.0.1");
      expect(x509.verify(x509.publicKey)).to.equal(true);
      expect(x509.ca).to.equal(false);
      expect(x509.keyUsage).to.include("1.3.6.1.5.5.7.3.1");
    });

    it("names an IP host by IP and a DNS host by DNS only", function () {
      const ip = generateCertificate({ host: "10.1.2.3", keyBits: 1024 });
      expect(ip.subjectAltNames).to.include("IP Address:10.1.2.3");
      expect(new X509Certificate(ip.certPem).checkIP("10.1.2.3")).to.equal("10.1.2.3");
      const dns = generateCertificate({ host: "Issuer.Example.org", keyBits: 1024 });
      expect(dns.subjectAltNames).to.deep.equal(["DNS:issuer.example.org"]);
    });

    it("is valid for one year by default, in whole seconds, with a random serial", function () {
      const now = Math.floor(Date.now() / 1000);
      expect(localhost.notBefore).to.be.within(now - 3600, now);
      expect(localhost.notAfter - localhost.notBefore).to.equal(365 * 86_400);
      const x509 = new X509Certificate(localhost.certPem);
      expect(Date.parse(x509.validFrom) / 1000).to.equal(localhost.notBefore);
      expect(Date.parse(x509.validTo) / 1000).to.equal(localhost.notAfter);
      const other = generateCertificate({ host: "localhost", keyBits: 1024, validityDays: 7 });
      expect(other.serialNumber).to.not.equal(localhost.serialNumber);
      expect(other.notAfter - other.notBefore).to.equal(7 * 86_400);
    });

    it("refuses a host that is not a name or an address", function () {
      expectCode(() => generateCertificate({ host: "https://x" }), "INVALID_ARGUMENT");
      expectCode(() => generateCertificate({ host: "" }), "INVALID_ARGUMENT");
      expectCode(() => generateCertificate({ host: "localhost", validityDays: 0 }), "INVALID_ARGUMENT");
    });
  });

  describe("fingerprint", function () {
    it("hashes the DER bytes whether given PEM or DER", function () {
      const der = certificateDer(localhost.certPem);
      expect(fingerprint(der)).to.equal(localhost.fingerprint);
      expect(fingerprint(new Uint8Array(der))).to.equal(localhost.fingerprint);
      expect(fingerprint(localhost.certPem)).to.equal(localhost.fingerprint);
    });

    it("agrees with node for a certificate statetrail did not make", function () {
      const { certPem } = foreignCertificate(new Date(Date.now() - 1000), new Date(Date.now() + 86_400_000));
      expect(fingerprint(certPem)).to.equal(nodeFingerprint(certPem));
    });

    it("takes the leaf of a PEM chain", function () {
      const other = foreignCertificate(new Date(), new Date(Date.now() + 1000));
      expect(fingerprint(localhost.certPem + other.certPem)).to.equal(localhost.fingerprint);
    });

    it("refuses text without a certificate", function () {
      expectCode(() => fingerprint("hello"), "CERT_INVALID");
    });
  });

  describe("importCertificate", function () {
    it("accepts the operator's certificate and key and reports its window", function () {
      const notBefore = new Date(Math.floor(Date.now() / 1000) * 1000 - 86_400_000);
      const notAfter = new Date(notBefore.getTime() + 30 * 86_400_000);
      const { certPem, keyPem } = foreignCertificate(notBefore, notAfter);
      const material = importCertificate(certPem, keyPem);
      expect(material.fingerprint).to.equal(nodeFingerprint(certPem));
      expect(material.notBefore).to.equal(notBefore.getTime() / 1000);
      expect(material.notAfter).to.equal(notAfter.getTime() / 1000);
      expect(material.keyPem).to.match(/BEGIN PRIVATE KEY/);
    });

    it("reads an ECDSA (SEC1) key and refuses it for an RSA certificate", function () {
      const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
      const keyPem = privateKey.export({ type: "sec1", format: "pem" }).toString();
      expectCode(() => importCertificate(localhost.certPem, keyPem), "CERT_INVALID");
    });

    it("refuses a key that does not belong to the certificate with CERT_INVALID", function () {
      const other = generateCertificate({ host: "localhost", keyBits: 1024 });
      const error = expectCode(() => importCertificate(localhost.certPem, other.keyPem), "CERT_INVALID");
      expect(error.message).to.match(/does not belong/);
    });

    it("refuses an expired certificate with CERT_EXPIRED", function () {
      const { certPem, keyPem } = foreignCertificate(
        new Date(Date.now() - 10 * 86_400_000),
        new Date(Date.now() - 86_400_000),
      );
      const error = expectCode(() => importCertificate(certPem, keyPem), "CERT_EXPIRED");
      expect(error.message).to.match(/expired/);
    });

    it("refuses unreadable PEM with CERT_INVALID", function () {
      expectCode(() => importCertificate("garbage", localhost.keyPem), "CERT_INVALID");
      expectCode(
        () => importCertificate("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n", localhost.keyPem),
        "CERT_INVALID",
      );
      expectCode(() => importCertificate(localhost.certPem, "not a key"), "CERT_INVALID");
    });

    it("reads the certificate and key from files", function () {
      const dir = fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-cert-"));
      fs.writeFileSync(path.join(dir, "cert.pem"), localhost.certPem);
      fs.writeFileSync(path.join(dir, "key.pem"), localhost.keyPem);
      const material = readCertificateFiles(path.join(dir, "cert.pem"), path.join(dir, "key.pem"));
      expect(material.fingerprint).to.equal(localhost.fingerprint);
      expectCode(() => readCertificateFiles(path.join(dir, "missing.pem"), path.join(dir, "key.pem")), "CERT_INVALID");
    });
  });

  describe("certificateInfo", function () {
    it("describes a certificate without its key", function () {
      const info = certificateInfo(localhost.certPem);
      expect(info.fingerprint).to.equal(localhost.fingerprint);
      expect(info.notAfter).to.equal(localhost.notAfter);
      expect(info.subject).to.contain("CN=localhost");
    });
  });
});
