import { expect } from "chai";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { Signer } from "ethers";
import { StatetrailError } from "../../src/errors";
import { Home } from "../../src/store/home";
import { generateCertificate, type CertificateMaterial } from "../../src/identity/certificate";
import { readIdentity, writeIdentity } from "../../src/identity/record";
import {
  assertCertificateValid,
  certificateStatus,
  registerCertificate,
  registrationRecord,
  revokeCertificate,
  revokeIdentityCertificate,
  rotateCertificate,
  signRegistration,
  submitRegistration,
} from "../../src/identity/registration";
import { certificateDigest } from "../../src/chain/certificate";

async function expectCode(promise: Promise<unknown>, code: string): Promise<StatetrailError> {
  try {
    await promise;
  } catch (error) {
    expect(error, String(error)).to.be.instanceOf(StatetrailError);
    expect((error as StatetrailError).code, (error as Error).message).to.equal(code);
    return error as StatetrailError;
  }
  expect.fail(`expected a ${code} error`);
}

/** A certificate valid from the chain's present (other tests may have moved its clock); small keys, fast. */
async function material(host = "localhost"): Promise<CertificateMaterial> {
  return generateCertificate({ host, keyBits: 1024, notBefore: new Date(((await time.latest()) - 300) * 1000) });
}

async function registryFixture() {
  const [deployer, issuer, relayer, other] = await ethers.getSigners();
  const registry = await ethers.deployContract("CertificateRegistry");
  const certificate = await material();
  return { deployer, issuer, relayer, other, registry, certificate };
}

async function registeredFixture() {
  const fixture = await registryFixture();
  const registration = await registerCertificate(fixture.registry, fixture.issuer, fixture.certificate);
  return { ...fixture, registration };
}

/**
 * A registered certificate and a fresh data directory holding an identity for it. The directory is made on
 * every call: loadFixture rewinds the chain, not the file system.
 */
async function identityFixture() {
  const fixture = await loadFixture(registeredFixture);
  const home = new Home(fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-rotate-"))).ensure();
  fs.writeFileSync(home.path("tls", "cert.pem"), fixture.certificate.certPem);
  fs.writeFileSync(home.path("tls", "key.pem"), fixture.certificate.keyPem, { mode: 0o600 });
  writeIdentity(home, {
    statetrail_identity: 1,
    network: "hardhat",
    chain_id: 31337,
    address: fixture.issuer.address,
    ens_name: null,
    url: "https://localhost:8443",
    host: "localhost",
    port: 8443,
    certificate_fingerprint: fixture.certificate.fingerprint,
    certificate_not_before: fixture.certificate.notBefore,
    certificate_not_after: fixture.certificate.notAfter,
    keystore: "keystore.json",
    certificate: "tls/cert.pem",
    certificate_key: "tls/key.pem",
    previous_certificates: [],
    certificate_registration: registrationRecord(fixture.registration),
  });
  return { ...fixture, home };
}

describe("identity/registration", function () {
  describe("registerCertificate", function () {
    it("registers the fingerprint for the holder, and the status is valid", async function () {
      const { registry, issuer, certificate } = await loadFixture(registryFixture);
      const registration = await registerCertificate(registry, issuer, certificate);
      expect(registration.holder).to.equal(issuer.address);
      expect(registration.relayer).to.equal(issuer.address);
      expect(registration.fingerprint).to.equal(certificate.fingerprint);
      const receipt = await ethers.provider.getTransactionReceipt(registration.transactionHash);
      expect(receipt?.blockNumber).to.equal(registration.blockNumber);
      const [log] = receipt!.logs.map((l) => registry.interface.parseLog(l));
      expect(log?.name).to.equal("CertificateRegistered");
      expect(log?.args.fingerprint).to.equal("0x" + certificate.fingerprint);

      const status = await certificateStatus(registry, certificate.fingerprint, issuer.address);
      expect(status).to.include({
        registered: true,
        holder: issuer.address,
        holderMatches: true,
        notBefore: certificate.notBefore,
        notAfter: certificate.notAfter,
        revokedAt: null,
        inWindow: true,
        valid: true,
      });
      expect(() => assertCertificateValid(status)).to.not.throw();
    });

    it("is relayed by another account, which pays the gas", async function () {
      const { registry, issuer, relayer, certificate } = await loadFixture(registryFixture);
      const before = await ethers.provider.getBalance(issuer.address);
      const registration = await registerCertificate(registry, issuer, certificate, { relayer });
      expect(registration.relayer).to.equal(relayer.address);
      expect(registration.holder).to.equal(issuer.address);
      expect(await ethers.provider.getBalance(issuer.address)).to.equal(before);
      expect((await certificateStatus(registry, certificate.fingerprint, issuer.address)).valid).to.equal(true);
    });

    it("signs offline and submits later through any relayer", async function () {
      const { registry, issuer, other, certificate } = await loadFixture(registryFixture);
      const signed = await signRegistration(registry, issuer, certificate);
      expect(signed.chainId).to.equal(31337n);
      const digest = certificateDigest(signed, { chainId: signed.chainId, verifyingContract: signed.registry });
      expect(ethers.recoverAddress(digest, signed.signature)).to.equal(issuer.address);
      const registration = await submitRegistration(registry, other, signed);
      expect(registration.relayer).to.equal(other.address);
    });

    it("refuses a fingerprint that is already registered with a clear CERT_INVALID", async function () {
      const { registry, issuer, relayer, certificate } = await loadFixture(registeredFixture);
      const error = await expectCode(registerCertificate(registry, issuer, certificate, { relayer }), "CERT_INVALID");
      expect(error.message).to.contain(`certificate ${certificate.fingerprint} is already registered for`);
      expect(error.message).to.contain(issuer.address);
      expect(error.hint).to.match(/rotate/);
    });

    it("lets another key bind the same fingerprint only to itself: the issuer's registration is untouched", async function () {
      const { registry, issuer, other, certificate } = await loadFixture(registeredFixture);
      await registerCertificate(registry, other, certificate);
      expect((await certificateStatus(registry, certificate.fingerprint, issuer.address)).valid).to.equal(true);
      expect((await certificateStatus(registry, certificate.fingerprint, other.address)).holderMatches).to.equal(true);
    });

    it("refuses an expired window with CERT_EXPIRED", async function () {
      const { registry, issuer } = await loadFixture(registryFixture);
      const now = await time.latest();
      const request = { fingerprint: "c".repeat(64), notBefore: now - 100, notAfter: now - 10 };
      await expectCode(registerCertificate(registry, issuer, request), "CERT_EXPIRED");
    });

    it("refuses a window that ends before it starts with INVALID_ARGUMENT", async function () {
      const { registry, issuer } = await loadFixture(registryFixture);
      const now = await time.latest();
      const request = { fingerprint: "c".repeat(64), notBefore: now + 1000, notAfter: now + 100 };
      await expectCode(registerCertificate(registry, issuer, request), "INVALID_ARGUMENT");
    });

    it("reports a holder without funds as INSUFFICIENT_FUNDS", async function () {
      const { registry, certificate } = await loadFixture(registryFixture);
      const poor: Signer = ethers.Wallet.createRandom().connect(ethers.provider);
      const error = await expectCode(registerCertificate(registry, poor, certificate), "INSUFFICIENT_FUNDS");
      expect(error.hint).to.match(/relay/);
    });
  });

  describe("revokeCertificate", function () {
    it("revokes: the status becomes invalid and asserting it gives CERT_REVOKED", async function () {
      const { registry, issuer, certificate } = await loadFixture(registeredFixture);
      const revocation = await revokeCertificate(registry, issuer, certificate.fingerprint);
      const block = await ethers.provider.getBlock(revocation.blockNumber);
      expect(revocation.revokedAt).to.equal(block!.timestamp);
      const status = await certificateStatus(registry, certificate.fingerprint, issuer.address);
      expect(status).to.include({ registered: true, holderMatches: true, inWindow: true, valid: false });
      expect(status.revokedAt).to.equal(revocation.revokedAt);
      expect(() => assertCertificateValid(status))
        .to.throw(StatetrailError)
        .with.property("code", "CERT_REVOKED");
    });

    it("refuses a second revocation with CERT_REVOKED", async function () {
      const { registry, issuer, certificate } = await loadFixture(registeredFixture);
      await revokeCertificate(registry, issuer, certificate.fingerprint);
      await expectCode(revokeCertificate(registry, issuer, certificate.fingerprint), "CERT_REVOKED");
    });

    it("refuses to register a revoked fingerprint again with CERT_REVOKED", async function () {
      const { registry, issuer, certificate } = await loadFixture(registeredFixture);
      await revokeCertificate(registry, issuer, certificate.fingerprint);
      const error = await expectCode(registerCertificate(registry, issuer, certificate), "CERT_REVOKED");
      expect(error.message).to.match(/revoked at/);
    });

    it("lets only the holder revoke", async function () {
      const { registry, other, certificate } = await loadFixture(registeredFixture);
      const error = await expectCode(
        revokeCertificate(registry, other, certificate.fingerprint),
        "CERT_NOT_REGISTERED",
      );
      expect(error.message).to.match(/is not registered for/);
    });

    it("refuses an unknown fingerprint with CERT_NOT_REGISTERED", async function () {
      const { registry, issuer } = await loadFixture(registryFixture);
      await expectCode(revokeCertificate(registry, issuer, "d".repeat(64)), "CERT_NOT_REGISTERED");
    });
  });

  describe("certificateStatus", function () {
    it("is not registered for an unknown fingerprint", async function () {
      const { registry, issuer } = await loadFixture(registryFixture);
      const status = await certificateStatus(registry, "e".repeat(64), issuer.address);
      expect(status).to.include({ registered: false, holder: null, holderMatches: false, valid: false });
      expect(() => assertCertificateValid(status))
        .to.throw(StatetrailError)
        .with.property("code", "CERT_NOT_REGISTERED");
    });

    it("does not match another holder", async function () {
      const { registry, other, certificate } = await loadFixture(registeredFixture);
      const status = await certificateStatus(registry, certificate.fingerprint, other.address);
      expect(status).to.include({ registered: false, holderMatches: false, valid: false });
      expect(() => assertCertificateValid(status))
        .to.throw(StatetrailError)
        .with.property("code", "CERT_NOT_REGISTERED");
    });

    it("is outside the window before notBefore and after notAfter", async function () {
      const { registry, issuer, certificate } = await loadFixture(registeredFixture);
      for (const at of [certificate.notBefore - 1, certificate.notAfter + 1]) {
        const status = await certificateStatus(registry, certificate.fingerprint, issuer.address, at);
        expect(status).to.include({ registered: true, holderMatches: true, inWindow: false, valid: false, at });
        expect(() => assertCertificateValid(status))
          .to.throw(StatetrailError)
          .with.property("code", "CERT_EXPIRED");
      }
      const edge = await certificateStatus(registry, certificate.fingerprint, issuer.address, certificate.notAfter);
      expect(edge.valid).to.equal(true);
    });

    it("follows the chain's clock by default", async function () {
      const { registry, issuer, certificate } = await loadFixture(registeredFixture);
      await time.increaseTo(certificate.notAfter + 10);
      const status = await certificateStatus(registry, certificate.fingerprint, issuer.address);
      expect(status.at).to.be.greaterThan(certificate.notAfter);
      expect(status.valid).to.equal(false);
    });
  });

  describe("rotateCertificate", function () {
    it("registers a new certificate, keeps the old one registered and records it as previous", async function () {
      const { registry, issuer, home, certificate } = await identityFixture();
      const result = await rotateCertificate({ home, registry, signer: issuer, validityDays: 30 });
      const record = readIdentity(home);
      expect(record.certificate_fingerprint).to.equal(result.certificate.fingerprint);
      expect(record.certificate_fingerprint).to.not.equal(certificate.fingerprint);
      expect(record.certificate_not_after - record.certificate_not_before).to.equal(30 * 86_400);
      expect(record.certificate_registration?.transaction_hash).to.equal(result.registration.transactionHash);
      expect(record.previous_certificates).to.have.length(1);
      expect(record.previous_certificates[0]).to.include({ fingerprint: certificate.fingerprint, revoked: false });
      expect(fs.readFileSync(home.path("tls", "cert.pem"), "utf8")).to.equal(result.certificate.certPem);
      expect(fs.statSync(home.path("tls", "key.pem")).mode & 0o777).to.equal(0o600);
      expect(fs.readFileSync(home.path(record.previous_certificates[0].certificate!), "utf8")).to.equal(
        certificate.certPem,
      );
      // both stay valid until the old one is revoked
      expect((await certificateStatus(registry, certificate.fingerprint, issuer.address)).valid).to.equal(true);
      expect((await certificateStatus(registry, result.certificate.fingerprint, issuer.address)).valid).to.equal(true);
      expect(result.revocation).to.equal(null);

      await revokeIdentityCertificate({ home, registry, signer: issuer, fingerprint: certificate.fingerprint });
      expect(readIdentity(home).previous_certificates[0]).to.include({ revoked: true });
      expect((await certificateStatus(registry, certificate.fingerprint, issuer.address)).valid).to.equal(false);
    });

    it("optionally revokes the previous certificate, relayed registration included", async function () {
      const { registry, issuer, relayer, home, certificate } = await identityFixture();
      const result = await rotateCertificate({ home, registry, signer: issuer, relayer, revokePrevious: true });
      expect(result.registration.relayer).to.equal(relayer.address);
      expect(result.revocation?.fingerprint).to.equal(certificate.fingerprint);
      const record = readIdentity(home);
      expect(record.previous_certificates[0]).to.include({ revoked: true, revoked_at: result.revocation!.revokedAt });
      expect((await certificateStatus(registry, certificate.fingerprint, issuer.address)).revokedAt).to.equal(
        result.revocation!.revokedAt,
      );
      expect((await certificateStatus(registry, result.certificate.fingerprint, issuer.address)).valid).to.equal(true);
    });

    it("takes the operator's certificate and key", async function () {
      const { registry, issuer, home } = await identityFixture();
      const next = await material();
      const result = await rotateCertificate({
        home,
        registry,
        signer: issuer,
        certPem: next.certPem,
        keyPem: next.keyPem,
      });
      expect(result.certificate.fingerprint).to.equal(next.fingerprint);
      expect(readIdentity(home).certificate_fingerprint).to.equal(next.fingerprint);
    });

    it("refuses another key than the identity's, and leaves identity.json unchanged", async function () {
      const { registry, other, home } = await identityFixture();
      const before = fs.readFileSync(home.path("identity.json"), "utf8");
      await expectCode(rotateCertificate({ home, registry, signer: other }), "INVALID_ARGUMENT");
      expect(fs.readFileSync(home.path("identity.json"), "utf8")).to.equal(before);
    });
  });
});
