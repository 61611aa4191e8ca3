import fs from "node:fs";
import path from "node:path";
import { type S3Client } from "@aws-sdk/client-s3";
import { sha256Hex, type HexHash } from "../chain/hash";
import { StatetrailError } from "../errors";
import {
  createS3Client,
  joinKey,
  parseS3Url,
  putObjectBytes,
  s3Url,
  type S3Location,
  type S3Settings,
} from "../net/s3";
import { readInputDocument as checkInputDocument } from "../protocol/disclosure";
import { keysPath, mirrorKeysOf, newDataKey, sealObject, uncompressedPublicKey } from "../protocol/envelope";
import { decodePage, pageCount } from "../protocol/pages";
import { parseHead, type ProtocolHead } from "../protocol/schema";
import { readPolicy } from "../store/access";
import { mirrorPlan, readAccessKeys, type MirrorPlan } from "../store/access-keys";
import { type Home } from "../store/home";
import { mapBounded } from "../verify/findings";

/**
 * Copies instances to a mirror: S3-compatible storage under `s3://bucket/prefix`, with the issuer server's
 * relative paths, so that `<prefix>/instances/<h>/protocol` verifies like the original (verify/mirror.ts):
 *
 *   models/<model_hash>   states/<state_hash>   instances/<h>/input
 *   instances/<h>/protocol/pages/<k>   instances/<h>/protocol   (the head)
 *
 * The bytes are the exact bytes the issuer's server serves; content-addressed files are re-hashed before they leave
 * the data directory, and the pages are checked against the head's accumulator (a corrupt store is refused, not
 * copied). An instance is copied page by page, never whole: a page's states, then the page, then the next; the head
 * last, so a reader of the mirror never finds a head whose pages or data are not there yet. A full page is immutable
 * (cached for a year), the open page and the head are revalidated (`no-cache`).
 *
 * Encrypted copies (docs/design/ACCESS.md, "Encrypted mirrors"): an instance the home's access policy keeps private
 * (mode private, not public) is never copied in clear. Its objects are sealed (protocol/envelope.ts) under the
 * instance's data key, which `instances/<h>/keys.json` holds wrapped for each grantee whose live grant covers the
 * instance and whose public key is known (store/access-keys.ts). Models and states, shared between instances in the
 * clear layout, live under the instance's own prefix, sealed under its key:
 *
 *   instances/<h>/keys.json (clear)   instances/<h>/protocol   instances/<h>/protocol/pages/<k>
 *   instances/<h>/input   instances/<h>/models/<model_hash>   instances/<h>/states/<state_hash>
 *
 * Every sealed object is `no-cache`: a new data key (a recipient removed) rewrites them all. No recipient for an
 * instance: NO_RECIPIENTS before anything is uploaded.
 */

export interface PublishMirrorOptions {
  home: Home;
  /** `s3://bucket` or `s3://bucket/prefix`. */
  mirror: string;
  /** Instances to copy (default: every instance in the data directory). */
  instances?: readonly HexHash[];
  s3?: S3Settings;
  /** A ready client (tests); default one from `s3`. */
  client?: S3Client;
  /** Uploads in flight at once (default 8). */
  concurrency?: number;
  log?: (message: string) => void;
  /** The clock deciding which grants are live (tests). */
  now?: Date;
}

export interface PublishedInstance {
  instance_hash: HexHash;
  status: ProtocolHead["status"];
  states: number;
  /** s3:// URL of the copied protocol: what `statetrail verify` takes. */
  protocol_url: string;
  /** The addresses the copy is encrypted for; null: copied in clear (see `clear_because`). */
  encrypted_for: string[] | null;
  /** Why a copy is in clear: a public instance, or an access policy in mode open (or none). */
  clear_because?: "public" | "open";
}

export interface PublishResult {
  mirror: string;
  instances: PublishedInstance[];
  /** Objects written and their total size. */
  objects: number;
  bytes: number;
}

const IMMUTABLE = "public, max-age=31536000, immutable";
/** Sealed objects are revalidated: a new data key rewrites every one of them under the same path. */
const SEALED_CACHE = "no-cache";

interface Upload {
  relative: string;
  bytes: Buffer;
  cacheControl: string;
  contentType?: string;
}

/** How one instance is copied: in clear, or sealed under `dataKey` for `recipients`. */
type Sealing =
  | { seal: false; reason: "public" | "open" }
  | { seal: true; dataKey: Buffer; recipients: { address: string; publicKey: string }[] };

/** Where an object of the clear layout lives in a sealed copy of `instance` (models and states under its prefix). */
export function sealedPath(instance: HexHash, relative: string): string {
  return /^(models|states)\//.test(relative) ? `instances/${instance}/${relative}` : relative;
}

/**
 * The data key of an instance's mirror copies, kept in the home (`mirror-keys/<h>.json`, mode 0600) so that publishing
 * again (more states, a new grantee) does not change it: a reader never meets objects sealed under two keys. A new
 * key is made when a recipient of the last copy is no longer one (so that what is published from now on is not
 * readable with the key it kept). The key protects only what the home holds in clear anyway.
 */
function dataKeyOf(home: Home, instance: HexHash, recipients: readonly string[]): Buffer {
  const dir = home.path("mirror-keys");
  const file = path.join(dir, `${instance}.json`);
  const wanted = new Set(recipients.map((address) => address.toLowerCase()));
  try {
    const stored = JSON.parse(fs.readFileSync(file, "utf8")) as { data_key?: unknown; recipients?: unknown };
    const before = Array.isArray(stored.recipients) ? stored.recipients.map((a) => String(a).toLowerCase()) : null;
    if (typeof stored.data_key === "string" && /^[0-9a-f]{64}$/.test(stored.data_key) && before !== null) {
      if (before.every((address) => wanted.has(address))) {
        if (before.length !== wanted.size) writeDataKey(dir, file, Buffer.from(stored.data_key, "hex"), recipients);
        return Buffer.from(stored.data_key, "hex");
      }
    }
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT" && !(error instanceof SyntaxError)) throw error;
  }
  const key = newDataKey();
  writeDataKey(dir, file, key, recipients);
  return key;
}

function writeDataKey(dir: string, file: string, key: Buffer, recipients: readonly string[]): void {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, "w", 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, JSON.stringify({ data_key: key.toString("hex"), recipients }) + "\n");
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}

/** The head of a stored instance (NOT_FOUND when it is not stored). */
function storedHead(home: Home, instance: HexHash): { headBytes: Buffer; head: ProtocolHead } {
  let headBytes: Buffer;
  try {
    headBytes = fs.readFileSync(home.protocolFile(instance));
  } catch (error) {
    throw new StatetrailError("NOT_FOUND", `instance ${instance} is not in ${home.root}`, { cause: error });
  }
  return { headBytes, head: parseHead(headBytes) };
}

/**
 * Decides, before anything is uploaded, how each instance is copied; warns about grantees left out; NO_RECIPIENTS when
 * a private instance has no one to be encrypted for.
 */
function planInstances(
  home: Home,
  instances: readonly HexHash[],
  now: Date,
  log: (message: string) => void,
): Map<HexHash, Sealing> {
  const policy = readPolicy(home); // a policy that can't be read stops the copy: never in clear by mistake
  const keys =
    policy === null || policy.mode === "open" ? { statetrail_access_keys: 1 as const, keys: {} } : readAccessKeys(home);
  const plans = new Map<HexHash, Sealing>();
  const stranded: string[] = [];
  for (const instance of instances) {
    const plan: MirrorPlan = mirrorPlan(policy, keys, instance, storedHead(home, instance).head.model_hash, now);
    if (!plan.seal) {
      plans.set(instance, plan);
      continue;
    }
    for (const address of plan.withoutKey) {
      log(
        `warning: ${address} may read ${instance} but its public key is unknown, so the copy is not encrypted for it: ` +
          `statetrail grant instance:${instance} ${address} --public-key <its 0x04… key>, or ask it to sign in to ` +
          `your server once (statetrail verify https://…/instances/${instance}/protocol --auditor-key-env …), then publish again`,
      );
    }
    for (const address of plan.partial) {
      log(
        `warning: ${address} holds only a grant of some fields of ${instance}; a mirror copy holds every field, so it is ` +
          `not encrypted for it`,
      );
    }
    if (plan.recipients.length === 0) {
      stranded.push(instance);
      continue;
    }
    plans.set(instance, {
      seal: true,
      dataKey: dataKeyOf(
        home,
        instance,
        plan.recipients.map((recipient) => recipient.address),
      ),
      recipients: plan.recipients,
    });
  }
  if (stranded.length > 0) {
    throw new StatetrailError(
      "NO_RECIPIENTS",
      `${stranded.length === 1 ? `instance ${stranded[0]} is` : `instances ${stranded.join(", ")} are`} private ` +
        `(access mode private, not public) and no grantee with a known public key may read ` +
        `${stranded.length === 1 ? "it" : "them"}: nothing was copied`,
      {
        hint:
          "grant an auditor with its key (statetrail grant instance:<h> <address> --public-key <0x04…>) or let a " +
          "grantee sign in to your server once; or make the instance public (statetrail access public <h>) to copy it in clear",
      },
    );
  }
  return plans;
}

export async function publishToMirror(options: PublishMirrorOptions): Promise<PublishResult> {
  const root = parseS3Url(options.mirror);
  const { home } = options;
  const log = options.log ?? (() => undefined);
  const instances = options.instances ?? home.listInstances();
  if (instances.length === 0) {
    throw new StatetrailError("NOT_FOUND", `no instance to publish in ${home.root}`, {
      hint: "run a model first: statetrail run <model> --input <json>",
    });
  }
  const plans = planInstances(home, instances, options.now ?? new Date(), log);
  const client = options.client ?? createS3Client(options.s3);
  const concurrency = Math.max(1, options.concurrency ?? 8);
  const written = new Set<string>();
  const result: PublishResult = { mirror: s3Url(root), instances: [], objects: 0, bytes: 0 };

  const put = async (upload: Upload): Promise<void> => {
    const location: S3Location = { bucket: root.bucket, key: joinKey(root.key, upload.relative) };
    await putObjectBytes(client, location, upload.bytes, {
      contentType: upload.contentType ?? "application/json",
      cacheControl: upload.cacheControl,
    });
    result.objects += 1;
    result.bytes += upload.bytes.length;
  };

  for (const instance of instances) {
    const plan = plans.get(instance)!;
    // In a sealed copy every object but keys.json is sealed under the instance's key, at its sealed path.
    const prepare = (upload: Upload): Upload => {
      if (!plan.seal) return upload;
      const relative = sealedPath(instance, upload.relative);
      return {
        relative,
        bytes: sealObject(plan.dataKey, instance, relative, upload.bytes),
        cacheControl: SEALED_CACHE,
        contentType: "application/octet-stream",
      };
    };
    if (plan.seal) {
      const keys = mirrorKeysOf(
        instance,
        plan.dataKey,
        plan.recipients.map((recipient) => ({
          address: recipient.address,
          publicKey: uncompressedPublicKey(recipient.publicKey),
        })),
      );
      await put({
        relative: keysPath(instance),
        bytes: Buffer.from(JSON.stringify(keys, null, 2) + "\n"),
        cacheControl: "no-cache",
      });
    }
    const { headBytes, head } = await copyInstance(home, instance, async (uploads) => {
      const fresh = uploads.map(prepare).filter((upload) => !written.has(upload.relative));
      await mapBounded(fresh, concurrency, put);
      fresh.forEach((upload) => written.add(upload.relative));
    });
    await put(prepare({ relative: `instances/${instance}/protocol`, bytes: headBytes, cacheControl: "no-cache" }));
    const protocolUrl = s3Url({ bucket: root.bucket, key: joinKey(root.key, `instances/${instance}/protocol`) });
    const how = plan.seal
      ? `encrypted for ${plan.recipients.map((recipient) => recipient.address).join(", ")}`
      : `in clear (${plan.reason === "public" ? "a public instance" : "access mode open"})`;
    log(`  ${instance}: ${head.entries} states, ${head.status}, ${how} → ${protocolUrl}`);
    result.instances.push({
      instance_hash: instance,
      status: head.status,
      states: head.entries,
      protocol_url: protocolUrl,
      encrypted_for: plan.seal ? plan.recipients.map((recipient) => recipient.address) : null,
      ...(plan.seal ? {} : { clear_because: plan.reason }),
    });
  }
  return result;
}

/**
 * Reads one instance from the data directory, checks it and hands `upload` what it publishes, in the order a reader
 * may rely on: the model and input; then for each page its states, then the page. Returns the head (to be written
 * last). At most one page and its states are in memory at once.
 */
async function copyInstance(
  home: Home,
  instance: HexHash,
  upload: (uploads: Upload[]) => Promise<void>,
): Promise<{ headBytes: Buffer; head: ProtocolHead }> {
  const { headBytes, head } = storedHead(home, instance);
  if (head.instance_hash !== instance) {
    throw new StatetrailError("INTERNAL", `the stored protocol of ${instance} is for instance ${head.instance_hash}`);
  }
  const issuerUrl = head.issuer.url.replace(/\/+$/, "");
  const expectUrl = (url: string, relative: string, what: string): void => {
    if (url !== `${issuerUrl}/${relative}`) {
      throw new StatetrailError(
        "PROTOCOL_INVALID",
        `${what} of instance ${instance} is ${url}, not under the issuer's ${issuerUrl}/${relative}: a mirror could not serve it`,
      );
    }
  };
  const checked = (hash: HexHash, bytes: Buffer, what: string): Buffer => {
    if (sha256Hex(bytes) !== hash) {
      throw new StatetrailError("INTERNAL", `stored ${what} ${hash} does not match its hash; refusing to publish it`, {
        hint: "the data directory is corrupt: restore the file from a backup",
      });
    }
    return bytes;
  };

  // A state document: its first line (the data) is what the state hash addresses; it is copied whole.
  const checkedStateDocument = (hash: HexHash, document: Buffer): Buffer => {
    const newline = document.indexOf(0x0a);
    checked(hash, newline < 0 ? document : document.subarray(0, newline), "state");
    return document;
  };

  expectUrl(head.model_data, `models/${head.model_hash}`, "model_data");
  expectUrl(head.instance_data, `instances/${instance}/input`, "instance_data");
  await upload([
    {
      relative: `models/${head.model_hash}`,
      bytes: checked(head.model_hash, home.readModel(head.model_hash), "model"),
      cacheControl: IMMUTABLE,
    },
    // The input document (every disclosure: a mirror has no access control), never the raw input file.
    {
      relative: `instances/${instance}/input`,
      bytes: readInputDocument(home, instance, head),
      cacheControl: IMMUTABLE,
    },
  ]);

  let accumulator = instance;
  for (let index = 0; index < pageCount(head.entries, head.page_size); index += 1) {
    const page = await home.readServablePage(instance, index);
    if (!page) {
      throw new StatetrailError("INTERNAL", `page ${index} of instance ${instance} is not in ${home.root}`, {
        hint: "the data directory is corrupt or the instance is being resumed: run statetrail run --resume first",
      });
    }
    const wanted = Math.min(head.page_size, head.entries - index * head.page_size);
    const decoded = decodePage(page.bytes, { instanceHash: instance, index, accumulatorBefore: accumulator, wanted });
    if (decoded.entries.length !== wanted) {
      throw new StatetrailError(
        "PAGE_INVALID",
        `page ${index} of instance ${instance} holds fewer entries than its head counts`,
      );
    }
    accumulator = decoded.accumulatorAfter;
    const states: Upload[] = decoded.entries.map((entry) => {
      expectUrl(entry.state_data, `states/${entry.state_hash}`, `state_data of seq ${entry.seq}`);
      return {
        relative: `states/${entry.state_hash}`,
        bytes: checkedStateDocument(entry.state_hash, home.readState(entry.state_hash)),
        cacheControl: IMMUTABLE,
      };
    });
    await upload(states);
    const closed = page.lines - 1 >= head.page_size;
    await upload([
      {
        relative: `instances/${instance}/protocol/pages/${index}`,
        bytes: page.bytes,
        cacheControl: closed ? IMMUTABLE : "no-cache",
      },
    ]);
  }
  if (accumulator !== head.accumulator) {
    throw new StatetrailError(
      "PAGE_INVALID",
      `the stored pages of instance ${instance} are not what its head commits to`,
      {
        hint: "the data directory is corrupt: restore it from a backup, or resume the instance",
      },
    );
  }
  return { headBytes, head };
}

/**
 * The input document of an instance (home.inputDocumentFile), checked against the head's input_digest; INTERNAL when
 * the data directory lacks it or holds another.
 */
function readInputDocument(home: Home, instance: HexHash, head: ProtocolHead): Buffer {
  let document: Buffer;
  try {
    document = fs.readFileSync(home.inputDocumentFile(instance));
    checkInputDocument(document, head.input_digest);
  } catch (error) {
    throw new StatetrailError(
      "INTERNAL",
      `the input document of instance ${instance} in ${home.root} is missing or not valid`,
      {
        cause: error,
        hint: "the data directory is corrupt or was written by an earlier statetrail: restore it from a backup",
      },
    );
  }
  return document;
}
