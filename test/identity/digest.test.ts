import { expect } from "chai";
import fc from "fast-check";
import { ethers } from "hardhat";
import { loadFixture } from "@nomicfoundation/hardhat-toolbox/network-helpers";
import {
  CERTIFICATE_TYPE_STRING,
  certificateDigest,
  certificateStructHash,
  certificateTypedData,
  recoverCertificateSigner,
  signCertificateBinding,
  type CertificateBinding,
} from "../../src/chain/certificate";
import { isStatetrailError } from "../../src/errors";

async function registryFixture() {
  const [deployer, holder] = await ethers.getSigners();
  const registry = await ethers.deployContract("CertificateRegistry");
  const { chainId } = await ethers.provider.getNetwork();
  const domain = { chainId, verifyingContract: await registry.getAddress() };
  return { deployer, holder, registry, domain };
}

const UINT48_MAX = 2n ** 48n - 1n;

const INPUTS: CertificateBinding[] = [
  { fingerprint: "00".repeat(31) + "01", notBefore: 0, notAfter: 0, holder: "0x" + "00".repeat(19) + "01" },
  {
    fingerprint: "a".repeat(64),
    notBefore: 1_700_000_000,
    notAfter: 1_731_536_000,
    holder: "0x70997970C51812dc3A010C7d01b50e0d17dc79C8",
  },
  {
    fingerprint: "0x" + "F".repeat(64),
    notBefore: UINT48_MAX,
    notAfter: UINT48_MAX,
    holder: "0xffffffffffffffffffffffffffffffffffffffff",
  },
  {
    fingerprint: ethers.sha256(ethers.toUtf8Bytes("statetrail")),
    notBefore: 5n,
    notAfter: 2n ** 40n,
    holder: "0x3c44cdddb6a900fa2b585dd299e03d12fa4293bc",
  },
];

describe("chain/certificate (EIP-712 twin of CertificateRegistry)", function () {
  describe("certificateDigest", function () {
    for (const [i, input] of INPUTS.entries()) {
      it(`equals the contract's certificateDigest byte for byte (input ${i})`, async function () {
        const { registry, domain } = await loadFixture(registryFixture);
        const message = certificateTypedData(input, domain).message;
        const onChain = await registry.certificateDigest(
          message.fingerprint,
          message.notBefore,
          message.notAfter,
          message.holder,
        );
        expect(certificateDigest(input, domain)).to.equal(onChain);
      });
    }

    it("equals the contract's digest for any binding (property)", async function () {
      const { registry, domain } = await loadFixture(registryFixture);
      const uint48 = fc.bigInt({ min: 0n, max: UINT48_MAX });
      await fc.assert(
        fc.asyncProperty(
          fc.uint8Array({ minLength: 32, maxLength: 32 }),
          uint48,
          uint48,
          fc.uint8Array({ minLength: 20, maxLength: 20 }),
          async (fingerprint, notBefore, notAfter, holder) => {
            const binding = {
              fingerprint: ethers.hexlify(fingerprint),
              notBefore,
              notAfter,
              holder: ethers.getAddress(ethers.hexlify(holder)),
            };
            const onChain = await registry.certificateDigest(binding.fingerprint, notBefore, notAfter, binding.holder);
            expect(certificateDigest(binding, domain)).to.equal(onChain);
          },
        ),
        { numRuns: 25 },
      );
    });

    it("changes with the chain id and the verifying contract", async function () {
      const { domain } = await loadFixture(registryFixture);
      const digest = certificateDigest(INPUTS[1], domain);
      expect(certificateDigest(INPUTS[1], { ...domain, chainId: 1n })).to.not.equal(digest);
      expect(certificateDigest(INPUTS[1], { ...domain, verifyingContract: INPUTS[1].holder })).to.not.equal(digest);
    });

    it("refuses values that do not fit the Solidity types", async function () {
      const { domain } = await loadFixture(registryFixture);
      const bad: CertificateBinding[] = [
        { ...INPUTS[1], notAfter: UINT48_MAX + 1n },
        { ...INPUTS[1], notBefore: -1 },
        { ...INPUTS[1], fingerprint: "abc" },
        { ...INPUTS[1], holder: "0x1234" },
      ];
      for (const input of bad) {
        expect(() => certificateDigest(input, domain))
          .to.throw()
          .that.satisfies(isStatetrailError);
      }
    });
  });

  describe("certificateStructHash", function () {
    it("uses the contract's CERTIFICATE_TYPEHASH", async function () {
      const { registry } = await loadFixture(registryFixture);
      expect(ethers.id(CERTIFICATE_TYPE_STRING)).to.equal(await registry.CERTIFICATE_TYPEHASH());
      const m = certificateTypedData(INPUTS[1], { chainId: 1, verifyingContract: INPUTS[1].holder }).message;
      const expected = ethers.keccak256(
        ethers.AbiCoder.defaultAbiCoder().encode(
          ["bytes32", "bytes32", "uint48", "uint48", "address"],
          [ethers.id(CERTIFICATE_TYPE_STRING), m.fingerprint, m.notBefore, m.notAfter, m.holder],
        ),
      );
      expect(certificateStructHash(INPUTS[1])).to.equal(expected);
    });
  });

  describe("certificateTypedData", function () {
    it("matches the contract's ERC-5267 eip712Domain", async function () {
      const { registry, domain } = await loadFixture(registryFixture);
      const onChain = await registry.eip712Domain();
      const typed = certificateTypedData(INPUTS[1], domain);
      expect(typed.domain.name).to.equal(onChain.name);
      expect(typed.domain.version).to.equal(onChain.version);
      expect(typed.domain.chainId).to.equal(onChain.chainId);
      expect(typed.domain.verifyingContract).to.equal(onChain.verifyingContract);
      expect(typed.primaryType).to.equal("Certificate");
    });

    it("produces a signature the contract accepts and that recovers to the holder", async function () {
      const { registry, domain, holder } = await loadFixture(registryFixture);
      const now = (await ethers.provider.getBlock("latest"))!.timestamp;
      const binding = { fingerprint: "b".repeat(64), notBefore: now, notAfter: now + 86_400, holder: holder.address };
      const signature = await signCertificateBinding(holder, binding, domain);
      expect(recoverCertificateSigner(binding, domain, signature)).to.equal(holder.address);
      const m = certificateTypedData(binding, domain).message;
      await expect(registry.registerCertificate(m.fingerprint, m.notBefore, m.notAfter, m.holder, signature)).to.emit(
        registry,
        "CertificateRegistered",
      );
    });
  });
});
