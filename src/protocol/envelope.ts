import { createCipheriv, createDecipheriv, randomBytes } from "node:crypto";
import { z } from "zod";
import { type HexHash } from "../chain/hash";
import { StatetrailError } from "../errors";
import { lazy } from "../lazy";
import { parseStrictJson } from "./strict-json";

/*
 * Envelope encryption of mirror copies (docs/design/ACCESS.md, "Encrypted mirrors"). No cipher of our own:
 *
 * - Objects: AES-256-GCM (Node's crypto, OpenSSL) under the instance's random 32-byte data key, a fresh random
 *   12-byte IV per object, and additional authenticated data binding the object to its instance and to its path on
 *   the mirror (relative to the mirror's root, so a copy may move to another bucket or prefix):
 *
 *     AAD = "statetrail-mirror-object/1\n" + <instance hash> + "\n" + <relative path>
 *     sealed object = MAGIC (4 bytes "ST\xe5\x01") ‖ IV (12) ‖ ciphertext ‖ GCM tag (16)
 *
 * - Data keys: wrapped for each recipient (an Ethereum address's secp256k1 public key) with ECIES from eciesjs 0.5.0
 *   in its default format, fixed here rather than read from the library's global ECIES_CONFIG: an ephemeral
 *   secp256k1 key (uncompressed, 65 bytes), HKDF-SHA256 of (ephemeral public key ‖ shared point, both uncompressed),
 *   AES-256-GCM with a 16-byte nonce:  wrapped = ephemeral PK (65) ‖ nonce (16) ‖ tag (16) ‖ ciphertext.
 *   The wrapped plaintext is the instance hash (32 bytes) ‖ the data key (32 bytes): a wrapped key is bound to its
 *   instance, and unwrapping checks that.
 *
 * ECIES authenticates nobody: anyone can wrap a key for an auditor's public key. Encryption gives confidentiality
 * only; integrity and origin come, exactly as for a copy in clear, from the hashes, the chain and the issuer's
 * signature that the verifier checks after decrypting.
 */

/* eslint-disable-next-line @typescript-eslint/no-require-imports */
const ecies = lazy(() => require("eciesjs") as typeof import("eciesjs"));

/** The first bytes of every sealed object: "ST", 0xe5 (never the first byte of UTF-8 JSON), version 1. */
export const SEALED_MAGIC = Buffer.from([0x53, 0x54, 0xe5, 0x01]);
const IV_BYTES = 12;
const TAG_BYTES = 16;
const KEY_BYTES = 32;
/** What sealing adds to an object's size. */
export const SEALED_OVERHEAD = SEALED_MAGIC.length + IV_BYTES + TAG_BYTES;

export const OBJECT_CIPHER = "aes-256-gcm";
export const KEY_WRAP = "ecies-secp256k1-hkdf-sha256-aes-256-gcm";
/** The file of an instance's wrapped keys, relative to the mirror's root. */
export const keysPath = (instance: HexHash): string => `instances/${instance}/keys.json`;

/** eciesjs' default configuration, spelled out (the format must not follow a change of the library's global). */
const WRAP_CONFIG = {
  ellipticCurve: "secp256k1",
  isEphemeralKeyCompressed: false,
  isHkdfKeyCompressed: false,
  symmetricAlgorithm: "aes-256-gcm",
  symmetricNonceLength: 16,
  ephemeralKeySize: 65,
} as const;
type WrapConfig = Parameters<typeof import("eciesjs").encrypt>[2];

export function isSealed(bytes: Uint8Array): boolean {
  return (
    bytes.length >= SEALED_MAGIC.length && Buffer.from(bytes.subarray(0, SEALED_MAGIC.length)).equals(SEALED_MAGIC)
  );
}

/** A fresh random data key. */
export function newDataKey(): Buffer {
  return randomBytes(KEY_BYTES);
}

function aadOf(instance: HexHash, relative: string): Buffer {
  return Buffer.from(`statetrail-mirror-object/1\n${instance}\n${relative.replace(/^\/+/, "")}`, "utf8");
}

/** Seals one object of `instance` stored at `relative` (its path under the mirror's root). */
export function sealObject(key: Buffer, instance: HexHash, relative: string, plain: Buffer): Buffer {
  if (key.length !== KEY_BYTES) throw new StatetrailError("INTERNAL", "a data key is 32 bytes");
  const iv = randomBytes(IV_BYTES);
  const cipher = createCipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
  cipher.setAAD(aadOf(instance, relative));
  const body = Buffer.concat([cipher.update(plain), cipher.final()]);
  return Buffer.concat([SEALED_MAGIC, iv, body, cipher.getAuthTag()]);
}

/**
 * Opens what {@link sealObject} sealed, or MIRROR_DECRYPT_FAILED: not sealed, cut short, edited, sealed under another
 * key, or for another instance or path (an object moved on the mirror).
 */
export function openObject(
  key: Buffer,
  instance: HexHash,
  relative: string,
  sealed: Uint8Array,
  where = relative,
): Buffer {
  const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
  if (!isSealed(bytes) || bytes.length < SEALED_OVERHEAD) {
    throw new StatetrailError("MIRROR_DECRYPT_FAILED", `${where} on the mirror is not an encrypted object`, {
      hint: "the mirror's copy is incomplete or was replaced: publish it again, or verify against the issuer's server",
    });
  }
  const iv = bytes.subarray(SEALED_MAGIC.length, SEALED_MAGIC.length + IV_BYTES);
  const tag = bytes.subarray(bytes.length - TAG_BYTES);
  const body = bytes.subarray(SEALED_MAGIC.length + IV_BYTES, bytes.length - TAG_BYTES);
  try {
    const decipher = createDecipheriv("aes-256-gcm", key, iv, { authTagLength: TAG_BYTES });
    decipher.setAAD(aadOf(instance, relative));
    decipher.setAuthTag(tag);
    return Buffer.concat([decipher.update(body), decipher.final()]);
  } catch (error) {
    throw new StatetrailError(
      "MIRROR_DECRYPT_FAILED",
      `${where} on the mirror does not decrypt under instance ${instance}'s key at this path ` +
        `(edited, moved from another path, or sealed under another key)`,
      {
        cause: error,
        hint: "the mirror's copy is corrupt or was tampered with: nothing of it can be checked; publish it again",
      },
    );
  }
}

/** A public key as 65 uncompressed bytes (from `0x04…` or compressed `0x02…`/`0x03…` hex), or INVALID_ARGUMENT. */
export function uncompressedPublicKey(text: string): Buffer {
  const hex = text.trim().replace(/^0x/i, "");
  if (!/^(04[0-9a-fA-F]{128}|0[23][0-9a-fA-F]{64})$/.test(hex)) {
    throw new StatetrailError("INVALID_ARGUMENT", `"${text}" is not a secp256k1 public key`, {
      hint: "give 0x04 and 128 hex digits (uncompressed) or 0x02/0x03 and 64 hex digits (compressed)",
    });
  }
  try {
    return Buffer.from(ecies.PublicKey.fromHex(hex).toBytes(false));
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `"${text}" is not a point of secp256k1`, { cause: error });
  }
}

/** Wraps `instance`'s data key for one recipient's public key. */
export function wrapKey(publicKey: Uint8Array, instance: HexHash, dataKey: Buffer): Buffer {
  const plain = Buffer.concat([Buffer.from(instance, "hex"), dataKey]);
  return Buffer.from(ecies.encrypt(publicKey, plain, WRAP_CONFIG as unknown as WrapConfig));
}

/**
 * Unwraps a data key with the recipient's private key (hex), or MIRROR_DECRYPT_FAILED (not wrapped for this key, or
 * for another instance).
 */
export function unwrapKey(privateKey: string, instance: HexHash, wrapped: Uint8Array): Buffer {
  let plain: Buffer;
  try {
    plain = Buffer.from(ecies.decrypt(privateKey.replace(/^0x/i, ""), wrapped, WRAP_CONFIG as unknown as WrapConfig));
  } catch (error) {
    throw new StatetrailError(
      "MIRROR_DECRYPT_FAILED",
      `the data key of instance ${instance} does not unwrap with the auditor's key`,
      {
        cause: error,
        hint: "the mirror's keys.json is corrupt or was replaced: ask the issuer to publish the copy again",
      },
    );
  }
  if (plain.length !== 32 + KEY_BYTES || plain.subarray(0, 32).toString("hex") !== instance) {
    throw new StatetrailError("MIRROR_DECRYPT_FAILED", `the wrapped key is not instance ${instance}'s data key`, {
      hint: "the mirror's keys.json was taken from another instance: ask the issuer to publish the copy again",
    });
  }
  return plain.subarray(32);
}

const hexBytes = z.string().regex(/^0x([0-9a-f]{2})+$/, "expected 0x and lowercase hex bytes");

export const mirrorKeysSchema = z
  .object({
    statetrail_mirror_keys: z.literal(1),
    instance_hash: z.string().regex(/^[0-9a-f]{64}$/, "expected an instance hash"),
    cipher: z.literal(OBJECT_CIPHER),
    key_wrap: z.literal(KEY_WRAP),
    recipients: z
      .array(
        z
          .object({
            address: z.string().regex(/^0x[0-9a-fA-F]{40}$/, "expected an address"),
            wrapped_key: hexBytes,
          })
          .strict(),
      )
      .min(1)
      .max(10_000),
  })
  .strict();
export type MirrorKeys = z.infer<typeof mirrorKeysSchema>;

/** `keys.json` of an instance: its data key wrapped for each recipient (address and public key). */
export function mirrorKeysOf(
  instance: HexHash,
  dataKey: Buffer,
  recipients: readonly { address: string; publicKey: Uint8Array }[],
): MirrorKeys {
  return {
    statetrail_mirror_keys: 1,
    instance_hash: instance,
    cipher: OBJECT_CIPHER,
    key_wrap: KEY_WRAP,
    recipients: recipients.map((recipient) => ({
      address: recipient.address,
      wrapped_key: `0x${wrapKey(recipient.publicKey, instance, dataKey).toString("hex")}`,
    })),
  };
}

/** Parses a mirror's `keys.json` strictly (MIRROR_DECRYPT_FAILED if it is not one, or is another instance's). */
export function parseMirrorKeys(bytes: Uint8Array, instance: HexHash, where: string): MirrorKeys {
  let value: unknown;
  try {
    value = parseStrictJson(Buffer.from(bytes).toString("utf8"), where);
  } catch (error) {
    throw new StatetrailError("MIRROR_DECRYPT_FAILED", `${where} is not JSON: ${(error as Error).message}`, {
      cause: error,
    });
  }
  const parsed = mirrorKeysSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new StatetrailError(
      "MIRROR_DECRYPT_FAILED",
      `${where} is not a statetrail mirror key file: ${issue.path.join(".") || "(top)"}: ${issue.message}`,
    );
  }
  if (parsed.data.instance_hash !== instance) {
    throw new StatetrailError(
      "MIRROR_DECRYPT_FAILED",
      `${where} holds the keys of instance ${parsed.data.instance_hash}, not ${instance}`,
    );
  }
  return parsed.data;
}

/**
 * The data key of an instance from its `keys.json`, for the holder of `privateKey` (whose address is `address`):
 * MIRROR_NOT_RECIPIENT (naming the recipients) when the address is not one, MIRROR_DECRYPT_FAILED when its entry
 * does not unwrap.
 */
export function dataKeyFor(keys: MirrorKeys, address: string, privateKey: string): Buffer {
  const mine = keys.recipients.find((recipient) => recipient.address.toLowerCase() === address.toLowerCase());
  if (!mine) {
    const names = keys.recipients.map((recipient) => recipient.address);
    const shown = names.slice(0, 10).join(", ") + (names.length > 10 ? ` and ${names.length - 10} more` : "");
    throw new StatetrailError(
      "MIRROR_NOT_RECIPIENT",
      `this copy of instance ${keys.instance_hash} is encrypted for ${shown}, not for the auditor's key ${address}`,
      {
        hint:
          "verify with the key of one of those addresses, or ask the issuer to grant your address and publish again " +
          "(statetrail grant … --public-key, or sign in to the issuer's server once)",
      },
    );
  }
  return unwrapKey(privateKey, keys.instance_hash, Buffer.from(mine.wrapped_key.slice(2), "hex"));
}
