import { type S3Client } from "@aws-sdk/client-s3";
import { isStatetrailError, StatetrailError } from "../errors";
import { type S3Settings } from "../net/s3";
import { lazy } from "../lazy";
import { dataKeyFor, isSealed, keysPath, openObject, parseMirrorKeys, SEALED_OVERHEAD } from "../protocol/envelope";
import { parseHead, type ProtocolHead } from "../protocol/schema";
import { contentUrls } from "../protocol/urls";
import { type PageSource, type VerifyContext } from "./context";
import { originOf } from "./fetcher";
import { Findings, type StepOutcome } from "./findings";
import { checkContentUrls, checkSubject } from "./steps/v1-transport";
import { type ExpectedSubject, type Fetched, type Fetcher, type StepId } from "./types";

// The S3 client is loaded for s3:// mirrors only, not by every verification.
/* eslint-disable-next-line @typescript-eslint/no-require-imports */
const s3Api = lazy(() => require("../net/s3") as typeof import("../net/s3"));
/* eslint-disable-next-line @typescript-eslint/no-require-imports */
const ethers = lazy(() => require("ethers") as typeof import("ethers"));

/** Largest `keys.json` read (10,000 recipients at about 300 bytes each). */
const MAX_KEYS_BYTES = 4 * 1024 * 1024;

/** Where to give the auditor's key, for the messages of encrypted copies. */
export const MIRROR_KEY_OPTIONS =
  "pass the auditor's key: --auditor-key-env <NAME>, --auditor-keystore <file> or $STATETRAIL_AUDITOR_KEY " +
  "(library: the `auditor` option, a Wallet)";

/**
 * Verifying a copy of an instance on a mirror: untrusted storage (S3 or any HTTP server) that holds the
 * issuer's files under the same relative paths as the issuer's server:
 *
 *   <base>/models/<model_hash>   <base>/states/<state_hash>   <base>/instances/<h>/input
 *   <base>/instances/<h>/protocol (the signed head)   <base>/instances/<h>/protocol/pages/<k> (its pages)
 *
 * The protocol's head is read from the mirror URL; every URL of the issuer's server (`issuer.url` + a content
 * path: model, input, states, and the protocol's pages) is read from `<base>` + the same path instead. The pages
 * go through the same PageSource contract and the same decoder (pages.ts, in the steps) as pages fetched from the
 * issuer: a page swapped, dropped, truncated or edited on the mirror breaks the accumulator the signed head commits
 * to, exactly as on the issuer's server. The issuer's server is not
 * contacted, so its TLS certificate is not seen: V1 reports `skip` with the mirror note and V3 is skipped
 * (both are then optional). Every other check runs unchanged: the bytes hash to the hashes in the
 * protocol (V4, V6), the chain holds the model, the instance and every state in order (V0, V4–V7), ENS links
 * the issuer (V2, against the issuer's origin named in the protocol), and the issuer signed the protocol
 * (V8). So a mirror can withhold data (could not verify) but can't change anything without a failed check.
 *
 * Verdict rule for mirrors: the usual rule (verdict.ts) with V1 and V3 optional: valid iff V0, V2 (unless
 * ENS is off) and V4–V8 pass; any fail is invalid; otherwise could not verify.
 *
 * Encrypted copies (publish/mirror.ts, protocol/envelope.ts): a head that is a sealed object makes the copy a sealed
 * one. V1 then reads `<base>/instances/<h>/keys.json`, unwraps the instance's data key with the auditor's private key
 * (MIRROR_KEY_REQUIRED without one, MIRROR_NOT_RECIPIENT when its address is not a recipient) and opens the head;
 * every later read of the issuer's content paths is read from the instance's sealed layout (models and states under
 * `<base>/instances/<h>/`) and opened under the data key with that path as additional data (an edited or moved object
 * is MIRROR_DECRYPT_FAILED: could not verify). The plaintext then goes through exactly the checks of a clear copy.
 */
export const MIRROR_OPTIONAL_STEPS: readonly StepId[] = ["V1", "V3"];

export const MIRROR_NOTE = "mirror: TLS of the issuer not checked, content proven by hashes + signature";

export interface MirrorOptions {
  /** Reads URLs on the mirror (s3://, http://, https://); default {@link storageFetcher} with `s3`. */
  fetcher?: Fetcher;
  /** Endpoint, region and credentials for s3:// mirrors (default: the environment). */
  s3?: S3Settings;
  /**
   * The auditor's private key (hex) for an encrypted copy, asked for only when the copy is one; null: none given
   * (MIRROR_KEY_REQUIRED). Default: none.
   */
  decryptionKey?: () => Promise<string | null>;
}

/** The content paths of the issuer's server a mirror holds (relative to its root, with the leading slash). */
const MIRRORED_PATH =
  /^\/(models\/[0-9a-f]{64}|states\/[0-9a-f]{64}|instances\/[0-9a-f]{64}\/(input|protocol|protocol\/pages\/(0|[1-9][0-9]{0,8})))$/;

/** Where a protocol URL of a mirror says the mirror's root is, and which instance it names. */
export function mirrorLocation(url: string): { base: string; instanceHash: string } {
  const match = /^(.*?)\/instances\/([0-9a-f]{64})\/protocol\/?$/.exec(url.trim());
  // No query or fragment: the instance found here must be the one the URL's path names, which is the path the mirror
  // is asked for and the instance the report says was asked about. "…/instances/<A>/protocol?/instances/<B>/protocol"
  // was read as B's while the mirror was asked for A's path.
  if (!match || /[?#]/.test(url) || !/^(s3|https?):\/\/[^/]/i.test(match[1] + "/")) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `a mirror URL must end in /instances/<instance_hash>/protocol (no query or fragment) and start with s3://, ` +
        `http:// or https://: "${url}"`,
    );
  }
  return { base: match[1], instanceHash: match[2] };
}

function sameOrigin(a: string, b: string): boolean {
  try {
    return new URL(a).origin === new URL(b).origin;
  } catch {
    return false;
  }
}

/** Whether a URL can only be a mirror (s3:// and plain http:// never serve the issuer's protocol). */
export function isMirrorUrl(url: string): boolean {
  return /^(s3|http):\/\//i.test(url.trim());
}

/**
 * Reads s3:// URLs with the S3 API and http(s):// URLs with a plain GET (certificates of mirrors are not
 * evidence of anything). Redirects are refused: a hostile mirror could point the auditor's machine at any
 * URL, internal services included (SSRF). Never returns a certificate.
 */
export function storageFetcher(s3: S3Settings = {}): Fetcher {
  let client: S3Client | undefined;
  return async (url, request): Promise<Fetched> => {
    if (/^s3:\/\//i.test(url)) {
      client ??= s3Api.createS3Client(s3);
      const bytes = await s3Api.getObjectBytes(client, s3Api.parseS3Url(url), request);
      return { bytes, certificate: null };
    }
    if (!/^https?:\/\//i.test(url)) {
      throw new StatetrailError("INVALID_ARGUMENT", `a mirror is read over s3://, http:// or https://, not "${url}"`);
    }
    return { bytes: await httpGet(url, request.maxBytes, request.timeoutMs), certificate: null };
  };
}

async function httpGet(url: string, maxBytes: number, timeoutMs: number): Promise<Buffer> {
  let response: Response;
  try {
    response = await fetch(url, { redirect: "manual", signal: AbortSignal.timeout(timeoutMs) });
  } catch (error) {
    const cause = (error as { cause?: { code?: string } }).cause;
    throw new StatetrailError("FETCH_FAILED", `GET ${url}: ${cause?.code ?? (error as Error).message}`, {
      cause: error,
    });
  }
  if (response.status >= 300 && response.status < 400) {
    await response.body?.cancel().catch(() => undefined);
    throw new StatetrailError("FETCH_FAILED", `GET ${url}: HTTP ${response.status}, a redirect (not followed)`, {
      hint: "a mirror must serve its copies at the URLs it is given; use the final URL of the copy",
    });
  }
  if (!response.ok) {
    await response.body?.cancel().catch(() => undefined);
    throw new StatetrailError("FETCH_FAILED", `GET ${url}: HTTP ${response.status}`);
  }
  const declared = Number(response.headers.get("content-length"));
  if (Number.isFinite(declared) && declared > maxBytes) {
    await response.body?.cancel().catch(() => undefined);
    throw new StatetrailError("FETCH_FAILED", `${url} is larger than ${maxBytes} bytes`);
  }
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of response.body ?? []) {
      size += chunk.length;
      if (size > maxBytes) throw new StatetrailError("FETCH_FAILED", `${url} is larger than ${maxBytes} bytes`);
      chunks.push(Buffer.from(chunk));
    }
  } catch (error) {
    if (isStatetrailError(error)) throw error;
    throw new StatetrailError("FETCH_FAILED", `reading ${url}: ${(error as Error).message}`, { cause: error });
  }
  return Buffer.concat(chunks);
}

/**
 * One mirror verification: the fetcher for the pipeline's FetchSession (issuer URLs rewritten to the mirror,
 * mirror URLs read from storage, anything else through `fallback`) and V1 for mirrors ({@link read}).
 */
export class MirrorReader {
  /** The issuer's url from the protocol, without trailing slashes; set by {@link read}. */
  private issuerUrl: string | null = null;
  private base: string | null = null;
  private readonly storage: Fetcher;
  /** An encrypted copy: its instance and data key (set by {@link read}). */
  private sealed: { instance: string; key: Buffer } | null = null;

  constructor(
    private readonly options: MirrorOptions,
    private readonly fallback: Fetcher,
  ) {
    this.storage = options.fetcher ?? storageFetcher(options.s3);
  }

  /** The mirror URL an issuer URL is read from, or null for URLs outside the issuer's server. */
  rewrite(url: string): string | null {
    if (!this.issuerUrl || !this.base) return null;
    if (!url.startsWith(`${this.issuerUrl}/`)) return null;
    const relative = url.slice(this.issuerUrl.length);
    // Only the published, content-addressed paths; anything else is not on a mirror.
    if (!MIRRORED_PATH.test(relative)) return null;
    if (this.sealed) {
      // A sealed copy holds its instance's files only, models and states under the instance's prefix.
      const instance = this.sealed.instance;
      if (/^\/(models|states)\//.test(relative)) return `${this.base}/instances/${instance}${relative}`;
      if (!relative.startsWith(`/instances/${instance}/`)) return null;
    }
    return `${this.base}${relative}`;
  }

  /** Reads an object of a sealed copy and opens it (its path under the mirror's root is its additional data). */
  private async readSealed(url: string, request: Parameters<Fetcher>[1]): Promise<Fetched> {
    const { instance, key } = this.sealed!;
    const fetched = await this.storage(url, { ...request, maxBytes: request.maxBytes + SEALED_OVERHEAD });
    const relative = url.slice(this.base!.length + 1);
    return { bytes: openObject(key, instance, relative, fetched.bytes, url), certificate: null };
  }

  readonly fetcher: Fetcher = async (url, request) => {
    const mirrored = this.rewrite(url);
    if (mirrored) return this.sealed ? this.readSealed(mirrored, request) : this.storage(mirrored, request);
    if (this.base && url.startsWith(`${this.base}/`)) return this.storage(url, request);
    if (this.issuerUrl && sameOrigin(url, this.issuerUrl)) {
      // The issuer's server is never contacted in mirror mode: what is not a content path is not on a mirror.
      throw new StatetrailError("NOT_FOUND", `${url} is not one of the issuer's content paths a mirror holds`, {
        hint: "a protocol's data URLs must be the issuer's content-addressed URLs (see V1)",
      });
    }
    return this.fallback(url, request);
  };

  /**
   * V1 for a mirror: read and parse the protocol's head, check it is the instance the URL names, set the origin and
   * the pages (read from the mirror, see {@link mirroredPages}).
   */
  async read(context: VerifyContext, expected: ExpectedSubject = {}): Promise<StepOutcome> {
    const findings = new Findings();
    if (!("url" in context.input)) {
      findings.fail("a mirror is verified from its URL (…/instances/<instance_hash>/protocol)");
      return findings.outcome("");
    }
    const url = context.input.url.trim();
    let location: { base: string; instanceHash: string };
    try {
      location = mirrorLocation(url);
    } catch (error) {
      findings.fail((error as Error).message);
      return findings.outcome("");
    }
    this.base = location.base;
    let bytes: Buffer;
    try {
      ({ bytes } = await context.web.get(url, context.settings.maxBytes.protocol));
    } catch (error) {
      findings.error(error, `reading ${url} from the mirror`);
      return findings.outcome("");
    }
    if (isSealed(bytes)) {
      try {
        bytes = await this.unseal(context, location, url, bytes);
      } catch (error) {
        findings.error(error, `the encrypted copy at ${url}`);
        return findings.outcome("");
      }
    }
    let protocol: ProtocolHead;
    try {
      protocol = parseHead(bytes);
    } catch (error) {
      if (isStatetrailError(error)) findings.fail(`${url}: ${error.message.replace(/\n\s*/g, "; ")}`, error.code);
      else findings.error(error, url);
      return findings.outcome("");
    }
    if (protocol.instance_hash !== location.instanceHash) {
      findings.fail(`${url} holds the protocol of instance ${protocol.instance_hash}`, "PROTOCOL_INVALID");
      return findings.outcome("");
    }
    checkSubject(protocol, expected, findings);
    if (findings.failed) return findings.outcome("");
    let origin: string;
    try {
      origin = originOf(protocol.issuer.url);
    } catch {
      findings.fail(`issuer url is not a URL: "${protocol.issuer.url}"`);
      return findings.outcome("");
    }
    if (!origin.startsWith("https://")) {
      findings.fail(`issuer url ${protocol.issuer.url} is not https`, "TLS_FAILED");
      return findings.outcome("");
    }
    context.protocol = protocol;
    context.origin = origin;
    context.certificate = null;
    context.web.restrictTo(origin);
    this.issuerUrl = protocol.issuer.url.replace(/\/+$/, "");
    context.pages = this.mirroredPages(context, protocol);
    // As for the issuer's server: the head's data URLs must be the issuer's content URLs (each entry's state_data is
    // checked as its page is read, V6). One that is not fails V1; the steps still run and report what they find, and
    // nothing outside the mirror's content paths is read (see {@link fetcher}).
    checkContentUrls(protocol, findings);
    if (findings.failed) return findings.outcome("");
    return {
      status: "skip",
      detail:
        `${MIRROR_NOTE}; protocol head read from ${url} (${bytes.length} bytes, ${protocol.entries} entries); ` +
        `the issuer's files under ${this.issuerUrl} (its pages included) are read from ${location.base}`,
      problems: [],
    };
  }

  /**
   * An encrypted copy: reads its keys.json, unwraps the data key with the auditor's key and opens the head. From then
   * on every content path is read sealed ({@link readSealed}).
   */
  private async unseal(
    context: VerifyContext,
    location: { base: string; instanceHash: string },
    url: string,
    sealedHead: Buffer,
  ): Promise<Buffer> {
    const instance = location.instanceHash;
    const keysUrl = `${location.base}/${keysPath(instance)}`;
    const { bytes } = await context.web.get(keysUrl, MAX_KEYS_BYTES);
    const keys = parseMirrorKeys(bytes, instance, keysUrl);
    const privateKey = (await this.options.decryptionKey?.()) ?? null;
    if (privateKey === null) {
      const recipients = keys.recipients.map((recipient) => recipient.address);
      const named =
        recipients.slice(0, 5).join(", ") + (recipients.length > 5 ? ` and ${recipients.length - 5} more` : "");
      throw new StatetrailError(
        "MIRROR_KEY_REQUIRED",
        `this copy of instance ${instance} is encrypted for ${named}: ${MIRROR_KEY_OPTIONS}`,
        { hint: MIRROR_KEY_OPTIONS },
      );
    }
    const key = dataKeyFor(keys, ethers.computeAddress(privateKey), privateKey);
    const head = openObject(key, instance, `instances/${instance}/protocol`, sealedHead, url);
    this.sealed = { instance, key };
    return head;
  }

  /**
   * The head's pages: page k is the issuer's URL `…/instances/<h>/protocol/pages/<k>`, fetched through the
   * verification's FetchSession (restricted to the issuer's origin), whose fetcher reads it from the mirror under
   * the same path. The bytes are the mirror's, untrusted: the steps decode them against the head's accumulator.
   */
  private mirroredPages(context: VerifyContext, head: ProtocolHead): PageSource {
    const urls = contentUrls(head.issuer.url);
    return {
      describe: (index) => {
        const issuerUrl = urls.page(head.instance_hash, index);
        return this.rewrite(issuerUrl) ?? issuerUrl;
      },
      read: async (index) =>
        (await context.web.get(urls.page(head.instance_hash, index), context.settings.maxBytes.page)).bytes,
    };
  }
}
