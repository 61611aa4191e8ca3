import canonicalizeImpl from "canonicalize";
import { StatetrailError } from "../errors";

/**
 * RFC 8785 (JSON Canonicalization Scheme) serialisation. The implementation recurses: a value nested some
 * thousands of levels deep (e.g. an execution input of 100,000 nested arrays, which JSON.parse accepts) overflows
 * the stack, and a value too large for one string can't be serialised either; both are INPUT_TOO_LARGE.
 */
export function canonicalize(value: unknown): string {
  let text: string | undefined;
  try {
    text = (canonicalizeImpl as (input: unknown) => string | undefined)(value);
  } catch (error) {
    if (error instanceof RangeError) {
      throw new StatetrailError("INPUT_TOO_LARGE", `value is nested too deeply or too large to canonicalize as JSON`, {
        cause: error,
        hint: "keep documents within 1000 levels of nesting and a few megabytes",
      });
    }
    throw error;
  }
  if (text === undefined) throw new StatetrailError("INVALID_JSON", "value cannot be canonicalized as JSON");
  return text;
}

export function canonicalBytes(value: unknown): Buffer {
  return Buffer.from(canonicalize(value), "utf8");
}
