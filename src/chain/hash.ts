import { createHash } from "node:crypto";
import { StatetrailError } from "../errors";

/** A SHA-256 digest as 64 lowercase hex characters, the wire form of every statetrail hash. */
export type HexHash = string;

const HEX_HASH = /^[0-9a-f]{64}$/;
const BYTES32 = /^0x[0-9a-fA-F]{64}$/;

export function sha256Hex(data: Uint8Array | string): HexHash {
  return createHash("sha256").update(data).digest("hex");
}

export function isHexHash(value: unknown): value is HexHash {
  return typeof value === "string" && HEX_HASH.test(value);
}

/** Accepts `abcd…` or `0xABCD…` and returns the canonical wire form, or throws INVALID_ARGUMENT. */
export function parseHexHash(value: string, what = "hash"): HexHash {
  const bare = value.startsWith("0x") || value.startsWith("0X") ? value.slice(2) : value;
  const lower = bare.toLowerCase();
  if (!HEX_HASH.test(lower)) {
    throw new StatetrailError("INVALID_ARGUMENT", `${what} must be 64 hex characters (SHA-256), got "${value}"`);
  }
  return lower;
}

/** Wire hash → on-chain `bytes32`. */
export function toBytes32(hash: HexHash): string {
  return "0x" + parseHexHash(hash);
}

/** On-chain `bytes32` → wire hash. */
export function fromBytes32(value: string): HexHash {
  if (!BYTES32.test(value)) throw new StatetrailError("INVALID_ARGUMENT", `not a bytes32 value: ${value}`);
  return value.slice(2).toLowerCase();
}
