import { sha256Hex, type HexHash } from "../chain/hash";
import { canonicalBytes } from "./canonical";
import { type InstanceRecord, type StateData } from "./schema";

/** The exact bytes published for a state: RFC 8785 canonical JSON. */
export function stateDataBytes(data: StateData): Buffer {
  return canonicalBytes(data);
}

export function stateHash(data: StateData): HexHash {
  return sha256Hex(stateDataBytes(data));
}

export function instanceRecordBytes(record: InstanceRecord): Buffer {
  return canonicalBytes(record);
}

/** instance_hash = SHA-256 of the canonical record of (model_hash, input bytes' hash, issuer, nonce). */
export function instanceHash(record: InstanceRecord): HexHash {
  return sha256Hex(instanceRecordBytes(record));
}
