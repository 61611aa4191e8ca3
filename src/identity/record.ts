import fs from "node:fs";
import { z } from "zod";
import { StatetrailError } from "../errors";
import { addressSchema, hexHashSchema, txHashSchema } from "../protocol/schema";
import { Home, writeAtomic } from "../store/home";

/** A certificate the identity used before. It stays registered on-chain until it is revoked. */
export const previousCertificateSchema = z.object({
  fingerprint: hexHashSchema,
  revoked: z.boolean(),
  revoked_at: z.number().int().optional(),
  not_before: z.number().int().optional(),
  not_after: z.number().int().optional(),
  /** Its PEM, relative to the data directory (tls/previous/<fingerprint>.pem). */
  certificate: z.string().optional(),
  /** Unix seconds when it was replaced. */
  replaced_at: z.number().int().optional(),
});
export type PreviousCertificate = z.infer<typeof previousCertificateSchema>;

/** The on-chain registration of a certificate. */
export const registrationSchema = z.object({
  transaction_hash: txHashSchema,
  block_number: z.number().int().nonnegative(),
  /** Who sent the transaction (the holder or a relayer). */
  relayer: addressSchema,
  /** The holder's EIP-712 signature. */
  signature: z.string().regex(/^0x[0-9a-fA-F]*$/),
});

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
  previous_certificates: z.array(previousCertificateSchema).default([]),

  // Added after version 1's first form; all optional, so older files still read.
  /** How the current certificate was registered. */
  certificate_registration: registrationSchema.optional(),
  /** Unix seconds when the current certificate was revoked (it should then be rotated). */
  certificate_revoked_at: z.number().int().optional(),
  /** The registries the identity was registered with. */
  registries: z
    .object({ certificate: addressSchema, model: addressSchema.optional(), instance: addressSchema.optional() })
    .optional(),
  /** The ENS registry the name lives in (null: no ENS on this network). */
  ens_registry: addressSchema.nullable().optional(),
  created_at: z.string().optional(),
  updated_at: z.string().optional(),
});
export type IdentityRecord = z.infer<typeof identityRecordSchema>;

/** A data directory given as a Home or a path. */
export function toHome(home: Home | string): Home {
  return typeof home === "string" ? new Home(home) : home;
}

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
  let json: unknown;
  try {
    json = JSON.parse(fs.readFileSync(file, "utf8"));
  } catch (error) {
    throw new StatetrailError("IDENTITY_MISSING", `${file} is not valid JSON`, { cause: error });
  }
  const parsed = identityRecordSchema.safeParse(json);
  if (!parsed.success) throw new StatetrailError("IDENTITY_MISSING", `${file} is not valid: ${parsed.error.message}`);
  return parsed.data;
}

export function writeIdentity(home: Home, record: IdentityRecord): void {
  writeAtomic(identityFile(home), Buffer.from(JSON.stringify(identityRecordSchema.parse(record), null, 2) + "\n"));
}
