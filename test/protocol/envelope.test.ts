import { expect } from "chai";
import { Wallet } from "ethers";
import { isStatetrailError } from "../../src/errors";
import {
  dataKeyFor,
  isSealed,
  mirrorKeysOf,
  newDataKey,
  openObject,
  parseMirrorKeys,
  SEALED_OVERHEAD,
  sealObject,
  uncompressedPublicKey,
  unwrapKey,
  wrapKey,
} from "../../src/protocol/envelope";

const H = "ab".repeat(32);
const H2 = "cd".repeat(32);

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (error) {
    return isStatetrailError(error) ? error.code : `not coded: ${String(error)}`;
  }
  return undefined;
}

describe("mirror envelope (AES-256-GCM objects, eciesjs-wrapped data keys)", function () {
  const auditor = Wallet.createRandom();
  const other = Wallet.createRandom();
  const publicKey = uncompressedPublicKey(auditor.signingKey.publicKey);

  it("seals an object so that only its key, instance and path open it", function () {
    const key = newDataKey();
    const plain = Buffer.from('{"secret":"MARKER-1234"}');
    const sealed = sealObject(key, H, `instances/${H}/input`, plain);
    expect(isSealed(sealed)).to.equal(true);
    expect(isSealed(plain)).to.equal(false);
    expect(sealed.length).to.equal(plain.length + SEALED_OVERHEAD);
    expect(sealed.includes(Buffer.from("MARKER"))).to.equal(false);
    expect(openObject(key, H, `instances/${H}/input`, sealed)).to.deep.equal(plain);
    // A fresh IV per object: the same bytes seal differently.
    expect(sealObject(key, H, `instances/${H}/input`, plain).equals(sealed)).to.equal(false);

    expect(codeOf(() => openObject(newDataKey(), H, `instances/${H}/input`, sealed))).to.equal("MIRROR_DECRYPT_FAILED");
    expect(
      codeOf(() => openObject(key, H, `instances/${H}/states/${H2}`, sealed)),
      "moved",
    ).to.equal("MIRROR_DECRYPT_FAILED");
    expect(
      codeOf(() => openObject(key, H2, `instances/${H}/input`, sealed)),
      "other instance",
    ).to.equal("MIRROR_DECRYPT_FAILED");
    for (const index of [0, 5, 20, sealed.length - 1]) {
      const flipped = Buffer.from(sealed);
      flipped[index] ^= 0x01;
      expect(
        codeOf(() => openObject(key, H, `instances/${H}/input`, flipped)),
        `byte ${index}`,
      ).to.equal("MIRROR_DECRYPT_FAILED");
    }
    expect(codeOf(() => openObject(key, H, `instances/${H}/input`, sealed.subarray(0, 20)))).to.equal(
      "MIRROR_DECRYPT_FAILED",
    );
    expect(codeOf(() => openObject(key, H, `instances/${H}/input`, plain))).to.equal("MIRROR_DECRYPT_FAILED");
  });

  it("wraps a data key for an Ethereum key pair, bound to its instance", function () {
    const key = newDataKey();
    const wrapped = wrapKey(publicKey, H, key);
    expect(unwrapKey(auditor.privateKey, H, wrapped)).to.deep.equal(key);
    expect(codeOf(() => unwrapKey(other.privateKey, H, wrapped))).to.equal("MIRROR_DECRYPT_FAILED");
    expect(codeOf(() => unwrapKey(auditor.privateKey, H2, wrapped))).to.equal("MIRROR_DECRYPT_FAILED");
    // Compressed and uncompressed forms of the same public key.
    const compressed = auditor.signingKey.compressedPublicKey;
    expect(uncompressedPublicKey(compressed)).to.deep.equal(publicKey);
    expect(codeOf(() => uncompressedPublicKey("0x04" + "00".repeat(64)))).to.equal("INVALID_ARGUMENT");
    expect(codeOf(() => uncompressedPublicKey("0x1234"))).to.equal("INVALID_ARGUMENT");
  });

  it("keys.json: a recipient finds its key; another address gets MIRROR_NOT_RECIPIENT naming the recipients", function () {
    const key = newDataKey();
    const keys = mirrorKeysOf(H, key, [{ address: auditor.address, publicKey }]);
    const bytes = Buffer.from(JSON.stringify(keys));
    const parsed = parseMirrorKeys(bytes, H, "keys.json");
    expect(dataKeyFor(parsed, auditor.address, auditor.privateKey)).to.deep.equal(key);
    try {
      dataKeyFor(parsed, other.address, other.privateKey);
      expect.fail("expected MIRROR_NOT_RECIPIENT");
    } catch (error) {
      expect(isStatetrailError(error, "MIRROR_NOT_RECIPIENT")).to.equal(true);
      expect((error as Error).message).to.include(auditor.address);
    }
    expect(
      codeOf(() => parseMirrorKeys(bytes, H2, "keys.json")),
      "another instance's",
    ).to.equal("MIRROR_DECRYPT_FAILED");
    expect(codeOf(() => parseMirrorKeys(Buffer.from("{}"), H, "keys.json"))).to.equal("MIRROR_DECRYPT_FAILED");
    // An entry naming the auditor whose wrapped key was made for someone else.
    const forged = mirrorKeysOf(H, key, [
      { address: auditor.address, publicKey: uncompressedPublicKey(other.signingKey.publicKey) },
    ]);
    expect(codeOf(() => dataKeyFor(forged, auditor.address, auditor.privateKey))).to.equal("MIRROR_DECRYPT_FAILED");
  });
});
