import { z } from "zod";
import { StatetrailError } from "../errors";
import { sha256Hex } from "../chain/hash";
import { decodeUtf8 } from "../protocol/limits";
import { type ChainView } from "./chain";
import { iso, sameAddress } from "./findings";
import { mirrorLocation } from "./mirror";
import { type Fetcher, type StepResult, type VerificationReport } from "./types";
import { exitCodeOf, verdictOf } from "./verdict";

/**
 * An offline verification bundle (`statetrail verify <url|name> --save-bundle <file>`): one JSON file holding
 * every byte a verification fetched from the issuer's server (the protocol's head and every page, model, input, state
 * data) under the server's content paths, and the certificate the server presented. `statetrail verify <file>` then
 * verifies it with no server: only the RPC.
 *
 * The bundle is untrusted input, exactly as a mirror is (mirror.ts): it is verified through the mirror path of
 * the pipeline, so every byte is checked against its hash and the chain as a fetched one would be (V0, V2, V4–V9
 * unchanged), and a missing byte is "could not verify": a state body or a page of the protocol left out of the
 * bundle is reported by the step that needed it (NOT_FOUND, "… is not in the bundle"), as a mirror withholding it
 * would be. Absence contradicts nothing the issuer signed (the bundle may have been cut short by whoever made or
 * passed it on), so it is not "invalid"; it proves nothing either, so it is never "valid". What a file can't give is the live TLS observation: V1
 * is a `skip` that says the protocol was read from the bundle, and V3 is taken from the bundle: the certificate
 * it records is checked against the CertificateRegistry, never reported as seen on a connection. A recorded
 * certificate registered for the issuer is not evidence (anyone can copy a registered fingerprint), so V3 stays
 * `skip` (optional); one that is not registered for the issuer fails V3 (the bundle claims a server that is not
 * the issuer's), and the verdict is invalid. So a bundle's verdict "valid" means: V0, V2, V4–V9 passed, i.e.
 * the content is proven by hashes, signature and chain; nothing about the issuer's server.
 */
export const BUNDLE_VERSION = 1;

/** Largest bundle file read (the FetchRecorder keeps at most this much). */
export const BUNDLE_MAX_BYTES = 256 * 1024 * 1024;

/**
 * The issuer's content paths, the only ones a bundle holds (the mirror layout): model, state data, input, the
 * protocol's head and its pages (`instances/<h>/protocol/pages/<k>`, protocol version 3).
 */
const CONTENT_PATH =
  /(?:^|\/)(models\/[0-9a-f]{64}|states\/[0-9a-f]{64}|instances\/[0-9a-f]{64}\/(?:input|protocol|protocol\/pages\/(?:0|[1-9][0-9]{0,8})))$/;

/** The content path a URL ends in (`states/<h>`, …), or null. */
export function contentPathOf(url: string): string | null {
  const match = CONTENT_PATH.exec(url.split(/[?#]/)[0]);
  return match ? match[1] : null;
}

const hex64 = z.string().regex(/^[0-9a-f]{64}$/);
const certificateSchema = z
  .object({
    fingerprint: hex64,
    not_before: z.number().int(),
    not_after: z.number().int(),
    subject: z.string().max(4096).optional(),
  })
  .strict();

const bundleSchema = z
  .object({
    statetrail_bundle: z.literal(BUNDLE_VERSION),
    created_at: z.string().max(64),
    made_by: z.string().max(4096).optional(),
    instances: z
      .array(
        z
          .object({
            instance_hash: hex64,
            protocol_url: z.string().max(4096),
            /** The certificate the issuer's server presented when the bundle was made; null: none (a mirror, a file). */
            certificate: certificateSchema.nullable(),
          })
          .strict(),
      )
      .max(100_000),
    files: z.record(z.string().regex(CONTENT_PATH), z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/)),
  })
  .strict();

export type Bundle = z.infer<typeof bundleSchema>;
export type BundleInstance = Bundle["instances"][number];
export type BundleCertificate = z.infer<typeof certificateSchema>;

/** Whether a parsed JSON document says it is a bundle (then it must be a valid one). */
export function isBundleDocument(value: unknown): boolean {
  return typeof value === "object" && value !== null && "statetrail_bundle" in value;
}

/** A bundle from its parsed JSON; BUNDLE_INVALID when it is not one this verifier reads. */
export function parseBundle(value: unknown, name: string): Bundle {
  const result = bundleSchema.safeParse(value);
  if (!result.success) {
    const problems = result.error.issues
      .slice(0, 5)
      .map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
    throw new StatetrailError("BUNDLE_INVALID", `${name} is not a statetrail bundle: ${problems.join("; ")}`, {
      hint: "make one with statetrail verify <url|ens-name> --save-bundle <file>",
    });
  }
  const listed = new Set<string>();
  for (const instance of result.data.instances) {
    // One entry per instance: a second would be verified and counted again (and could carry another certificate).
    if (listed.has(instance.instance_hash)) {
      throw new StatetrailError("BUNDLE_INVALID", `${name}: instance ${instance.instance_hash} is listed twice`);
    }
    listed.add(instance.instance_hash);
    let location: { instanceHash: string };
    try {
      location = mirrorLocation(instance.protocol_url);
    } catch {
      throw new StatetrailError("BUNDLE_INVALID", `${name}: protocol_url ${instance.protocol_url} names no instance`);
    }
    if (location.instanceHash !== instance.instance_hash) {
      throw new StatetrailError(
        "BUNDLE_INVALID",
        `${name}: protocol_url ${instance.protocol_url} is not instance ${instance.instance_hash}`,
      );
    }
  }
  return result.data;
}

/** Reads a bundle's text (already size-limited by the caller). */
export function readBundle(bytes: Uint8Array, name: string): Bundle {
  let value: unknown;
  try {
    value = JSON.parse(decodeUtf8(bytes, name));
  } catch (error) {
    throw new StatetrailError("BUNDLE_INVALID", `${name} is not JSON`, { cause: error });
  }
  return parseBundle(value, name);
}

/**
 * Serves a bundle's files by their content path, whatever origin the URL names; anything else is NOT_FOUND. It
 * never touches the network, and it returns no certificate: nothing in a file was seen on a TLS connection.
 */
export function bundleFetcher(bundle: Bundle, name: string): Fetcher {
  const files = new Map(Object.entries(bundle.files));
  return async (url) => {
    const path = contentPathOf(url);
    const body = path === null ? undefined : files.get(path);
    if (body === undefined) {
      throw new StatetrailError("NOT_FOUND", `${path ?? url} is not in the bundle ${name}`, {
        hint: "the bundle is incomplete: make it again from the issuer's server (verify --save-bundle)",
      });
    }
    return { bytes: Buffer.from(body, "base64"), certificate: null };
  };
}

/** The bundle's file for a content path, to build one (FetchRecorder.toBundle). */
export function bundleFiles(bodies: Iterable<[string, Buffer]>): Record<string, string> {
  const files: Record<string, string> = {};
  for (const [url, bytes] of bodies) {
    const path = contentPathOf(url);
    if (path !== null) files[path] = bytes.toString("base64");
  }
  return files;
}

/**
 * Turns the mirror report of a bundle entry into the bundle's: V1 says the protocol was read from the bundle and
 * that no TLS connection was observed; V3 is the check of the certificate the bundle records (see the module
 * comment); the verdict follows from the steps again.
 */
export async function bundleReport(
  report: VerificationReport,
  entry: BundleInstance,
  bundle: Bundle,
  name: string,
  chain: ChainView,
): Promise<VerificationReport> {
  const steps = report.steps.map((step) => ({ ...step, problems: [...step.problems] }));
  const v1 = steps.find((step) => step.id === "V1")!;
  const fromBundle = (text: string) => text.replace(/\bthe mirror\b/g, `the bundle ${name}`);
  v1.problems = v1.problems.map(fromBundle);
  if (v1.status === "skip") {
    v1.detail =
      `bundle: protocol read from ${name} (recorded from ${entry.protocol_url}, ${bundle.created_at}); ` +
      `no TLS connection to the issuer's server was observed: content proven by hashes, signature and the chain`;
  } else {
    v1.detail = fromBundle(v1.detail);
  }
  const v3 = steps.findIndex((step) => step.id === "V3");
  if (report.subject && v1.status !== "fail") {
    steps[v3] = { ...steps[v3], ...(await recordedCertificate(entry.certificate, report.subject.issuer, chain)) };
  }
  const verdict = verdictOf(steps, report.disclosure ?? null);
  return { ...report, bundle: name, verdict, exit_code: exitCodeOf(verdict), steps };
}

async function recordedCertificate(
  certificate: BundleCertificate | null,
  issuer: string,
  chain: ChainView,
): Promise<Pick<StepResult, "status" | "detail" | "problems" | "code">> {
  const taken = "from the bundle, not observed on a TLS connection";
  if (!certificate) {
    return {
      status: "skip",
      detail: `${taken}: the bundle records no server certificate (made from a mirror or a file)`,
      problems: [],
    };
  }
  const { fingerprint } = certificate;
  let record: Awaited<ReturnType<ChainView["certificateOf"]>>;
  try {
    record = await chain.certificateOf(fingerprint, issuer);
  } catch (error) {
    const message = `the certificate the bundle records could not be looked up: ${(error as Error).message}`;
    return { status: "skip", detail: `${taken}: ${message}`, problems: [] };
  }
  if (!record.holder || !sameAddress(record.holder, issuer)) {
    const detail =
      `${taken}: the bundle says the issuer's server presented certificate ${fingerprint}, which is ` +
      `${record.holder ? `registered to ${record.holder}` : "not registered"}, not for the issuer ${issuer}: ` +
      `the bundle was not recorded from the issuer's server`;
    return { status: "fail", detail, problems: [detail], code: "CERT_NOT_REGISTERED" };
  }
  const revoked = record.revokedAt !== 0 ? `, revoked at ${iso(record.revokedAt)}` : "";
  return {
    status: "skip",
    detail:
      `${taken}: certificate ${fingerprint} recorded when the bundle was made is registered for the issuer ` +
      `(window ${iso(record.notBefore)} to ${iso(record.notAfter)}${revoked}); a file can copy any registered ` +
      `fingerprint, so this is not evidence`,
    problems: [],
  };
}

/** SHA-256 of a bundle file's bytes, for the log line that names what was written. */
export function bundleDigest(bytes: Uint8Array): string {
  return sha256Hex(bytes);
}
