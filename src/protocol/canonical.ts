import canonicalizeImpl from "canonicalize";
import { StatetrailError } from "../errors";

/** RFC 8785 (JSON Canonicalization Scheme) serialisation. */
export function canonicalize(value: unknown): string {
  const text = (canonicalizeImpl as (input: unknown) => string | undefined)(value);
  if (text === undefined) throw new StatetrailError("INVALID_JSON", "value cannot be canonicalized as JSON");
  return text;
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), "utf8");
}
