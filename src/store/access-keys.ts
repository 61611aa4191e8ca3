import fs from "node:fs";
import { z } from "zod";
import { type HexHash } from "../chain/hash";
import { StatetrailError } from "../errors";
import { lazy } from "../lazy";
import { parseStrictJson } from "../protocol/strict-json";
import { isLive, writePrivateFileAtomic, type AccessPolicy, type Grant } from "./access";
import { type Home } from "./home";

/**
 * The public keys of grantees, for encrypted mirror copies (docs/design/ACCESS.md, "Encrypted mirrors"):
 * `access-keys.json` in the home (written atomically, mode 0600), address → secp256k1 public key. A key is learnt
 * from `statetrail grant … --public-key` (checked against the grantee's address) or recovered by the issuer's server
 * from a grantee's successful sign-in (the EIP-191 signature of the sign-in message). Public keys are not secret; the
 * file is 0600 because it says who the issuer's auditors are.
 */

/* eslint-disable-next-line @typescript-eslint/no-require-imports */
const ethers = lazy(() => require("ethers") as typeof import("ethers"));

export type KeySource = "grant" | "sign-in";

const entrySchema = z
  .object({
    public_key: z.string().regex(/^0x04[0-9a-f]{128}$/, "expected 0x04 and 128 lowercase hex digits"),
    source: z.enum(["grant", "sign-in"]),
    first_seen: z.string(),
    last_seen: z.string(),
  })
  .strict();
const fileSchema = z
  .object({
    statetrail_access_keys: z.literal(1),
    keys: z.record(z.string().regex(/^0x[0-9a-fA-F]{40}$/, "expected an address"), entrySchema),
  })
  .strict();
export type AccessKeys = z.infer<typeof fileSchema>;
export type KnownKey = z.infer<typeof entrySchema>;

export function accessKeysFile(home: Home): string {
  return home.path("access-keys.json");
}

/** The known public keys (none when the file does not exist). Throws ACCESS_POLICY_INVALID for a bad file. */
export function readAccessKeys(home: Home): AccessKeys {
  const file = accessKeysFile(home);
  let text: string;
  try {
    text = fs.readFileSync(file, "utf8");
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return { statetrail_access_keys: 1, keys: {} };
    throw new StatetrailError("ACCESS_POLICY_INVALID", `${file} can't be read`, { cause: error });
  }
  let parsed: ReturnType<typeof fileSchema.safeParse>;
  try {
    parsed = fileSchema.safeParse(parseStrictJson(text, file));
  } catch (error) {
    throw new StatetrailError("ACCESS_POLICY_INVALID", `${file}: ${(error as Error).message}`, { cause: error });
  }
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new StatetrailError(
      "ACCESS_POLICY_INVALID",
      `${file} is not a statetrail key file: ${issue.path.join(".") || "(top)"}: ${issue.message}`,
      { hint: "set it aside: grantees' keys are learnt again at their next sign-in (or grant … --public-key)" },
    );
  }
  return parsed.data;
}

function writeAccessKeys(home: Home, keys: AccessKeys): void {
  writePrivateFileAtomic(home, accessKeysFile(home), JSON.stringify(keys, null, 2) + "\n");
}

/** The uncompressed `0x04…` form of a public key given as `0x04…` or compressed `0x02…`/`0x03…`; INVALID_ARGUMENT. */
export function normalizePublicKey(text: string): string {
  try {
    return ethers.SigningKey.computePublicKey(text.trim(), false);
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `"${text}" is not a secp256k1 public key`, {
      cause: error,
      hint: "give 0x04 and 128 hex digits (uncompressed) or 0x02/0x03 and 64 hex digits (compressed)",
    });
  }
}

/**
 * Records `publicKey` (any form) as the key of the address it belongs to; with `address`, refuses (INVALID_ARGUMENT)
 * a key that is not that address's. Returns the address. A key already known is kept, its `last_seen` updated.
 */
export function recordPublicKey(
  home: Home,
  publicKey: string,
  source: KeySource,
  options: { address?: string; now?: Date } = {},
): string {
  const key = normalizePublicKey(publicKey);
  const address = ethers.computeAddress(key);
  if (options.address !== undefined && address.toLowerCase() !== options.address.toLowerCase()) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `the public key ${key.slice(0, 12)}… is the key of ${address}, not of the grantee ${options.address}`,
      { hint: "give the grantee's own public key (or let the grantee sign in to your server once)" },
    );
  }
  const now = (options.now ?? new Date()).toISOString();
  const keys = readAccessKeys(home);
  const known = keys.keys[address];
  keys.keys[address] =
    known && known.public_key === key
      ? { ...known, last_seen: now }
      : { public_key: key, source, first_seen: now, last_seen: now };
  writeAccessKeys(home, keys);
  return address;
}

/** The public key (uncompressed hex) that signed an EIP-191 message (`personal_sign`, as sign-in does). */
export function recoverSignerKey(message: string, signature: string): string {
  return ethers.SigningKey.recoverPublicKey(ethers.hashMessage(message), signature);
}

/** Whether a grant discloses only some fields (a later layer adds `fields` to grants): it never gets a mirror key. */
function isPartial(grant: Grant): boolean {
  const fields = (grant as { fields?: unknown }).fields;
  return fields !== undefined && fields !== null;
}

function covers(grant: Grant, instance: HexHash, model: HexHash): boolean {
  return grant.scope === "all" || grant.scope === `instance:${instance}` || grant.scope === `model:${model}`;
}

/** How `publish` copies an instance, decided by the policy and the known keys. */
export type MirrorPlan =
  | { seal: false; reason: "open" | "public" }
  | {
      seal: true;
      /** Grantees whose live full grant covers the instance and whose public key is known. */
      recipients: { address: string; publicKey: string }[];
      /** Grantees covered but without a known public key. */
      withoutKey: string[];
      /** Grantees covered only by grants of some fields (partial disclosure): a mirror holds every field. */
      partial: string[];
    };

/** Which grantees a copy of `instance` (of `model`) is encrypted for, or why it is copied in clear. */
export function mirrorPlan(
  policy: AccessPolicy | null,
  keys: AccessKeys,
  instance: HexHash,
  model: HexHash,
  now: Date = new Date(),
): MirrorPlan {
  if (policy === null || policy.mode === "open") return { seal: false, reason: "open" };
  if (policy.public.includes(instance)) return { seal: false, reason: "public" };
  const known = new Map(Object.entries(keys.keys).map(([address, entry]) => [address.toLowerCase(), entry]));
  const full = new Map<string, string>();
  const partial = new Map<string, string>();
  for (const grant of policy.grants) {
    if (!isLive(grant, now) || !covers(grant, instance, model)) continue;
    const address = ethers.getAddress(grant.grantee.toLowerCase()); // a hand-edited checksum is not an error here
    (isPartial(grant) ? partial : full).set(address.toLowerCase(), address);
  }
  const recipients: { address: string; publicKey: string }[] = [];
  const withoutKey: string[] = [];
  for (const [lower, address] of full) {
    const entry = known.get(lower);
    if (entry) recipients.push({ address, publicKey: entry.public_key });
    else withoutKey.push(address);
  }
  return {
    seal: true,
    recipients,
    withoutKey,
    partial: [...partial].filter(([lower]) => !full.has(lower)).map(([, address]) => address),
  };
}
