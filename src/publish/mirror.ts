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
import { parseProtocol, type InstanceProtocol } from "../protocol/schema";
import { type Home } from "../store/home";
import { mapBounded } from "../verify/findings";

/**
 * Copies instances to a mirror: S3-compatible storage under `s3://bucket/prefix`, with the issuer server's
 * relative paths, so that `<prefix>/instances/<h>/protocol` verifies like the original (verify/mirror.ts):
 *
 *   models/<model_hash>   states/<state_hash>   instances/<h>/input   instances/<h>/protocol
 *
 * The bytes are the exact bytes the issuer's server serves; content-addressed files are re-hashed before
 * they leave the data directory (a corrupt store is refused, not copied). The protocol is written last,
 * so a reader of the mirror never finds a protocol whose data is not there yet.
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
  status: InstanceProtocol["status"];
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
    const { protocolBytes, protocol, content } = collect(home, instance);
    const fresh = content.filter((upload) => !written.has(upload.relative));
    await mapBounded(fresh, concurrency, put);
    fresh.forEach((upload) => written.add(upload.relative));
    await put({ relative: `instances/${instance}/protocol`, bytes: protocolBytes, cacheControl: "no-cache" });
    const protocolUrl = s3Url({ bucket: root.bucket, key: joinKey(root.key, `instances/${instance}/protocol`) });
    log(`  ${instance}: ${protocol.instance_protocol.length} states, ${protocol.status} → ${protocolUrl}`);
    result.instances.push({
      instance_hash: instance,
      status: protocol.status,
      states: protocol.instance_protocol.length,
      protocol_url: protocolUrl,
    });
  }
  return result;
}

/** Everything one instance publishes, read from the data directory and checked. */
function collect(
  home: Home,
  instance: HexHash,
): { protocolBytes: Buffer; protocol: InstanceProtocol; content: Upload[] } {
  let protocolBytes: Buffer;
  try {
    protocolBytes = fs.readFileSync(home.protocolFile(instance));
  } catch (error) {
    throw new StatetrailError("NOT_FOUND", `instance ${instance} is not in ${home.root}`, { cause: error });
  }
  const protocol = parseProtocol(protocolBytes.toString("utf8"));
  if (protocol.instance_hash !== instance) {
    throw new StatetrailError(
      "INTERNAL",
      `the stored protocol of ${instance} is for instance ${protocol.instance_hash}`,
    );
  }
  const issuerUrl = protocol.issuer.url.replace(/\/+$/, "");
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

  const content: Upload[] = [];
  expectUrl(protocol.model_data, `models/${protocol.model_hash}`, "model_data");
  content.push({
    relative: `models/${protocol.model_hash}`,
    bytes: checked(protocol.model_hash, home.readModel(protocol.model_hash), "model"),
    cacheControl: IMMUTABLE,
  });
  expectUrl(protocol.instance_data, `instances/${instance}/input`, "instance_data");
  content.push({ relative: `instances/${instance}/input`, bytes: home.readInput(instance), cacheControl: IMMUTABLE });
  for (const entry of protocol.instance_protocol) {
    expectUrl(entry.state_data, `states/${entry.state_hash}`, `state_data of seq ${entry.seq}`);
    content.push({
      relative: `states/${entry.state_hash}`,
      bytes: checked(entry.state_hash, home.readState(entry.state_hash), "state"),
      cacheControl: IMMUTABLE,
    });
  }
  return { protocolBytes, protocol, content };
}
