import fs from "node:fs";
import { z } from "zod";
import { StatetrailError } from "../errors";
import { addressSchema, hexHashSchema } from "../protocol/schema";
import { type Home } from "../store/home";
import { writeAtomic } from "../store/home";

/** `identity.json` in the data directory: the issuer's public identity. Secrets live beside it, encrypted. */
export const identityRecordSchema = z.object({
  statetrail_identity: z.literal(1),
  network: z.string(),
  chain_id: z.number().int().positive(),
  address: addressSchema,
  /** ENS name (null if none could be set on this network). */
  ens_name: z.string().nullable(),
  /** Base URL of the issuer's HTTPS server, e.g. https://localhost:8443 */
  url: z.string().url(),
  host: z.string(),
  port: z.number().int().positive(),
  certificate_fingerprint: hexHashSchema,
  certificate_not_before: z.number().int(),
  certificate_not_after: z.number().int(),
  /** Paths relative to the data directory. */
  keystore: z.string(),
  certificate: z.string(),
  certificate_key: z.string(),
  /** Earlier certificates (rotated or revoked), newest last. */
  previous_certificates: z.array(z.object({ fingerprint: hexHashSchema, revoked: z.boolean() })).default([]),
});
export type IdentityRecord = z.infer<typeof identityRecordSchema>;

export function identityFile(home: Home): string {
  return home.path("identity.json");
}

export function readIdentity(home: Home): IdentityRecord {
  const file = identityFile(home);
  if (!fs.existsSync(file)) {
    throw new StatetrailError("IDENTITY_MISSING", `no identity in ${home.root}`, {
      hint: "create one with: statetrail identity init",
    });
  }
  const parsed = identityRecordSchema.safeParse(JSON.parse(fs.readFileSync(file, "utf8")));
  if (!parsed.success) throw new StatetrailError("IDENTITY_MISSING", `${file} is not valid: ${parsed.error.message}`);
  return parsed.data;
}

export function writeIdentity(home: Home, record: IdentityRecord): void {
  writeAtomic(identityFile(home), Buffer.from(JSON.stringify(identityRecordSchema.parse(record), null, 2) + "\n"));
}
