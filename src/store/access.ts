import { randomBytes } from "node:crypto";
import fs from "node:fs";
import { z } from "zod";
import { isHexHash, parseHexHash, type HexHash } from "../chain/hash";
import { StatetrailError } from "../errors";
import { DATA_FIELDS, type DataField } from "../protocol/schema";
import { parseStrictJson } from "../protocol/strict-json";
import { lazy } from "../lazy";
import { type Home } from "./home";

/**
 * The access policy of a data directory (docs/design/ACCESS.md): who may read what the issuer's server publishes.
 * `access.json` in the home, written atomically with mode 0600, and `access.log` beside it, JSON lines appended for
 * every change. Both the CLI (grant, revoke-grant, access, run --public) and the server (src/server/access.ts) use
 * this module; it imports nothing of either.
 *
 * No `access.json`: mode `open`, everything served to anyone (as before access control existed). A file that can't
 * be read strictly is ACCESS_POLICY_INVALID, and the server then refuses every data route instead of serving openly.
 */

export type AccessMode = "private" | "open";
export type GrantScope = "all" | `model:${HexHash}` | `instance:${HexHash}`;

const scopeSchema = z
  .string()
  .regex(/^(all|(model|instance):[0-9a-f]{64})$/, 'expected "all", "model:<hash>" or "instance:<hash>"');
const isoTimeSchema = z
  .string()
  .refine((value) => /^\d{4}-\d{2}-\d{2}T/.test(value) && !Number.isNaN(Date.parse(value)), "expected an ISO time");

export const grantSchema = z
  .object({
    id: z.string().regex(/^g-[0-9a-f]{8}$/, 'expected "g-" and 8 hex characters'),
    scope: scopeSchema,
    grantee: z.string().regex(/^0x[0-9a-fA-F]{40}$/, "expected a 0x-prefixed 20-byte address"),
    name: z.string().nullable(),
    granted_at: isoTimeSchema,
    until: isoTimeSchema.nullable(),
    /**
     * Selective disclosure (issue 17): the data fields whose values the grantee receives (each at most once; the CLI
     * writes them in DATA_FIELDS order); null or absent: every field. `input` and `context` also disclose the execution input (`context` holds it).
     */
    fields: z
      .array(z.enum(DATA_FIELDS))
      .refine((fields) => new Set(fields).size === fields.length, { message: "expected each field at most once" })
      .nullable()
      .optional(),
  })
  .strict();
export type Grant = Omit<z.infer<typeof grantSchema>, "scope" | "fields"> & {
  scope: GrantScope;
  /** The fields disclosed to the grantee; null or absent: every field. */
  fields?: DataField[] | null;
};

export const accessPolicySchema = z
  .object({
    statetrail_access: z.literal(1),
    mode: z.enum(["private", "open"]),
    public: z.array(z.string().regex(/^[0-9a-f]{64}$/, "expected an instance hash (64 lowercase hex characters)")),
    grants: z.array(grantSchema),
  })
  .strict();
export type AccessPolicy = Omit<z.infer<typeof accessPolicySchema>, "grants"> & { grants: Grant[] };

/** A fresh policy: private, nothing public, no grant. */
export function emptyPolicy(mode: AccessMode = "private"): AccessPolicy {
  return { statetrail_access: 1, mode, public: [], grants: [] };
}

function invalid(file: string, reason: string, cause?: unknown): StatetrailError {
  return new StatetrailError("ACCESS_POLICY_INVALID", `${file} is not a valid access policy: ${reason}`, {
    cause,
    hint:
      `fix it by hand (docs/design/ACCESS.md describes it), or set it aside and start again with ` +
      `\`statetrail access private\`; until then the server refuses every data route`,
  });
}

/** Parses `access.json` strictly: syntax, duplicate members, unknown members, types, duplicate grant ids. */
export function parsePolicy(bytes: Buffer | string, file = "access.json"): AccessPolicy {
  const text = typeof bytes === "string" ? bytes : bytes.toString("utf8");
  let value: unknown;
  try {
    value = parseStrictJson(text, file);
  } catch (error) {
    throw invalid(file, (error as Error).message, error);
  }
  const parsed = accessPolicySchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw invalid(file, `${issue.path.join(".") || "(top)"}: ${issue.message}`, parsed.error);
  }
  const ids = new Set<string>();
  for (const grant of parsed.data.grants) {
    if (ids.has(grant.id)) throw invalid(file, `grant id ${grant.id} appears twice`);
    ids.add(grant.id);
  }
  return parsed.data as AccessPolicy;
}

export function accessFile(home: Home): string {
  return home.accessFile();
}

export function accessLogFile(home: Home): string {
  return home.accessLogFile();
}

/** The policy of a data directory, or null when it has none (mode open). Throws ACCESS_POLICY_INVALID. */
export function readPolicy(home: Home): AccessPolicy | null {
  const file = accessFile(home);
  let bytes: Buffer;
  try {
    bytes = fs.readFileSync(file);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ENOENT") return null;
    throw invalid(file, (error as Error).message, error);
  }
  return parsePolicy(bytes, file);
}

/** Writes the policy atomically (temporary file, fsync, rename) with mode 0600. */
export function writePolicy(home: Home, policy: AccessPolicy): void {
  const checked = parsePolicy(JSON.stringify(policy)); // never writes what the server would refuse
  writePrivateFileAtomic(home, accessFile(home), JSON.stringify(checked, null, 2) + "\n");
}

/** Writes a file of the data directory readable by its owner only (0600), atomically: temporary file, fsync, rename. */
export function writePrivateFileAtomic(home: Home, file: string, text: string): void {
  fs.mkdirSync(home.root, { recursive: true });
  const temp = `${file}.${process.pid}.tmp`;
  const fd = fs.openSync(temp, "w", 0o600);
  try {
    fs.fchmodSync(fd, 0o600);
    fs.writeSync(fd, text);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(temp, file);
}

/** One line of `access.log`. */
export interface AccessLogEntry {
  at: string;
  action: "grant" | "revoke" | "mode" | "public" | "unpublic";
  [detail: string]: unknown;
}

/** Appends one JSON line to `access.log` (created with mode 0600). */
export function appendAccessLog(home: Home, entry: Omit<AccessLogEntry, "at"> & { at?: string }): void {
  const file = accessLogFile(home);
  fs.mkdirSync(home.root, { recursive: true });
  const line = JSON.stringify({ at: entry.at ?? new Date().toISOString(), ...entry }) + "\n";
  const fd = fs.openSync(file, "a", 0o600);
  try {
    fs.writeSync(fd, line);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Reads the policy (or a fresh private one), lets `change` edit it, writes it and logs `entry`. What `change`
 * returns is the log entry (undefined: nothing changed, nothing written or logged). `created` says the file was new.
 */
export function updatePolicy(
  home: Home,
  change: (policy: AccessPolicy) => Omit<AccessLogEntry, "at"> | undefined,
): { policy: AccessPolicy; created: boolean; entry?: Omit<AccessLogEntry, "at"> } {
  const existing = readPolicy(home);
  const policy = existing ?? emptyPolicy("private");
  const entry = change(policy);
  if (entry === undefined) return { policy, created: false };
  writePolicy(home, policy);
  appendAccessLog(home, entry);
  return { policy, created: existing === null, entry };
}

/** `all`, `model:<hash>`, `instance:<hash>` or a bare instance hash (an instance); hashes may be 0x-prefixed. */
export function parseScope(text: string): GrantScope {
  if (text === "all") return "all";
  const match = /^(model|instance):(.*)$/.exec(text);
  try {
    if (match) return `${match[1] as "model" | "instance"}:${parseHexHash(match[2], `${match[1]} hash`)}`;
    return `instance:${parseHexHash(text, "instance hash")}`;
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `scope "${text}" is not one statetrail knows`, {
      cause: error,
      hint: 'give "all", "model:<model hash>", "instance:<instance hash>" or an instance hash',
    });
  }
}

/** A grant id: "g-" and 8 random hex characters, not one the policy has. */
export function newGrantId(policy: AccessPolicy): string {
  for (;;) {
    const id = `g-${randomBytes(4).toString("hex")}`;
    if (!policy.grants.some((grant) => grant.id === id)) return id;
  }
}

const DURATION_UNITS: Record<string, number> = { m: 60_000, h: 3_600_000, d: 86_400_000, w: 604_800_000 };

/** `--until`: an ISO time, or a duration from `now` such as `30d`, `12h`, `90m`, `2w`. Must lie in the future. */
export function parseUntil(text: string, now: Date = new Date()): string {
  let time: number;
  const duration = /^([1-9][0-9]{0,5})([mhdw])$/.exec(text);
  if (duration) time = now.getTime() + Number(duration[1]) * DURATION_UNITS[duration[2]];
  else if (/^\d{4}-\d{2}-\d{2}(T.*)?$/.test(text) && !Number.isNaN(Date.parse(text))) time = Date.parse(text);
  else {
    throw new StatetrailError("INVALID_ARGUMENT", `--until ${text} is neither an ISO time nor a duration`, {
      hint: "give an ISO time (2027-01-31 or 2027-01-31T12:00:00Z) or a duration: 90m, 12h, 30d, 2w",
    });
  }
  if (time <= now.getTime()) {
    throw new StatetrailError("INVALID_ARGUMENT", `--until ${text} is not in the future`, {
      hint: "a grant that ends before it begins grants nothing",
    });
  }
  return new Date(time).toISOString();
}

/** Whether a grant is in force at `now` (no `until`, or `until` not yet reached). */
export function isLive(grant: Grant, now: Date): boolean {
  return grant.until === null || Date.parse(grant.until) > now.getTime();
}

/** What a request reads, as far as the policy is concerned. */
export type Resource =
  /** An instance's protocol, pages, input, events, timeline or report; `model` from its head when it exists. */
  | { kind: "instance"; instance: HexHash; model?: HexHash }
  /** A model's bytes. */
  | { kind: "model"; model: HexHash }
  /** State data whose instance is unknown (not stored): only `all` covers it. */
  | { kind: "unknown" };

/**
 * The answer for one request:
 *   open           no policy or mode open: served as before, to anyone
 *   public         a public instance (or a model one covers): served to anyone, cached as before
 *   granted        the caller holds a live grant that covers it: served privately (no shared caches)
 *   auth-required  no session, and it is not public: 401
 *   grant-missing  a session whose address holds no grant for it: 403
 */
export type Decision = "open" | "public" | "granted" | "auth-required" | "grant-missing";

export interface DecideOptions {
  now: Date;
  /**
   * The model of an instance (from its head), for `/models/<h>`: an instance grant or a public instance covers the
   * model of that instance. Asked only about public instances and the caller's instance grants.
   */
  modelOf?: (instance: HexHash) => HexHash | undefined;
}

function sameAddress(a: string, b: string): boolean {
  return a.toLowerCase() === b.toLowerCase();
}

/** The caller's grants in force. */
export function liveGrantsOf(policy: AccessPolicy, address: string, now: Date): Grant[] {
  return policy.grants.filter((grant) => sameAddress(grant.grantee, address) && isLive(grant, now));
}

/** Whether a grant's scope covers `resource` (`modelOf`: the model of an instance, for `/models/<h>`). */
function grantCovers(grant: Grant, resource: Resource, modelOf: (instance: HexHash) => HexHash | undefined): boolean {
  if (grant.scope === "all") return true;
  const [kind, hash] = grant.scope.split(":") as ["model" | "instance", HexHash];
  if (resource.kind === "instance") {
    return kind === "instance" ? hash === resource.instance : resource.model !== undefined && hash === resource.model;
  }
  if (resource.kind === "model") return kind === "model" ? hash === resource.model : modelOf(hash) === resource.model;
  return false;
}

/** ACCESS.md's rules: whether `address` (null: no session) may read `resource` under `policy` (null: no policy). */
export function mayRead(
  policy: AccessPolicy | null,
  address: string | null,
  resource: Resource,
  options: DecideOptions,
): Decision {
  if (policy === null || policy.mode === "open") return "open";
  const modelOf = options.modelOf ?? (() => undefined);
  if (resource.kind === "instance" && policy.public.includes(resource.instance)) return "public";
  if (resource.kind === "model" && policy.public.some((instance) => modelOf(instance) === resource.model)) {
    return "public";
  }
  if (address === null) return "auth-required";
  return liveGrantsOf(policy, address, options.now).some((grant) => grantCovers(grant, resource, modelOf))
    ? "granted"
    : "grant-missing";
}

/** Every data field: what open mode, a public instance and a grant without `fields` disclose. */
export const ALL_FIELDS: ReadonlySet<DataField> = new Set(DATA_FIELDS);
const NO_FIELDS: ReadonlySet<DataField> = new Set();

/**
 * The data fields whose values `address` receives of `resource` (an instance, or a state of it): every field in
 * open mode and for a public instance; else the union of the `fields` of the caller's live grants covering it (a
 * grant without `fields`: every field); none without a session or a grant. Decided like {@link mayRead}, so a
 * revoked or expired grant stops disclosing at the next request.
 */
export function disclosedFields(
  policy: AccessPolicy | null,
  address: string | null,
  resource: Resource,
  now: Date,
): ReadonlySet<DataField> {
  if (policy === null || policy.mode === "open") return ALL_FIELDS;
  if (resource.kind === "instance" && policy.public.includes(resource.instance)) return ALL_FIELDS;
  if (address === null || resource.kind === "model") return NO_FIELDS;
  const fields = new Set<DataField>();
  for (const grant of liveGrantsOf(policy, address, now)) {
    if (!grantCovers(grant, resource, () => undefined)) continue;
    if (grant.fields === null || grant.fields === undefined) return ALL_FIELDS;
    for (const field of grant.fields) fields.add(field);
  }
  return fields;
}

/** Whether the execution input is disclosed with `fields`: `input`, and `context` (the Context Object holds it). */
export function disclosesExecutionInput(fields: ReadonlySet<DataField>): boolean {
  return fields.has("input") || fields.has("context");
}

/**
 * `--fields`: a comma-separated list of DATA_FIELDS (any order, repeats ignored), `all` (every field: null) or
 * `none` (the structure and digests only: []). Returned in DATA_FIELDS order. Anything else is INVALID_ARGUMENT.
 */
export function parseFields(text: string): DataField[] | null {
  const words = text
    .split(",")
    .map((word) => word.trim())
    .filter((word) => word !== "");
  const allowed = `${DATA_FIELDS.join(", ")} (or all, or none)`;
  if (words.length === 0) {
    throw new StatetrailError("INVALID_ARGUMENT", `--fields is empty: the allowed fields are ${allowed}`, {
      hint: "e.g. --fields input,outcome; --fields none grants the structure and digests only",
    });
  }
  if (words.length === 1 && words[0] === "all") return null;
  if (words.length === 1 && words[0] === "none") return [];
  const unknown = words.filter((word) => !(DATA_FIELDS as readonly string[]).includes(word));
  if (unknown.length > 0) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `--fields: ${unknown.map((word) => JSON.stringify(word)).join(", ")} ${unknown.length === 1 ? "is not a field" : "are not fields"}; the allowed fields are ${allowed}`,
      { hint: "e.g. --fields input,outcome (all and none stand alone)" },
    );
  }
  return DATA_FIELDS.filter((field) => words.includes(field));
}

/** How a grant's fields read in messages: "every field", or the list. */
export function describeFields(fields: readonly DataField[] | null | undefined): string {
  if (fields === null || fields === undefined) return "every field";
  if (fields.length === 0) return "no field (structure and digests only)";
  return `fields ${fields.join(", ")}`;
}

/** Instances named by the caller's live `instance:` grants (whose models `/models/<h>` must know). */
export function grantedInstances(policy: AccessPolicy, address: string | null, now: Date): HexHash[] {
  if (address === null) return [];
  return liveGrantsOf(policy, address, now)
    .map((grant) => grant.scope)
    .filter((scope): scope is `instance:${HexHash}` => scope.startsWith("instance:"))
    .map((scope) => scope.slice("instance:".length))
    .filter(isHexHash);
}

// ---------------------------------------------------------------------------------------------------------------
// Changes (the CLI's grant, revoke-grant, access, run --public): each one written atomically and logged.
// ---------------------------------------------------------------------------------------------------------------

/* eslint-disable @typescript-eslint/no-require-imports */
const ethers = lazy(() => require("ethers") as typeof import("ethers"));
/* eslint-enable @typescript-eslint/no-require-imports */

export interface GrantRequest {
  /** `all`, `model:<h>`, `instance:<h>` or an instance hash. */
  scope: string;
  /** A 0x address, or an ENS name resolved with `resolveName`. */
  grantee: string;
  /** `--until`: ISO time or duration (parseUntil). */
  until?: string;
  /** `--fields` (parseFields); absent: every field. */
  fields?: string;
  now?: Date;
  /** Resolves an ENS name on the configured chain (null: it does not resolve). */
  resolveName?: (name: string) => Promise<string | null>;
}

export interface GrantResult {
  grant: Grant;
  /** access.json did not exist: it was created in mode private. */
  created: boolean;
  /** The id of a grant of the same scope to the same address it replaced (its `until` and `fields` changed). */
  replaced: string | null;
  mode: AccessMode;
}

/** The checksummed address of a `0x…` argument, or INVALID_ARGUMENT. */
export function parseAddress(text: string, what = "address"): string {
  try {
    return ethers.getAddress(text);
  } catch (error) {
    throw new StatetrailError("INVALID_ARGUMENT", `${what} ${text} is not a valid address (or its checksum is wrong)`, {
      cause: error,
      hint: "give 0x and 40 hex digits, all lower case or with a correct EIP-55 checksum",
    });
  }
}

const ADDRESS_LIKE = /^0x[0-9a-fA-F]{40}$/;

/** Resolves a grantee argument: an address as it is, an ENS name through `resolveName` (ENS_UNRESOLVED if it doesn't). */
export async function resolveGrantee(
  text: string,
  resolveName?: (name: string) => Promise<string | null>,
): Promise<{ address: string; name: string | null }> {
  if (ADDRESS_LIKE.test(text)) return { address: parseAddress(text, "grantee"), name: null };
  if (!text.includes(".") || /\s/.test(text)) {
    throw new StatetrailError("INVALID_ARGUMENT", `grantee "${text}" is neither an address nor an ENS name`, {
      hint: "give the auditor's 0x address or ENS name (e.g. auditor.eth)",
    });
  }
  if (!resolveName) throw new StatetrailError("INTERNAL", "no ENS resolver given");
  const resolved = await resolveName(text);
  if (resolved === null) {
    throw new StatetrailError("ENS_UNRESOLVED", `${text} does not resolve to an address on this chain`, {
      hint: "check the name and --network, or grant to the auditor's 0x address",
    });
  }
  return { address: parseAddress(resolved, `${text} resolves to`), name: text.toLowerCase() };
}

/** `statetrail grant`: adds (or renews) a grant; creates access.json in mode private if there is none. */
export async function grantAccess(home: Home, request: GrantRequest): Promise<GrantResult> {
  const now = request.now ?? new Date();
  const scope = parseScope(request.scope);
  const until = request.until === undefined ? null : parseUntil(request.until, now);
  const fields = request.fields === undefined ? null : parseFields(request.fields);
  readPolicy(home); // a malformed policy is refused before the chain is asked anything
  const { address, name } = await resolveGrantee(request.grantee, request.resolveName);
  let grant: Grant | undefined;
  let replaced: string | null = null;
  const { policy, created } = updatePolicy(home, (p) => {
    const same = p.grants.find((g) => g.scope === scope && sameAddress(g.grantee, address));
    if (same) {
      replaced = same.id;
      same.until = until;
      same.name = name;
      same.granted_at = now.toISOString();
      same.fields = fields;
      grant = same;
    } else {
      grant = { id: newGrantId(p), scope, grantee: address, name, granted_at: now.toISOString(), until, fields };
      p.grants.push(grant);
    }
    return { action: "grant", ...grant, fields, ...(replaced ? { replaced } : {}) };
  });
  return { grant: grant!, created, replaced, mode: policy.mode };
}

/**
 * `statetrail revoke-grant <id | address | ENS name as granted>`: removes that grant, or every grant of that
 * grantee (only those of `scope` if given). NOT_FOUND when nothing matches.
 */
export function revokeGrants(home: Home, target: string, scopeText?: string): Grant[] {
  const scope = scopeText === undefined ? undefined : parseScope(scopeText);
  const policy = readPolicy(home);
  const address = ADDRESS_LIKE.test(target) ? parseAddress(target, "grantee") : undefined;
  const matches = (grant: Grant): boolean =>
    (scope === undefined || grant.scope === scope) &&
    (grant.id === target ||
      (address !== undefined && sameAddress(grant.grantee, address)) ||
      (grant.name !== null && grant.name === target.toLowerCase()));
  const removed = policy?.grants.filter(matches) ?? [];
  if (removed.length === 0) {
    throw new StatetrailError(
      "INVALID_ARGUMENT",
      `no grant ${/^g-/.test(target) ? target : `to ${target}`}${scope ? ` with scope ${scope}` : ""}`,
      { hint: "statetrail access status lists the grants" },
    );
  }
  updatePolicy(home, (p) => {
    p.grants = p.grants.filter((grant) => !matches(grant));
    return { action: "revoke", grants: removed };
  });
  return removed;
}

/**
 * What `statetrail publish` says when it copies instances the policy keeps private (a mirror is as private as its
 * bucket, whatever access.json says), or undefined when there are none.
 */
export function mirrorNotice(home: Home, instances: readonly HexHash[]): string | undefined {
  let policy: AccessPolicy | null;
  try {
    policy = readPolicy(home);
  } catch {
    return "warning: access.json can't be read; the copies are as private as the bucket, whatever it says";
  }
  if (policy === null || policy.mode === "open") return undefined;
  const restricted = instances.filter((instance) => !policy.public.includes(instance));
  if (restricted.length === 0) return undefined;
  return (
    `warning: ${restricted.length} of the instances copied are private here (access mode private, not public): ` +
    `the mirror serves them to whoever can read the bucket`
  );
}

/** `statetrail access private|open`: returns the mode before (null: no access.json). */
export function setMode(home: Home, mode: AccessMode): { before: AccessMode | null } {
  const existing = readPolicy(home);
  const before = existing === null ? null : existing.mode;
  if (existing === null) {
    writePolicy(home, emptyPolicy(mode));
    appendAccessLog(home, { action: "mode", from: null, to: mode });
  } else if (existing.mode !== mode) {
    updatePolicy(home, (p) => {
      p.mode = mode;
      return { action: "mode", from: before, to: mode };
    });
  }
  return { before };
}

/**
 * `statetrail access public|unpublic <instance>` and `run --public`: adds an instance to `public` (or takes it
 * out). Without access.json one is created in mode open (nothing changes for readers until `access private`).
 * Returns whether anything changed and the mode.
 */
export function setPublic(
  home: Home,
  instanceText: string,
  isPublic: boolean,
): { instance: HexHash; changed: boolean; created: boolean; mode: AccessMode } {
  const instance = parseHexHash(instanceText, "instance hash");
  const existing = readPolicy(home);
  if (existing === null) {
    if (!isPublic) return { instance, changed: false, created: false, mode: "open" };
    writePolicy(home, { ...emptyPolicy("open"), public: [instance] });
    appendAccessLog(home, { action: "public", instance });
    return { instance, changed: true, created: true, mode: "open" };
  }
  const listed = existing.public.includes(instance);
  if (listed === isPublic) return { instance, changed: false, created: false, mode: existing.mode };
  updatePolicy(home, (p) => {
    p.public = isPublic ? [...p.public, instance] : p.public.filter((h) => h !== instance);
    return { action: isPublic ? "public" : "unpublic", instance };
  });
  return { instance, changed: true, created: false, mode: existing.mode };
}
