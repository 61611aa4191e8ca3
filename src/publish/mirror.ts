import fs from "node:fs";
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
import { decodePage, pageCount } from "../protocol/pages";
import { parseHead, type ProtocolHead } from "../protocol/schema";
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
}

export interface PublishedInstance {
  instance_hash: HexHash;
  status: ProtocolHead["status"];
  states: number;
  /** s3:// URL of the copied protocol: what `statetrail verify` takes. */
  protocol_url: string;
}

export interface PublishResult {
  mirror: string;
  instances: PublishedInstance[];
  /** Objects written and their total size. */
  objects: number;
  bytes: number;
}

const IMMUTABLE = "public, max-age=31536000, immutable";

interface Upload {
  relative: string;
  bytes: Buffer;
  cacheControl: string;
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
  const client = options.client ?? createS3Client(options.s3);
  const concurrency = Math.max(1, options.concurrency ?? 8);
  const written = new Set<string>();
  const result: PublishResult = { mirror: s3Url(root), instances: [], objects: 0, bytes: 0 };

  const put = async (upload: Upload): Promise<void> => {
    const location: S3Location = { bucket: root.bucket, key: joinKey(root.key, upload.relative) };
    await putObjectBytes(client, location, upload.bytes, {
      contentType: "application/json",
      cacheControl: upload.cacheControl,
    });
    result.objects += 1;
    result.bytes += upload.bytes.length;
  };

  for (const instance of instances) {
    const { headBytes, head } = await copyInstance(home, instance, async (uploads) => {
      const fresh = uploads.filter((upload) => !written.has(upload.relative));
      await mapBounded(fresh, concurrency, put);
      fresh.forEach((upload) => written.add(upload.relative));
    });
    await put({ relative: `instances/${instance}/protocol`, bytes: headBytes, cacheControl: "no-cache" });
    const protocolUrl = s3Url({ bucket: root.bucket, key: joinKey(root.key, `instances/${instance}/protocol`) });
    log(`  ${instance}: ${head.entries} states, ${head.status} → ${protocolUrl}`);
    result.instances.push({
      instance_hash: instance,
      status: head.status,
      states: head.entries,
      protocol_url: protocolUrl,
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
  let headBytes: Buffer;
  try {
    headBytes = fs.readFileSync(home.protocolFile(instance));
  } catch (error) {
    throw new StatetrailError("NOT_FOUND", `instance ${instance} is not in ${home.root}`, { cause: error });
  }
  const head = parseHead(headBytes);
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
