import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import {
  CERTIFICATE_DOMAIN_NAME,
  CERTIFICATE_DOMAIN_VERSION,
  CERTIFICATE_TYPES,
  certificateDigestOf,
  certificateDomain,
  deployCertificateRegistryFixture,
  hashOf,
  registerCertificate,
  registeredCertificateFixture,
  signCertificate,
  type CertificateBinding,
} from "../helpers/contracts-fixtures";
import {
  HOLDER_KINDS,
  expectCertificate,
  shouldRegisterCertificatesOf,
  shouldRevokeCertificatesOf,
} from "./behaviours/certificate";

const UINT48_MAX = 2n ** 48n - 1n;
const UNREGISTERED = { holder: ethers.ZeroAddress, notBefore: 0n, notAfter: 0n, revokedAt: 0n };

describe("CertificateRegistry", function () {
  describe("registerCertificate", function () {
    it("binds the fingerprint when the holder sends its own signature", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(deployCertificateRegistryFixture);
      const signature = await signCertificate(issuer, certificates, binding);

      await expect(registerCertificate(certificates, issuer, binding, signature))
        .to.emit(certificates, "CertificateRegistered")
        .withArgs(binding.fingerprint, issuer.address, binding.notBefore, binding.notAfter, issuer.address);
      await expectCertificate(certificates, binding.fingerprint, { ...binding, revokedAt: 0n });
      expect(await certificates.isValid(binding.fingerprint, issuer.address, now)).to.equal(true);
    });

    for (const kind of HOLDER_KINDS) {
      shouldRegisterCertificatesOf(kind);
    }

    it("lets a holder bind several certificates at once (rotation)", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(registeredCertificateFixture);
      const next: CertificateBinding = { ...binding, fingerprint: hashOf("certificate: issuer-2.der") };
      await registerCertificate(certificates, issuer, next, await signCertificate(issuer, certificates, next));

      expect(await certificates.isValid(binding.fingerprint, issuer.address, now)).to.equal(true);
      expect(await certificates.isValid(next.fingerprint, issuer.address, now)).to.equal(true);
    });

    it("accepts a one-second window (notBefore equal to notAfter)", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(deployCertificateRegistryFixture);
      const instant: CertificateBinding = { ...binding, notBefore: now + 10n, notAfter: now + 10n };
      await expect(
        registerCertificate(certificates, issuer, instant, await signCertificate(issuer, certificates, instant)),
      ).to.emit(certificates, "CertificateRegistered");
      expect(await certificates.isValid(instant.fingerprint, issuer.address, now + 10n)).to.equal(true);
    });

    it("accepts a window that starts in the future and ends at the largest uint48", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(deployCertificateRegistryFixture);
      const future: CertificateBinding = { ...binding, notBefore: now + 86_400n, notAfter: UINT48_MAX };
      await registerCertificate(certificates, issuer, future, await signCertificate(issuer, certificates, future));
      await expectCertificate(certificates, future.fingerprint, { ...future, revokedAt: 0n });
      expect(await certificates.isValid(future.fingerprint, issuer.address, now)).to.equal(false);
    });

    it("accepts a window that ends exactly at the registration block time", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(deployCertificateRegistryFixture);
      const at = now + 60n;
      const ending: CertificateBinding = { ...binding, notAfter: at };
      const signature = await signCertificate(issuer, certificates, ending);
      await time.setNextBlockTimestamp(at);
      await expect(registerCertificate(certificates, issuer, ending, signature)).to.emit(
        certificates,
        "CertificateRegistered",
      );
    });

    it("reverts with CertificateExpired when the window ended before the registration block", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(deployCertificateRegistryFixture);
      const at = now + 60n;
      const expired: CertificateBinding = { ...binding, notAfter: at - 1n };
      const signature = await signCertificate(issuer, certificates, expired);
      await time.setNextBlockTimestamp(at);
      await expect(registerCertificate(certificates, issuer, expired, signature))
        .to.be.revertedWithCustomError(certificates, "CertificateExpired")
        .withArgs(expired.fingerprint, expired.notAfter);
      await expectCertificate(certificates, expired.fingerprint, UNREGISTERED);
    });

    it("reverts with InvalidValidityWindow when notBefore is after notAfter", async function () {
      const { certificates, issuer, binding } = await loadFixture(deployCertificateRegistryFixture);
      const inverted: CertificateBinding = { ...binding, notBefore: binding.notAfter + 1n };
      const signature = await signCertificate(issuer, certificates, inverted);
      await expect(registerCertificate(certificates, issuer, inverted, signature))
        .to.be.revertedWithCustomError(certificates, "InvalidValidityWindow")
        .withArgs(inverted.notBefore, inverted.notAfter);
    });

    it("reverts with InvalidFingerprint for the zero fingerprint", async function () {
      const { certificates, issuer, binding } = await loadFixture(deployCertificateRegistryFixture);
      const zero: CertificateBinding = { ...binding, fingerprint: ethers.ZeroHash };
      const signature = await signCertificate(issuer, certificates, zero);
      await expect(registerCertificate(certificates, issuer, zero, signature)).to.be.revertedWithCustomError(
        certificates,
        "InvalidFingerprint",
      );
    });

    it("reverts with InvalidHolder for the zero address", async function () {
      const { certificates, issuer, binding } = await loadFixture(deployCertificateRegistryFixture);
      const nobody: CertificateBinding = { ...binding, holder: ethers.ZeroAddress };
      const signature = await signCertificate(issuer, certificates, nobody);
      await expect(registerCertificate(certificates, issuer, nobody, signature)).to.be.revertedWithCustomError(
        certificates,
        "InvalidHolder",
      );
    });

    it("reverts with CertificateAlreadyRegistered when the holder registers the fingerprint again", async function () {
      const { certificates, issuer, relayer, binding, signature } = await loadFixture(registeredCertificateFixture);
      await expect(registerCertificate(certificates, relayer, binding, signature))
        .to.be.revertedWithCustomError(certificates, "CertificateAlreadyRegistered")
        .withArgs(binding.fingerprint, issuer.address);
    });

    it("lets another account bind the same fingerprint only to itself, leaving the issuer's registration as it was", async function () {
      const { certificates, issuer, other, binding } = await loadFixture(registeredCertificateFixture);
      const copy: CertificateBinding = { ...binding, holder: other.address, notAfter: binding.notAfter + 1n };
      await registerCertificate(certificates, other, copy, await signCertificate(other, certificates, copy));

      await expectCertificate(certificates, binding.fingerprint, { ...binding, revokedAt: 0n });
      await expectCertificate(certificates, binding.fingerprint, { ...copy, revokedAt: 0n });
      expect(await certificates.isValid(binding.fingerprint, issuer.address, binding.notBefore)).to.equal(true);
    });

    it("cannot be squatted: a fingerprint bound first by a stranger still registers for its real holder", async function () {
      const { certificates, issuer, other, relayer, binding } = await loadFixture(deployCertificateRegistryFixture);
      const squat: CertificateBinding = { ...binding, holder: other.address };
      await registerCertificate(certificates, other, squat, await signCertificate(other, certificates, squat));

      await expect(
        registerCertificate(certificates, relayer, binding, await signCertificate(issuer, certificates, binding)),
      )
        .to.emit(certificates, "CertificateRegistered")
        .withArgs(binding.fingerprint, issuer.address, binding.notBefore, binding.notAfter, relayer.address);
      expect(await certificates.isValid(binding.fingerprint, issuer.address, binding.notBefore)).to.equal(true);
    });

    it("reverts with InvalidSignature for a signature made for another chain or another registry", async function () {
      const { certificates, issuer, binding } = await loadFixture(deployCertificateRegistryFixture);
      const domain = await certificateDomain(certificates);
      const elsewhere = [
        { ...domain, chainId: 1n },
        { ...domain, verifyingContract: ethers.getAddress(ethers.dataSlice(hashOf("another registry"), 12)) },
        { ...domain, name: "another registry" },
        { ...domain, version: "2" },
      ];
      for (const foreign of elsewhere) {
        const signature = await issuer.signTypedData(foreign, CERTIFICATE_TYPES, binding);
        await expect(registerCertificate(certificates, issuer, binding, signature))
          .to.be.revertedWithCustomError(certificates, "InvalidSignature")
          .withArgs(issuer.address);
      }
    });
  });

  describe("revokeCertificate", function () {
    for (const kind of HOLDER_KINDS) {
      shouldRevokeCertificatesOf(kind);
    }

    it("reverts with CertificateNotFound for a fingerprint that was never registered", async function () {
      const { certificates, issuer } = await loadFixture(registeredCertificateFixture);
      const unknown = hashOf("certificate: unknown.der");
      await expect(certificates.connect(issuer).revokeCertificate(unknown))
        .to.be.revertedWithCustomError(certificates, "CertificateNotFound")
        .withArgs(unknown, issuer.address);
      await expectCertificate(certificates, unknown, UNREGISTERED, issuer.address);
    });

    it("cannot be revoked through a holder's wallet by anyone but the wallet's owner", async function () {
      const wallet = HOLDER_KINDS.find((kind) => kind.name.includes("ERC-1271"))!;
      const f = await loadFixture(wallet.registeredFixture);
      const { fingerprint } = f.holderBinding;
      const calldata = f.certificates.interface.encodeFunctionData("revokeCertificate", [fingerprint]);

      await expect(f.wallet.connect(f.other).execute(await f.certificates.getAddress(), calldata))
        .to.be.revertedWithCustomError(f.wallet, "NotOwner")
        .withArgs(f.other.address);
      await expectCertificate(f.certificates, fingerprint, { ...f.holderBinding, revokedAt: 0n });
    });

    it("revokes only the named certificate of a holder with several", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(registeredCertificateFixture);
      const next: CertificateBinding = { ...binding, fingerprint: hashOf("certificate: issuer-2.der") };
      await registerCertificate(certificates, issuer, next, await signCertificate(issuer, certificates, next));

      await certificates.connect(issuer).revokeCertificate(binding.fingerprint);
      expect(await certificates.isValid(binding.fingerprint, issuer.address, now)).to.equal(false);
      expect(await certificates.isValid(next.fingerprint, issuer.address, now)).to.equal(true);
    });
  });

  describe("certificateOf", function () {
    it("returns an empty record for a fingerprint that was never registered", async function () {
      const { certificates, issuer } = await loadFixture(registeredCertificateFixture);
      await expectCertificate(certificates, hashOf("certificate: unknown.der"), UNREGISTERED, issuer.address);
    });

    it("returns the binding and a zero revocation time for a live certificate", async function () {
      const { certificates, binding } = await loadFixture(registeredCertificateFixture);
      await expectCertificate(certificates, binding.fingerprint, { ...binding, revokedAt: 0n });
    });
  });

  describe("isValid", function () {
    it("is true exactly on the inclusive window [notBefore, notAfter]", async function () {
      const { certificates, issuer, binding } = await loadFixture(registeredCertificateFixture);
      const { fingerprint, notBefore, notAfter } = binding;
      const cases: [bigint, boolean][] = [
        [0n, false],
        [notBefore - 1n, false],
        [notBefore, true],
        [notBefore + 1n, true],
        [notAfter - 1n, true],
        [notAfter, true],
        [notAfter + 1n, false],
        [UINT48_MAX, false],
      ];
      for (const [at, valid] of cases) {
        expect(await certificates.isValid(fingerprint, issuer.address, at)).to.equal(valid, `at ${at}`);
      }
    });

    it("depends on the queried time, not on the current block time", async function () {
      const { certificates, issuer, binding } = await loadFixture(registeredCertificateFixture);
      await time.increaseTo(binding.notAfter + 1_000n);
      expect(await certificates.isValid(binding.fingerprint, issuer.address, binding.notAfter)).to.equal(true);
    });

    it("is false for an address that is not the holder", async function () {
      const { certificates, other, wallet, binding, now } = await loadFixture(registeredCertificateFixture);
      for (const address of [other.address, await wallet.getAddress(), ethers.ZeroAddress]) {
        expect(await certificates.isValid(binding.fingerprint, address, now)).to.equal(false, address);
      }
    });

    it("is false for a fingerprint that was never registered, even for the zero holder", async function () {
      const { certificates, issuer } = await loadFixture(registeredCertificateFixture);
      const unknown = hashOf("certificate: unknown.der");
      expect(await certificates.isValid(unknown, issuer.address, 0n)).to.equal(false);
      expect(await certificates.isValid(unknown, ethers.ZeroAddress, 0n)).to.equal(false);
      expect(await certificates.isValid(ethers.ZeroHash, ethers.ZeroAddress, 0n)).to.equal(false);
    });

    it("is false once the certificate is revoked", async function () {
      const { certificates, issuer, binding, now } = await loadFixture(registeredCertificateFixture);
      await certificates.connect(issuer).revokeCertificate(binding.fingerprint);
      expect(await certificates.isValid(binding.fingerprint, issuer.address, now)).to.equal(false);
    });
  });

  describe("certificateDigest", function () {
    it("equals the EIP-712 hash computed off-chain with ethers.TypedDataEncoder", async function () {
      const { certificates, issuer, wallet, binding } = await loadFixture(deployCertificateRegistryFixture);
      const bindings: CertificateBinding[] = [
        binding,
        { ...binding, holder: await wallet.getAddress() },
        {
          fingerprint: ethers.toBeHex(ethers.MaxUint256, 32),
          notBefore: 0n,
          notAfter: UINT48_MAX,
          holder: issuer.address,
        },
        { fingerprint: hashOf("x"), notBefore: UINT48_MAX, notAfter: 0n, holder: ethers.ZeroAddress },
      ];
      for (const b of bindings) {
        const expected = ethers.TypedDataEncoder.hash(
          {
            name: "statetrail CertificateRegistry",
            version: "1",
            chainId: (await ethers.provider.getNetwork()).chainId,
            verifyingContract: await certificates.getAddress(),
          },
          {
            Certificate: [
              { name: "fingerprint", type: "bytes32" },
              { name: "notBefore", type: "uint48" },
              { name: "notAfter", type: "uint48" },
              { name: "holder", type: "address" },
            ],
          },
          b,
        );
        expect(await certificates.certificateDigest(b.fingerprint, b.notBefore, b.notAfter, b.holder)).to.equal(
          expected,
        );
        expect(await certificateDigestOf(certificates, b)).to.equal(expected);
      }
    });

    it("is the digest an EOA signature over the typed data recovers from", async function () {
      const { certificates, issuer, binding } = await loadFixture(deployCertificateRegistryFixture);
      const digest = await certificates.certificateDigest(
        binding.fingerprint,
        binding.notBefore,
        binding.notAfter,
        binding.holder,
      );
      const signature = await signCertificate(issuer, certificates, binding);
      expect(ethers.recoverAddress(digest, signature)).to.equal(issuer.address);
    });

    it("publishes the type hash and the EIP-5267 domain it is built from", async function () {
      const { certificates } = await loadFixture(deployCertificateRegistryFixture);
      const encodedType = ethers.TypedDataEncoder.from(CERTIFICATE_TYPES).encodeType("Certificate");
      expect(encodedType).to.equal("Certificate(bytes32 fingerprint,uint48 notBefore,uint48 notAfter,address holder)");
      expect(await certificates.CERTIFICATE_TYPEHASH()).to.equal(ethers.id(encodedType));

      const domain = await certificates.eip712Domain();
      expect(domain.fields).to.equal("0x0f");
      expect(domain.name).to.equal(CERTIFICATE_DOMAIN_NAME);
      expect(domain.version).to.equal(CERTIFICATE_DOMAIN_VERSION);
      expect(domain.chainId).to.equal((await ethers.provider.getNetwork()).chainId);
      expect(domain.verifyingContract).to.equal(await certificates.getAddress());
      expect(domain.salt).to.equal(ethers.ZeroHash);
      expect(domain.extensions).to.deep.equal([]);
    });
  });

  describe("version", function () {
    it("is 1.0.0", async function () {
      const { certificates } = await loadFixture(deployCertificateRegistryFixture);
      expect(await certificates.version()).to.equal("1.0.0");
    });
  });
});
