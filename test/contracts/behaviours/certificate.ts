import { expect } from "chai";
import { ethers } from "hardhat";
import { loadFixture, time } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import type { ContractTransactionResponse } from "ethers";
import type { CertificateRegistry } from "../../../typechain-types";
import {
  deployCertificateRegistryFixture,
  registerCertificate,
  signCertificate,
  type CertificateBinding,
  type CertificateFixture,
} from "../../helpers/contracts-fixtures";

/** Asserts what `certificateOf(fingerprint, holder)` returns. */
export async function expectCertificate(
  certificates: CertificateRegistry,
  fingerprint: string,
  expected: { holder: string; notBefore: bigint; notAfter: bigint; revokedAt: bigint },
  holder: string = expected.holder,
): Promise<void> {
  const [certificate, revokedAt] = await certificates.certificateOf(fingerprint, holder);
  expect(certificate.holder).to.equal(expected.holder, "holder");
  expect(certificate.notBefore).to.equal(expected.notBefore, "notBefore");
  expect(certificate.notAfter).to.equal(expected.notAfter, "notAfter");
  expect(revokedAt).to.equal(expected.revokedAt, "revokedAt");
}

/** A certificate holder: the address bound to the certificate, and how it signs and revokes. */
export interface Holder {
  address: string;
  /** The account that controls the holder (the EOA itself, or the wallet's owner). */
  controller: string;
  sign(binding: CertificateBinding): Promise<string>;
  revoke(fingerprint: string): Promise<ContractTransactionResponse>;
}

export interface HolderKind {
  name: string;
  holder(f: CertificateFixture): Promise<Holder>;
  /** Fixture with `bindingFor(f, holder)` registered for this kind of holder. */
  registeredFixture: () => Promise<CertificateFixture & { holderBinding: CertificateBinding }>;
}

export function bindingFor(f: CertificateFixture, holder: Holder): CertificateBinding {
  return { ...f.binding, fingerprint: ethers.keccak256(ethers.toUtf8Bytes(holder.address)), holder: holder.address };
}

async function eoaHolder(f: CertificateFixture): Promise<Holder> {
  return {
    address: f.issuer.address,
    controller: f.issuer.address,
    sign: (binding) => signCertificate(f.issuer, f.certificates, binding),
    revoke: (fingerprint) => f.certificates.connect(f.issuer).revokeCertificate(fingerprint),
  };
}

async function walletHolder(f: CertificateFixture): Promise<Holder> {
  const target = await f.certificates.getAddress();
  return {
    address: await f.wallet.getAddress(),
    controller: f.issuer.address,
    // The wallet accepts the owner's ECDSA signature over the EIP-712 digest (ERC-1271).
    sign: (binding) => signCertificate(f.issuer, f.certificates, binding),
    revoke: (fingerprint) =>
      f.wallet
        .connect(f.issuer)
        .execute(target, f.certificates.interface.encodeFunctionData("revokeCertificate", [fingerprint])),
  };
}

async function registeredFor(makeHolder: (f: CertificateFixture) => Promise<Holder>) {
  const f = await deployCertificateRegistryFixture();
  const holder = await makeHolder(f);
  const holderBinding = bindingFor(f, holder);
  await registerCertificate(f.certificates, f.relayer, holderBinding, await holder.sign(holderBinding));
  return { ...f, holderBinding };
}

async function registeredEoaFixture() {
  return registeredFor(eoaHolder);
}

async function registeredWalletFixture() {
  return registeredFor(walletHolder);
}

export const HOLDER_KINDS: readonly HolderKind[] = [
  { name: "an EOA", holder: eoaHolder, registeredFixture: registeredEoaFixture },
  { name: "an ERC-1271 contract wallet", holder: walletHolder, registeredFixture: registeredWalletFixture },
];

/** Shared behaviour of registerCertificate for every kind of holder. */
export function shouldRegisterCertificatesOf(kind: HolderKind): void {
  describe(`when the holder is ${kind.name}`, function () {
    it("binds the fingerprint relayed by a third account, emitting the relayer and storing the binding", async function () {
      const f = await loadFixture(deployCertificateRegistryFixture);
      const holder = await kind.holder(f);
      const binding = bindingFor(f, holder);
      const signature = await holder.sign(binding);

      await f.certificates
        .connect(f.relayer)
        .registerCertificate.staticCall(
          binding.fingerprint,
          binding.notBefore,
          binding.notAfter,
          holder.address,
          signature,
        );
      await expect(registerCertificate(f.certificates, f.relayer, binding, signature))
        .to.emit(f.certificates, "CertificateRegistered")
        .withArgs(binding.fingerprint, holder.address, binding.notBefore, binding.notAfter, f.relayer.address);
      await expectCertificate(f.certificates, binding.fingerprint, { ...binding, revokedAt: 0n });
      expect(await f.certificates.isValid(binding.fingerprint, holder.address, f.now)).to.equal(true);
    });

    it("reverts with InvalidSignature when another account signed the binding", async function () {
      const f = await loadFixture(deployCertificateRegistryFixture);
      const holder = await kind.holder(f);
      const binding = bindingFor(f, holder);
      const forged = await signCertificate(f.other, f.certificates, binding);

      await expect(registerCertificate(f.certificates, f.other, binding, forged))
        .to.be.revertedWithCustomError(f.certificates, "InvalidSignature")
        .withArgs(holder.address);
      await expectCertificate(f.certificates, binding.fingerprint, {
        holder: ethers.ZeroAddress,
        notBefore: 0n,
        notAfter: 0n,
        revokedAt: 0n,
      });
    });

    it("reverts with InvalidSignature when the signed fields differ from the submitted ones", async function () {
      const f = await loadFixture(deployCertificateRegistryFixture);
      const holder = await kind.holder(f);
      const binding = bindingFor(f, holder);
      const signature = await holder.sign(binding);

      const tampered: CertificateBinding[] = [
        { ...binding, fingerprint: ethers.keccak256(binding.fingerprint) },
        { ...binding, notBefore: binding.notBefore - 1n },
        { ...binding, notAfter: binding.notAfter + 1n },
      ];
      for (const submitted of tampered) {
        await expect(registerCertificate(f.certificates, f.relayer, submitted, signature))
          .to.be.revertedWithCustomError(f.certificates, "InvalidSignature")
          .withArgs(holder.address);
      }
    });

    it("reverts with InvalidSignature when the signature is malformed", async function () {
      const f = await loadFixture(deployCertificateRegistryFixture);
      const holder = await kind.holder(f);
      const binding = bindingFor(f, holder);
      const valid = await holder.sign(binding);

      for (const signature of ["0x", valid.slice(0, -2), ethers.hexlify(ethers.randomBytes(65)), valid + "00"]) {
        await expect(registerCertificate(f.certificates, f.relayer, binding, signature))
          .to.be.revertedWithCustomError(f.certificates, "InvalidSignature")
          .withArgs(holder.address);
      }
    });
  });
}

/** Shared behaviour of revokeCertificate for every kind of holder. */
export function shouldRevokeCertificatesOf(kind: HolderKind): void {
  describe(`when the holder is ${kind.name}`, function () {
    it("emits CertificateRevoked with the block time and records it", async function () {
      const f = await loadFixture(kind.registeredFixture);
      const holder = await kind.holder(f);
      const { fingerprint } = f.holderBinding;
      const revokedAt = BigInt(await time.latest()) + 100n;
      await time.setNextBlockTimestamp(revokedAt);

      await expect(holder.revoke(fingerprint))
        .to.emit(f.certificates, "CertificateRevoked")
        .withArgs(fingerprint, holder.address, revokedAt);
      await expectCertificate(f.certificates, fingerprint, { ...f.holderBinding, revokedAt });
    });

    it("makes isValid false for every time inside the window", async function () {
      const f = await loadFixture(kind.registeredFixture);
      const holder = await kind.holder(f);
      const { fingerprint, notBefore, notAfter } = f.holderBinding;
      expect(await f.certificates.isValid(fingerprint, holder.address, notBefore)).to.equal(true);

      await holder.revoke(fingerprint);
      for (const at of [notBefore, f.now, notAfter]) {
        expect(await f.certificates.isValid(fingerprint, holder.address, at)).to.equal(false);
      }
    });

    it("keeps the certificate revoked: registering it again reverts with CertificateAlreadyRegistered", async function () {
      const f = await loadFixture(kind.registeredFixture);
      const holder = await kind.holder(f);
      const binding = f.holderBinding;
      await holder.revoke(binding.fingerprint);
      const signature = await holder.sign(binding);

      await expect(registerCertificate(f.certificates, f.relayer, binding, signature))
        .to.be.revertedWithCustomError(f.certificates, "CertificateAlreadyRegistered")
        .withArgs(binding.fingerprint, holder.address);
      const [, revokedAt] = await f.certificates.certificateOf(binding.fingerprint, holder.address);
      expect(revokedAt).to.not.equal(0n);
    });

    it("reverts with CertificateAlreadyRevoked on a second revocation, keeping the first time", async function () {
      const f = await loadFixture(kind.registeredFixture);
      const holder = await kind.holder(f);
      const { fingerprint } = f.holderBinding;
      await holder.revoke(fingerprint);
      const [, firstRevokedAt] = await f.certificates.certificateOf(fingerprint, holder.address);

      await expect(holder.revoke(fingerprint))
        .to.be.revertedWithCustomError(f.certificates, "CertificateAlreadyRevoked")
        .withArgs(fingerprint);
      const [, revokedAt] = await f.certificates.certificateOf(fingerprint, holder.address);
      expect(revokedAt).to.equal(firstRevokedAt);
    });

    it("reverts with CertificateNotFound when another account revokes, leaving it valid", async function () {
      const f = await loadFixture(kind.registeredFixture);
      const holder = await kind.holder(f);
      const { fingerprint } = f.holderBinding;
      const strangers = holder.controller === holder.address ? [f.other] : [f.other, f.issuer];

      for (const stranger of strangers) {
        await expect(f.certificates.connect(stranger).revokeCertificate(fingerprint))
          .to.be.revertedWithCustomError(f.certificates, "CertificateNotFound")
          .withArgs(fingerprint, stranger.address);
      }
      await expectCertificate(f.certificates, fingerprint, { ...f.holderBinding, revokedAt: 0n });
      expect(await f.certificates.isValid(fingerprint, holder.address, f.now)).to.equal(true);
    });
  });
}
