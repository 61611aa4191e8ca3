import { sha256Hex, type HexHash } from "../chain/hash";
import { canonicalBytes } from "./canonical";
import { type InstanceRecord } from "./schema";

export function instanceRecordBytes(record: InstanceRecord): Buffer {
  return canonicalBytes(record);
}

/** instance_hash = SHA-256 of the canonical record of (model_hash, input bytes' hash, issuer, nonce). */
export function instanceHash(record: InstanceRecord): HexHash {
  return sha256Hex(instanceRecordBytes(record));
}
