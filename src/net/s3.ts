import { GetObjectCommand, PutObjectCommand, S3Client, S3ServiceException } from "@aws-sdk/client-s3";
import { StatetrailError } from "../errors";

/**
 * S3-compatible object storage for mirrors (`s3://bucket/prefix`). Storage is untrusted: everything read
 * from it is proven by hashes, the chain and the issuer's signature, never by the storage itself. Works
 * with AWS S3 and local S3-compatible servers (`endpoint` + path-style addressing).
 */

/** A bucket and a key (or key prefix) without leading or trailing slashes. */
export interface S3Location {
  bucket: string;
  key: string;
}

/** How to reach the storage. Credentials come from the AWS default chain (environment, profile, role). */
export interface S3Settings {
  /** S3-compatible endpoint, e.g. http://127.0.0.1:4568 (default: $AWS_ENDPOINT_URL_S3, $AWS_ENDPOINT_URL, AWS). */
  endpoint?: string;
  /** Default: $AWS_REGION, $AWS_DEFAULT_REGION, else us-east-1. */
  region?: string;
  /** Path-style URLs (`endpoint/bucket/key`); default on when an endpoint is given, off for AWS. */
  forcePathStyle?: boolean;
  credentials?: { accessKeyId: string; secretAccessKey: string; sessionToken?: string };
}

/** `s3://bucket/some/prefix/` → `{bucket, key: "some/prefix"}`; INVALID_ARGUMENT if it is not one. */
export function parseS3Url(url: string): S3Location {
  const match = /^s3:\/\/([^/?#]+)(?:\/([^?#]*))?$/i.exec(url.trim());
  if (!match) {
    throw new StatetrailError("INVALID_ARGUMENT", `not an s3:// URL: "${url}"`, {
      hint: "write it as s3://bucket or s3://bucket/prefix",
    });
  }
  const bucket = match[1];
  if (!/^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$/.test(bucket)) {
    throw new StatetrailError("INVALID_ARGUMENT", `"${bucket}" is not a valid S3 bucket name`);
  }
  const key = (match[2] ?? "").replace(/^\/+|\/+$/g, "");
  if (key.split("/").some((part) => part === "." || part === "..")) {
    throw new StatetrailError("INVALID_ARGUMENT", `S3 key "${key}" must not contain "." or ".." segments`);
  }
  return { bucket, key };
}

/** `{bucket, key}` → `s3://bucket/key`. */
export function s3Url(location: S3Location): string {
  return location.key ? `s3://${location.bucket}/${location.key}` : `s3://${location.bucket}`;
}

/** Joins a key prefix and a relative path. */
export function joinKey(prefix: string, relative: string): string {
  const tail = relative.replace(/^\/+/, "");
  return prefix ? `${prefix}/${tail}` : tail;
}

/** Settings filled in from the environment. */
export function resolveS3Settings(
  settings: S3Settings = {},
): Required<Omit<S3Settings, "credentials" | "endpoint">> & Pick<S3Settings, "credentials" | "endpoint"> {
  const endpoint = settings.endpoint ?? process.env.AWS_ENDPOINT_URL_S3 ?? process.env.AWS_ENDPOINT_URL;
  if (endpoint !== undefined) {
    let parsed: URL;
    try {
      parsed = new URL(endpoint);
    } catch {
      throw new StatetrailError("INVALID_ARGUMENT", `S3 endpoint is not a URL: "${endpoint}"`);
    }
    if (parsed.protocol !== "http:" && parsed.protocol !== "https:") {
      throw new StatetrailError("INVALID_ARGUMENT", `S3 endpoint must be http(s): "${endpoint}"`);
    }
  }
  return {
    endpoint,
    region: settings.region ?? process.env.AWS_REGION ?? process.env.AWS_DEFAULT_REGION ?? "us-east-1",
    forcePathStyle: settings.forcePathStyle ?? endpoint !== undefined,
    credentials: settings.credentials,
  };
}

export function createS3Client(settings: S3Settings = {}): S3Client {
  const resolved = resolveS3Settings(settings);
  // statetrail runs on Node 20 by design (Hardhat 2); the SDK's notice about future versions is not for its users.
  process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= "true";
  return new S3Client({
    region: resolved.region,
    endpoint: resolved.endpoint,
    forcePathStyle: resolved.forcePathStyle,
    credentials: resolved.credentials,
    // S3-compatible servers differ in their support of the newer default checksums; MD5-free plain PUTs work
    // everywhere, and the content is proven by its SHA-256 anyway.
    requestChecksumCalculation: "WHEN_REQUIRED",
    responseChecksumValidation: "WHEN_REQUIRED",
    maxAttempts: 3,
  });
}

/** Turns an SDK failure into FETCH_FAILED with the status and S3 code when there is one. */
export function s3Error(error: unknown, what: string): StatetrailError {
  if (error instanceof StatetrailError) return error;
  if (error instanceof S3ServiceException) {
    const status = error.$metadata?.httpStatusCode;
    return new StatetrailError("FETCH_FAILED", `${what}: ${status ? `HTTP ${status} ` : ""}${error.name}`, {
      cause: error,
      hint: error.name === "NoSuchBucket" ? "create the bucket first, or check the bucket name" : undefined,
    });
  }
  const err = error as NodeJS.ErrnoException;
  const credentials = /credential/i.test(err?.message ?? "");
  return new StatetrailError("FETCH_FAILED", `${what}: ${err?.code ?? err?.message ?? String(error)}`, {
    cause: error,
    hint: credentials ? "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or an AWS profile)" : undefined,
  });
}

/** Reads one object, refusing more than `maxBytes`. */
export async function getObjectBytes(
  client: S3Client,
  location: S3Location,
  options: { maxBytes: number; timeoutMs: number },
): Promise<Buffer> {
  const url = s3Url(location);
  const abort = new AbortController();
  const timer = setTimeout(() => abort.abort(), options.timeoutMs);
  try {
    const response = await client.send(new GetObjectCommand({ Bucket: location.bucket, Key: location.key }), {
      abortSignal: abort.signal,
    });
    if (response.ContentLength !== undefined && response.ContentLength > options.maxBytes) {
      throw new StatetrailError("FETCH_FAILED", `${url} is larger than ${options.maxBytes} bytes`);
    }
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response.Body as AsyncIterable<Uint8Array>) {
      size += chunk.length;
      if (size > options.maxBytes) {
        abort.abort();
        throw new StatetrailError("FETCH_FAILED", `${url} is larger than ${options.maxBytes} bytes`);
      }
      chunks.push(Buffer.from(chunk));
    }
    return Buffer.concat(chunks);
  } catch (error) {
    if (abort.signal.aborted && !(error instanceof StatetrailError)) {
      throw new StatetrailError("FETCH_FAILED", `reading ${url} timed out after ${options.timeoutMs} ms`, {
        cause: error,
      });
    }
    throw s3Error(error, `GET ${url}`);
  } finally {
    clearTimeout(timer);
  }
}

/** Writes one object. */
export async function putObjectBytes(
  client: S3Client,
  location: S3Location,
  bytes: Buffer,
  options: { contentType: string; cacheControl: string },
): Promise<void> {
  try {
    await client.send(
      new PutObjectCommand({
        Bucket: location.bucket,
        Key: location.key,
        Body: bytes,
        ContentLength: bytes.length,
        ContentType: options.contentType,
        CacheControl: options.cacheControl,
      }),
    );
  } catch (error) {
    throw s3Error(error, `PUT ${s3Url(location)}`);
  }
}
