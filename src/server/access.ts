import { randomBytes } from "node:crypto";
import fs from "node:fs";
import express, { type Express, type NextFunction, type Request, type Response } from "express";
import { isHexHash, type HexHash } from "../chain/hash";
import { isStatetrailError, StatetrailError } from "../errors";
import {
  checkSignIn,
  MAX_SESSION_MS,
  NONCE_PATH,
  NONCE_TTL_MS,
  SESSION_COOKIE,
  SIGN_IN_PATH,
  signInChallenge,
} from "../identity/siwe";
import { parseStrictJson } from "../protocol/strict-json";
import { type DataField } from "../protocol/schema";
import {
  accessFile,
  ALL_FIELDS,
  disclosedFields,
  grantedInstances,
  mayRead,
  parsePolicy,
  type AccessPolicy,
  type Decision,
  type Resource,
} from "../store/access";
import { type Home } from "../store/home";

/**
 * Access control of the issuer's server (docs/design/ACCESS.md): Sign-In with Ethereum (`GET /auth/nonce`,
 * `POST /auth/siwe`), sessions in memory, and a middleware in front of every data route that answers 401
 * AUTH_REQUIRED (no session), 403 GRANT_MISSING (a session without a grant) or lets the route serve, privately
 * (`Cache-Control: private, no-store`, `Vary: Authorization`) unless the policy is open or the instance public.
 * The policy (src/store/access.ts) is re-read whenever `access.json` changes (inode, size, modification time), checked
 * on every request: a grant or a revoke counts from the next request. Event streams are re-checked every few seconds
 * and ended when their grant goes or their session ends.
 */

export interface AccessOptions {
  /**
   * The server's public origin (`https://host[:port]`), which sign-in messages must name. Default: the origin of
   * the identity's registered URL, else the URL the server listens on (https.ts sets it).
   */
  origin?: string;
  /** The chain id sign-in messages must name. Default: the identity's. */
  chainId?: number;
  /** The clock (tests). */
  now?: () => Date;
  /** Outstanding nonces kept at most (oldest dropped first). Default 10,000. */
  maxNonces?: number;
  /** Sessions kept at most (oldest dropped first). Default 10,000. */
  maxSessions?: number;
  /** How often an open event stream is re-authorized against the policy and its session. Default 5 s. */
  recheckMs?: number;
}

export interface Session {
  address: string;
  /** Epoch ms: the signed message's expiration time. */
  expires: number;
}

/** What the middleware leaves for the list routes (`/instances`, `/models`) in `res.locals.access`. */
export interface ListAccess {
  /** Whether the caller may read an instance of `model` (undefined when its head can't be read). */
  mayReadInstance: (instance: HexHash, model: HexHash | undefined) => boolean;
  /** Whether the caller may read a model. */
  mayReadModel: (model: HexHash) => Promise<boolean>;
}

/**
 * What the middleware leaves for the data routes in `res.locals.disclosure` (selective disclosure, issue 17): the
 * data fields whose values the caller receives, and for `/states/<h>` the instance the decision was made for (the
 * route serves the state only if its data names that instance). A route that finds none discloses no field.
 */
export interface DisclosureAccess {
  fields: ReadonlySet<DataField>;
  /** `/states/<h>` in mode private: the instance decided for (null: none could be read, so the route serves nothing). */
  instance?: HexHash | null;
}

/** The fields a data route may disclose to this request: none unless the middleware said otherwise (fail closed). */
export function disclosureOf(res: Response): DisclosureAccess {
  const value = res.locals.disclosure as DisclosureAccess | undefined;
  return value ?? { fields: new Set() };
}

type PolicyState = { policy: AccessPolicy | null } | { error: StatetrailError };

const PRIVATE_CACHE = "private, no-store";

/** Routes that read data; anything else (well-known document, /auth/*, assets, the index page) is not checked. */
type Route =
  | { kind: "instance"; instance: HexHash; stream: boolean }
  | { kind: "model"; model: HexHash }
  | { kind: "state"; state: HexHash }
  | { kind: "list" };

/**
 * The route a path reaches, read as express reads it: segment by segment, percent-decoded (the routes' `:hash` is
 * decoded, so `/models/%61…` reaches `/models/:hash`). Reading more paths as data routes than express routes to
 * them only refuses more.
 */
function classify(path: string): Route | undefined {
  const parts = path.split("/").map((part) => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part; // express refuses it (400) if a route parameter; a literal segment then matches no route
    }
  });
  if (parts.length === 2 && (parts[1] === "instances" || parts[1] === "models")) return { kind: "list" };
  const hash = parts[2];
  if (!isHexHash(hash)) return undefined; // malformed names get the routes' own 400/404, which carry no data
  if (parts[1] === "instances") {
    return { kind: "instance", instance: hash, stream: parts.length === 4 && parts[3] === "events" };
  }
  if (parts.length !== 3) return undefined;
  if (parts[1] === "models") return { kind: "model", model: hash };
  if (parts[1] === "states") return { kind: "state", state: hash };
  return undefined;
}

function sendCoded(
  res: Response,
  status: number,
  code: "AUTH_REQUIRED" | "AUTH_INVALID" | "GRANT_MISSING" | "ACCESS_POLICY_INVALID",
  message: string,
  hint: string,
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  res
    .status(status)
    .set({ "Cache-Control": "no-store", Vary: "Authorization, Cookie" })
    .type("application/json")
    .send(JSON.stringify({ error: { code, message, hint } }));
}

/** The bearer token of a request (`Authorization: Bearer …`, else the session cookie), or undefined. */
export function tokenOf(req: Request): string | undefined {
  const authorization = req.headers.authorization;
  if (typeof authorization === "string") {
    const match = /^Bearer\s+([A-Za-z0-9_-]{1,100})\s*$/i.exec(authorization);
    return match ? match[1] : undefined;
  }
  const cookie = req.headers.cookie;
  if (typeof cookie !== "string") return undefined;
  for (const part of cookie.split(";")) {
    const [name, value] = part.trim().split("=", 2);
    if (name === SESSION_COOKIE && value && /^[A-Za-z0-9_-]{1,100}$/.test(value)) return value;
  }
  return undefined;
}

export class AccessControl {
  /** The origin sign-ins must name; https.ts fills it in once the server listens if nothing else did. */
  origin: string | undefined;
  chainId: number | undefined;
  private readonly now: () => Date;
  private readonly nonces = new Map<string, number>();
  private readonly sessions = new Map<string, Session>();
  private readonly maxNonces: number;
  private readonly maxSessions: number;
  readonly recheckMs: number;
  private cached: { stamp: string; state: PolicyState } | undefined;

  constructor(
    private readonly home: Home,
    options: AccessOptions,
    private readonly headOf: (instance: HexHash) => Promise<{ model_hash: HexHash } | undefined>,
    private readonly log: (message: string) => void,
  ) {
    this.origin = options.origin === undefined ? undefined : new URL(options.origin).origin;
    this.chainId = options.chainId;
    this.now = options.now ?? (() => new Date());
    this.maxNonces = options.maxNonces ?? 10_000;
    this.maxSessions = options.maxSessions ?? 10_000;
    this.recheckMs = options.recheckMs ?? 5_000;
  }

  /** The current policy, re-read when `access.json`'s inode, size or modification time changed. */
  async policy(): Promise<PolicyState> {
    const file = accessFile(this.home);
    let stamp: string;
    try {
      const stat = await fs.promises.stat(file, { bigint: true });
      stamp = `${stat.ino}:${stat.size}:${stat.mtimeNs}`;
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOENT" || code === "ENOTDIR") {
        this.cached = undefined;
        return { policy: null };
      }
      return { error: new StatetrailError("ACCESS_POLICY_INVALID", `${file} can't be read`, { cause: error }) };
    }
    if (this.cached?.stamp === stamp) return this.cached.state;
    let state: PolicyState;
    try {
      state = { policy: parsePolicy(await fs.promises.readFile(file), file) };
    } catch (error) {
      const coded = isStatetrailError(error, "ACCESS_POLICY_INVALID")
        ? error
        : new StatetrailError("ACCESS_POLICY_INVALID", `${file} can't be read`, { cause: error });
      this.log(`${coded.message}: refusing every data route until it is fixed`);
      state = { error: coded };
    }
    this.cached = { stamp, state };
    return state;
  }

  /** A fresh single-use nonce (lives {@link NONCE_TTL_MS}). */
  issueNonce(): { nonce: string; expires: string } {
    const now = this.now().getTime();
    for (const [nonce, expires] of this.nonces) {
      if (expires > now && this.nonces.size < this.maxNonces) break; // in order of issue, so of expiry
      this.nonces.delete(nonce);
    }
    const nonce = randomBytes(16).toString("hex");
    const expires = now + NONCE_TTL_MS;
    this.nonces.set(nonce, expires);
    return { nonce, expires: new Date(expires).toISOString() };
  }

  /** Checks a sign-in (ACCESS.md step 3) and opens a session. Throws AUTH_INVALID. */
  signIn(message: unknown, signature: unknown): { token: string; address: string; expires: string } {
    if (this.origin === undefined || this.chainId === undefined) {
      throw new StatetrailError(
        "AUTH_INVALID",
        "this server does not know its origin or chain, so no one can sign in",
        {
          hint: "the issuer starts the server with an identity (statetrail identity init)",
        },
      );
    }
    const now = this.now();
    const signIn = checkSignIn(message, signature, {
      domain: new URL(this.origin).host,
      origin: this.origin,
      chainId: this.chainId,
      now,
    });
    const expires = this.nonces.get(signIn.nonce);
    this.nonces.delete(signIn.nonce);
    if (expires === undefined || expires <= now.getTime()) {
      throw new StatetrailError("AUTH_INVALID", "the nonce was not issued by this server, has expired or was used", {
        hint: `get a fresh one: GET ${NONCE_PATH} (each nonce signs in once, within 5 minutes)`,
      });
    }
    const token = randomBytes(32).toString("base64url");
    const session = {
      address: signIn.address,
      expires: Math.min(signIn.expirationTime.getTime(), now.getTime() + MAX_SESSION_MS),
    };
    if (this.sessions.size >= this.maxSessions) {
      for (const [key, value] of this.sessions) if (value.expires <= now.getTime()) this.sessions.delete(key);
      while (this.sessions.size >= this.maxSessions) this.sessions.delete(this.sessions.keys().next().value as string);
    }
    this.sessions.set(token, session);
    return { token, address: session.address, expires: new Date(session.expires).toISOString() };
  }

  /** The live session a request carries, or null. */
  sessionOf(req: Request): Session | null {
    const token = tokenOf(req);
    if (token === undefined) return null;
    const session = this.sessions.get(token);
    if (!session) return null;
    if (session.expires <= this.now().getTime()) {
      this.sessions.delete(token);
      return null;
    }
    return session;
  }

  /** `GET /auth/nonce` and `POST /auth/siwe` (the read-only guard lets this one POST through, app.ts). */
  mountRoutes(app: Express): void {
    app.get(NONCE_PATH, (_req: Request, res: Response) => {
      res.set("Cache-Control", "no-store").type("application/json").send(JSON.stringify(this.issueNonce()));
    });
    app.post(SIGN_IN_PATH, express.raw({ type: () => true, limit: 16_384 }), (req: Request, res: Response) => {
      let body: { message?: unknown; signature?: unknown };
      try {
        const text = Buffer.isBuffer(req.body) ? req.body.toString("utf8") : "";
        const value = parseStrictJson(text, "request body");
        if (value === null || typeof value !== "object" || Array.isArray(value)) throw new Error("not an object");
        body = value as typeof body;
      } catch {
        return sendCoded(
          res,
          401,
          "AUTH_INVALID",
          'the body is not a JSON object {"message": …, "signature": …}',
          "POST the EIP-4361 message and its signature as JSON",
        );
      }
      let result: ReturnType<AccessControl["signIn"]>;
      try {
        result = this.signIn(body.message, body.signature);
      } catch (error) {
        if (!isStatetrailError(error, "AUTH_INVALID")) throw error;
        return sendCoded(res, 401, "AUTH_INVALID", error.message, error.hint ?? "sign in again");
      }
      this.rememberKey(body.message, body.signature, result.address);
      const maxAge = Math.max(0, Math.floor((Date.parse(result.expires) - this.now().getTime()) / 1000));
      res
        .status(200)
        .set({
          "Cache-Control": "no-store",
          "Set-Cookie": `${SESSION_COOKIE}=${result.token}; HttpOnly; Secure; SameSite=Strict; Path=/; Max-Age=${maxAge}`,
        })
        .type("application/json")
        .send(JSON.stringify(result));
    });
  }

  /**
   * After a successful sign-in: the public key that signed it, recorded in the home's `access-keys.json`
   * (store/access-keys.ts) when the address is a grantee of the policy, so that `publish` can encrypt mirror copies for
   * it. Addresses without a grant are not recorded (anyone may sign in: the file stays as small as the policy).
   * A failure is logged, never the sign-in's.
   */
  private rememberKey(message: unknown, signature: unknown, address: string): void {
    void (async () => {
      const state = await this.policy();
      if ("error" in state || state.policy === null) return;
      const lower = address.toLowerCase();
      if (!state.policy.grants.some((grant) => grant.grantee.toLowerCase() === lower)) return;
      const { recordPublicKey, recoverSignerKey } = await import("../store/access-keys");
      recordPublicKey(this.home, recoverSignerKey(String(message), String(signature)), "sign-in", {
        address,
        now: this.now(),
      });
    })().catch((error: unknown) => {
      this.log(`could not record the public key of ${address} (mirror encryption): ${(error as Error).message}`);
    });
  }

  /** The model of an instance from its head, undefined when it has none or it can't be read. */
  private async modelOf(instance: HexHash): Promise<HexHash | undefined> {
    try {
      return (await this.headOf(instance))?.model_hash;
    } catch {
      return undefined;
    }
  }

  /** Models of the public instances and of the caller's instance grants: what `/models/<h>` is decided by. */
  private async modelsFor(policy: AccessPolicy, address: string | null): Promise<Map<HexHash, HexHash>> {
    const models = new Map<HexHash, HexHash>();
    const instances = new Set([...policy.public, ...grantedInstances(policy, address, this.now())]);
    for (const instance of instances) {
      const model = await this.modelOf(instance);
      if (model !== undefined) models.set(instance, model);
    }
    return models;
  }

  /** The resource a checked route reads (a state is its instance's; unknown when it is not stored). */
  private async resourceOf(route: Exclude<Route, { kind: "list" }>): Promise<Resource> {
    if (route.kind === "instance") {
      return { kind: "instance", instance: route.instance, model: await this.modelOf(route.instance) };
    }
    if (route.kind === "model") return { kind: "model", model: route.model };
    let instance: unknown;
    try {
      instance = instanceOfStateDocument(await fs.promises.readFile(this.home.stateFile(route.state)));
    } catch {
      instance = undefined;
    }
    if (!isHexHash(instance)) return { kind: "unknown" };
    return { kind: "instance", instance, model: await this.modelOf(instance) };
  }

  /** The decision for a route under the current policy, with the resource it was decided for when it was read. */
  private async decide(
    policy: AccessPolicy | null,
    session: Session | null,
    route: Exclude<Route, { kind: "list" }>,
  ): Promise<{ decision: Decision; resource?: Resource }> {
    if (policy === null || policy.mode === "open") return { decision: "open" };
    // Without a session only the public list can allow: answered without reading anything that isn't public.
    if (session === null) {
      if (route.kind === "instance" && !policy.public.includes(route.instance)) return { decision: "auth-required" };
      if (route.kind === "state" && policy.public.length === 0) return { decision: "auth-required" };
    }
    const resource = await this.resourceOf(route);
    const models = resource.kind === "model" ? await this.modelsFor(policy, session?.address ?? null) : undefined;
    const decision = mayRead(policy, session?.address ?? null, resource, {
      now: this.now(),
      modelOf: (instance) => models?.get(instance),
    });
    return { decision, resource };
  }

  /** The middleware in front of every route (after the method guard). */
  middleware() {
    return async (req: Request, res: Response, next: NextFunction): Promise<void> => {
      const route = classify(req.path);
      if (route === undefined) return next();
      const state = await this.policy();
      if ("error" in state) {
        return sendCoded(
          res,
          503,
          "ACCESS_POLICY_INVALID",
          "the issuer's access policy can't be read, so nothing that needs it is served",
          "ask the issuer to fix access.json (the server's log names the problem)",
        );
      }
      const { policy } = state;
      if (policy === null || policy.mode === "open") {
        res.locals.disclosure = { fields: ALL_FIELDS } satisfies DisclosureAccess;
        return next();
      }
      const session = this.sessionOf(req);
      // Every answer from here on depends on who asks.
      res.vary("Authorization").vary("Cookie");
      if (route.kind === "list") {
        const address = session?.address ?? null;
        const now = this.now();
        let modelsOnce: Promise<Map<HexHash, HexHash>> | undefined; // read once per request
        const list: ListAccess = {
          mayReadInstance: (instance, model) =>
            isReadable(mayRead(policy, address, { kind: "instance", instance, model }, { now })),
          mayReadModel: async (model) => {
            const models = await (modelsOnce ??= this.modelsFor(policy, address));
            return isReadable(
              mayRead(policy, address, { kind: "model", model }, { now, modelOf: (i) => models.get(i) }),
            );
          },
        };
        res.locals.access = list;
        privateCaching(res);
        return next();
      }
      const { decision, resource } = await this.decide(policy, session, route);
      if (decision === "auth-required") return this.challenge(res);
      if (decision === "grant-missing") return this.forbid(res);
      if (resource !== undefined && resource.kind !== "model") {
        const disclosure: DisclosureAccess = {
          fields: disclosedFields(policy, session?.address ?? null, resource, this.now()),
        };
        if (route.kind === "state") disclosure.instance = resource.kind === "instance" ? resource.instance : null;
        res.locals.disclosure = disclosure;
      }
      if (decision === "granted") {
        privateCaching(res);
        if (route.kind === "instance" && route.stream && session) this.watchStream(req, res, session, route);
      }
      next();
    };
  }

  private challenge(res: Response): void {
    res.set("WWW-Authenticate", signInChallenge(this.origin ?? ""));
    sendCoded(
      res,
      401,
      "AUTH_REQUIRED",
      "this issuer's data is private: sign in with Ethereum to read it",
      `GET ${NONCE_PATH}, sign an EIP-4361 message for this origin and chain, POST it to ${SIGN_IN_PATH}, then send ` +
        `Authorization: Bearer <token> (statetrail verify --auditor-key-env does this)`,
    );
  }

  private forbid(res: Response): void {
    sendCoded(
      res,
      403,
      "GRANT_MISSING",
      "the signed-in address has no grant to read this",
      "ask the issuer for a grant: statetrail grant <scope> <your address>",
    );
  }

  /** Ends an event stream when its session ends or its grant is revoked (checked every `recheckMs`). */
  private watchStream(
    req: Request,
    res: Response,
    session: Session,
    route: Extract<Route, { kind: "instance" }>,
  ): void {
    const end = (): void => {
      clearInterval(timer);
      if (!res.writableEnded) res.end();
    };
    const timer = setInterval(() => {
      if (session.expires <= this.now().getTime()) return end();
      void (async () => {
        const state = await this.policy();
        if ("error" in state) return end();
        const { decision } = await this.decide(state.policy, this.sessionOf(req) ?? null, route);
        if (!isReadable(decision)) end();
      })().catch(end);
    }, this.recheckMs);
    timer.unref();
    res.on("close", () => clearInterval(timer));
  }
}

/**
 * The `instance_hash` of a state document's data line (its first line), without checking anything else: the route
 * checks the line's hash before it serves a byte.
 */
export function instanceOfStateDocument(document: Buffer): unknown {
  const newline = document.indexOf(0x0a);
  const line = newline < 0 ? document : document.subarray(0, newline);
  return (JSON.parse(line.toString("utf8")) as { instance_hash?: unknown } | null)?.instance_hash;
}

function isReadable(decision: Decision): boolean {
  return decision === "open" || decision === "public" || decision === "granted";
}

/**
 * Whatever Cache-Control the route sets, private data is `private, no-store`; and no other site's page may embed it
 * (`Cross-Origin-Resource-Policy: same-origin`: a page of another port of the same host would send the cookie).
 */
function privateCaching(res: Response): void {
  res.set("Cross-Origin-Resource-Policy", "same-origin");
  const setHeader = res.setHeader.bind(res);
  res.setHeader = ((name: string, value: number | string | readonly string[]) =>
    setHeader(name, name.toLowerCase() === "cache-control" ? PRIVATE_CACHE : value)) as typeof res.setHeader;
  res.setHeader("Cache-Control", PRIVATE_CACHE);
}
