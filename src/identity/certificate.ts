import { X509Certificate, createPrivateKey, createHash, randomBytes, type KeyObject } from "node:crypto";
import fs from "node:fs";
import net from "node:net";
import forge from "node-forge";
import { StatetrailError } from "../errors";
import { type HexHash } from "../chain/hash";

/** A TLS certificate with its private key, as statetrail registers and serves it. */
export interface CertificateMaterial {
  /** The leaf certificate (and any chain after it), PEM. */
  certPem: string;
  /** The leaf's private key, PEM (PKCS#8 for imported keys, PKCS#1 for generated RSA keys). */
  keyPem: string;
  /** SHA-256 of the leaf's DER bytes, 64 lowercase hex. */
  fingerprint: HexHash;
  /** Unix seconds. */
  notBefore: number;
  /** Unix seconds. */
  notAfter: number;
  subject: string;
  serialNumber: string;
  /** e.g. ["DNS:localhost", "IP Address:127.0.0.1"] */
  subjectAltNames: string[];
}

export interface GenerateCertificateOptions {
  /** Host name or IP address the server is reached at. */
  host: string;
  /** Length of the validity window in days (default 365). */
  validityDays?: number;
  /** Start of the validity window (default: now, rounded down to the second, minus 5 minutes of clock skew). */
  notBefore?: Date;
  /** RSA modulus size (default 2048). */
  keyBits?: number;
}

const DEFAULT_VALIDITY_DAYS = 365;
/** A generated certificate starts this long before "now", so slightly slow clocks accept it. */
export const CLOCK_SKEW_SECONDS = 5 * 60;
const CLOCK_SKEW_MS = CLOCK_SKEW_SECONDS * 1000;
const PEM_CERTIFICATE = /-----BEGIN CERTIFICATE-----([A-Za-z0-9+/=\s]+)-----END CERTIFICATE-----/;

/** SHA-256 of the certificate's DER bytes as 64 lowercase hex (node's `fingerprint256` without colons). */
export function fingerprint(certificate: string | Uint8Array): HexHash {
  return createHash("sha256").update(certificateDer(certificate)).digest("hex");
}

/** The DER bytes of a certificate given as PEM (the first certificate in it) or DER. */
export function certificateDer(certificate: string | Uint8Array): Buffer {
  if (typeof certificate !== "string") return Buffer.from(certificate);
  const match = PEM_CERTIFICATE.exec(certificate);
  if (!match) throw new StatetrailError("CERT_INVALID", "no PEM certificate block (-----BEGIN CERTIFICATE-----) found");
  return Buffer.from(match[1].replace(/\s+/g, ""), "base64");
}

/** A self-signed RSA certificate for `host`, made with node-forge. */
export function generateCertificate(options: GenerateCertificateOptions): CertificateMaterial {
  const host = checkHost(options.host);
  const days = options.validityDays ?? DEFAULT_VALIDITY_DAYS;
  if (!Number.isFinite(days) || days <= 0) {
    throw new StatetrailError("INVALID_ARGUMENT", `the validity must be a positive number of days, got ${days}`);
  }
  const notBefore = new Date(Math.floor((options.notBefore?.getTime() ?? Date.now() - CLOCK_SKEW_MS) / 1000) * 1000);
  const notAfter = new Date(notBefore.getTime() + Math.round(days * 86_400) * 1000);

  const keys = forge.pki.rsa.generateKeyPair({ bits: options.keyBits ?? 2048, e: 0x10001 });
  const cert = forge.pki.createCertificate();
  cert.publicKey = keys.publicKey;
  cert.serialNumber = randomSerial();
  cert.validity.notBefore = notBefore;
  cert.validity.notAfter = notAfter;
  const attrs = [
    { name: "commonName", value: host },
    { name: "organizationName", value: "statetrail issuer" },
  ];
  cert.setSubject(attrs);
  cert.setIssuer(attrs);
  cert.setExtensions([
    { name: "basicConstraints", cA: false, critical: true },
    { name: "keyUsage", digitalSignature: true, keyEncipherment: true, critical: true },
    { name: "extKeyUsage", serverAuth: true },
    { name: "subjectAltName", altNames: altNames(host) },
    { name: "subjectKeyIdentifier" },
  ]);
  cert.sign(keys.privateKey, forge.md.sha256.create());

  const certPem = forge.pki.certificateToPem(cert);
  const keyPem = forge.pki.privateKeyToPem(keys.privateKey);
  return describe(certPem, keyPem, new X509Certificate(certPem));
}

/**
 * Reads the operator's own certificate and key (`--cert/--key`). The key must belong to the certificate
 * (CERT_INVALID) and the certificate must not have expired (CERT_EXPIRED). Any key type node can read works.
 */
export function importCertificate(certPem: string, keyPem: string, options: { now?: Date } = {}): CertificateMaterial {
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(certificateDer(certPem));
  } catch (error) {
    if (error instanceof StatetrailError) throw error;
    throw new StatetrailError("CERT_INVALID", `the certificate could not be parsed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(keyPem);
  } catch (error) {
    throw new StatetrailError("CERT_INVALID", `the private key could not be read: ${(error as Error).message}`, {
      cause: error,
      hint: "give an unencrypted PEM private key (PKCS#8, PKCS#1 or SEC1)",
    });
  }
  if (!x509.checkPrivateKey(key)) {
    throw new StatetrailError("CERT_INVALID", "the private key does not belong to the certificate", {
      hint: "pass the key the certificate was issued for",
    });
  }
  const material = describe(certPem, key.export({ type: "pkcs8", format: "pem" }).toString(), x509);
  const now = Math.floor((options.now ?? new Date()).getTime() / 1000);
  if (material.notAfter < now) {
    throw new StatetrailError(
      "CERT_EXPIRED",
      `the certificate expired at ${new Date(material.notAfter * 1000).toISOString()}`,
      { hint: "renew the certificate, or let statetrail generate one" },
    );
  }
  return material;
}

/** importCertificate from files. */
export function readCertificateFiles(certFile: string, keyFile: string, options: { now?: Date } = {}) {
  const read = (file: string, what: string) => {
    try {
      return fs.readFileSync(file, "utf8");
    } catch (error) {
      throw new StatetrailError("CERT_INVALID", `the ${what} file ${file} could not be read`, { cause: error });
    }
  };
  return importCertificate(read(certFile, "certificate"), read(keyFile, "key"), options);
}

/** Fingerprint, validity window and names of a PEM or DER certificate. */
export function certificateInfo(certificate: string | Uint8Array) {
  const der = certificateDer(certificate);
  let x509: X509Certificate;
  try {
    x509 = new X509Certificate(der);
  } catch (error) {
    throw new StatetrailError("CERT_INVALID", `the certificate could not be parsed: ${(error as Error).message}`, {
      cause: error,
    });
  }
  return {
    fingerprint: fingerprint(der),
    notBefore: unixSeconds(x509.validFrom),
    notAfter: unixSeconds(x509.validTo),
    subject: x509.subject,
    serialNumber: x509.serialNumber,
    subjectAltNames: splitAltNames(x509.subjectAltName),
  };
}

function describe(certPem: string, keyPem: string, x509: X509Certificate): CertificateMaterial {
  const info = certificateInfo(x509.raw);
  return { certPem, keyPem, ...info };
}

function unixSeconds(nodeDate: string): number {
  const ms = Date.parse(nodeDate);
  if (Number.isNaN(ms)) throw new StatetrailError("CERT_INVALID", `unreadable certificate date: ${nodeDate}`);
  return Math.floor(ms / 1000);
}

function splitAltNames(value: string | undefined): string[] {
  return value === undefined ? [] : value.split(/,\s*/).filter((name) => name !== "");
}

function checkHost(host: string): string {
  const trimmed = host.trim();
  if (trimmed === "" || !(net.isIP(trimmed) || /^[A-Za-z0-9*]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(trimmed))) {
    throw new StatetrailError("INVALID_ARGUMENT", `not a host name or IP address: "${host}"`);
  }
  return trimmed.toLowerCase();
}

/** DNS name for names; IP for addresses; localhost also gets 127.0.0.1 and ::1. */
function altNames(host: string): Array<{ type: number; value?: string; ip?: string }> {
  if (net.isIP(host)) {
    const names: Array<{ type: number; value?: string; ip?: string }> = [{ type: 7, ip: host }];
    if (host !== "127.0.0.1") names.push({ type: 7, ip: "127.0.0.1" });
    return names;
  }
  const names: Array<{ type: number; value?: string; ip?: string }> = [{ type: 2, value: host }];
  if (host === "localhost") names.push({ type: 7, ip: "127.0.0.1" }, { type: 7, ip: "::1" });
  return names;
}

/** 16 random bytes, first bit cleared so the DER integer is positive, never starting with a zero byte. */
function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0] & 0x7f) | 0x40;
  return bytes.toString("hex");
}
