/**
 * statetrail as a library (`import { verifyProtocol, watchInstance, track } from "statetrail"`): the auditor's
 * check, the monitor, and the tracker, for applications that embed them instead of running the CLI.
 *
 * Thin, typed wrappers over src/verify and src/tracker that do what the CLI does around them: connect to the RPC
 * endpoint (checked to serve the trusted chain), take the trusted registries from `deployments/<network>/` (or from
 * the caller), read ENS, and close the connection. Each loads its modules when called, so importing one does not
 * load the others' (the tracker's engine is not loaded by an auditor's `verifyProtocol`).
 */
import type { ChainProvider } from "./chain/provider";
import type { ProtocolHead } from "./protocol/schema";
import type { AnchorMode } from "./tracker/journal";
import type { TrustedSetup, VerificationReport, VerifyOptions } from "./verify";
import type { WatchEvent, WatchResult } from "./verify/watch";

export type {
  DisclosureSummary,
  ExitCode,
  ExpectedSubject,
  StepId,
  StepResult,
  StepStatus,
  TrustedSetup,
  VerificationReport,
  Verdict,
} from "./verify";
export type { WatchEvent, WatchResult } from "./verify/watch";
export type {
  InstanceProtocol,
  ProtocolEntry,
  ProtocolHead,
  StateContent,
  StateData,
  DataField,
} from "./protocol/schema";
export {
  readStateDocument,
  readInputDocument,
  contentOf,
  discloseOnly,
  type ReadStateDocument,
} from "./protocol/disclosure";
export { StatetrailError, isStatetrailError, type ErrorCode } from "./errors";
/** A report as the CLI prints it. */
export { renderReport } from "./verify/report";

/** Where the chain is and what to trust on it. */
export interface ChainOptions {
  /**
   * The JSON-RPC endpoint. Default as the CLI's: $STATETRAIL_RPC_URL, the endpoint `statetrail node` recorded for
   * the network, $SEPOLIA_RPC_URL on sepolia, else http://127.0.0.1:8545.
   */
  rpcUrl?: string;
  /** The folder of `deployments/` whose registries are trusted when `trusted` is not given (default "localhost"). */
  network?: string;
  /** The chain id and registry addresses to trust instead of the network's deployment record. */
  trusted?: TrustedSetup;
  /**
   * The ENS registry for V2: the network's by default; null skips V2 (the verdict can then not be "valid" unless
   * `optional` includes "V2").
   */
  ensRegistry?: string | null;
}

export interface VerifyProtocolOptions
  extends
    ChainOptions,
    Pick<VerifyOptions, "expected" | "optional" | "conformance" | "onStep" | "timeoutMs" | "maxBytes" | "auditor"> {
  /**
   * The protocol's https URL (`https://<issuer>/instances/<hash>/protocol`), or a mirror copy's
   * (`s3://bucket/prefix/instances/<hash>/protocol`, `http://…`; an `https://` mirror with `mirror`)...
   */
  url?: string;
  /**
   * Read `url` as a copy on an untrusted mirror (implied by s3:// and http:// URLs); `s3`: its endpoint, region and
   * credentials. An encrypted copy is opened with `auditor` (a Wallet: its private key).
   */
  mirror?: boolean | { s3?: import("./net/s3").S3Settings };
  /** ...or the protocol itself (a file's text, or the parsed object), with a name for the report. */
  protocol?: string | object;
  name?: string;
}

/** The auditor's check V0–V9 of one instance protocol against the chain. Never throws for a bad protocol: the
 * report says invalid (exit_code 1), could not verify (2) or valid as disclosed (3: some data was not disclosed to the
 * auditor, see `report.disclosure`); it throws only for bad options or an unusable chain. */
export async function verifyProtocol(options: VerifyProtocolOptions): Promise<VerificationReport> {
  const verify = await import("./verify");
  return withChain(options, async (provider, trusted, ens) => {
    const input =
      options.url !== undefined
        ? { url: options.url }
        : { protocol: requireProtocol(options.protocol), name: options.name };
    return verify.verifyProtocol({
      input: input as VerifyOptions["input"],
      provider,
      trusted,
      ens: ens ? verify.ensReaderFromProvider(provider) : null,
      expected: options.expected,
      optional: options.optional,
      conformance: options.conformance,
      onStep: options.onStep,
      timeoutMs: options.timeoutMs,
      maxBytes: options.maxBytes,
      auditor: options.auditor,
      mirror:
        options.url !== undefined && (options.mirror || verify.isMirrorUrl(options.url))
          ? { s3: typeof options.mirror === "object" ? options.mirror.s3 : undefined }
          : undefined,
    });
  });
}

export interface WatchInstanceOptions extends ChainOptions, Pick<VerifyOptions, "expected" | "optional" | "auditor"> {
  /** The protocol's https URL. */
  url: string;
  /** Each report as it happens: verified, published, registered, divergence, terminated, error. */
  onEvent?: (event: WatchEvent) => void;
  /** How long a state may be registered but unpublished, or the reverse (default 10,000 ms). */
  graceMs?: number;
  /** How often the chain is read (default 1,000 ms). */
  pollMs?: number;
  /** Stop after this long even if the instance is still running (default: when it terminates). */
  timeoutMs?: number;
}

/** Follows a running instance until it terminates (or `timeoutMs`), like `statetrail watch`. */
export async function watchInstance(options: WatchInstanceOptions): Promise<WatchResult> {
  const [verify, watch] = await Promise.all([import("./verify"), import("./verify/watch")]);
  return withChain(options, (provider, trusted, ens) =>
    watch.watchInstance({
      url: options.url,
      provider,
      trusted,
      ens: ens ? verify.ensReaderFromProvider(provider) : null,
      expected: options.expected,
      optional: options.optional,
      graceMs: options.graceMs,
      pollMs: options.pollMs,
      timeoutMs: options.timeoutMs,
      auditor: options.auditor,
      onEvent: options.onEvent ?? (() => undefined),
    }),
  );
}

export interface TrackOptions {
  /** The model: an ASL file. It is registered first if it is not yet (as `statetrail model deploy`). */
  model: string;
  /** The execution input: JSON text or bytes (kept exactly), or a value (serialized with JSON.stringify). */
  input?: string | Buffer | object;
  /** The data directory with the issuer's identity (default $STATETRAIL_HOME or ~/.statetrail). The keystore
   * password comes from $STATETRAIL_PASSWORD. */
  home?: string;
  /** The network of `deployments/` (default "localhost") and its RPC endpoint (default as for verifyProtocol). */
  network?: string;
  rpcUrl?: string;
  /** The local engine's Task handlers: a module keyed by state name or Resource ARN, or "echo" for every Task. */
  handlers?: string;
  taskHandler?: "echo";
  /** Wait states last 1 ms. */
  skipWaits?: boolean;
  /** How states reach the chain (default "per-state"). */
  anchor?: AnchorMode;
  /** Progress lines (default: none). */
  log?: (message: string) => void;
}

export interface TrackResult {
  instanceHash: string;
  status: ProtocolHead["status"];
  /** Where the issuer's server (`statetrail serve`) publishes the protocol's head (its pages are beside it). */
  protocolUrl: string;
  /** The signed head of the protocol (`entries` states; the entries are in its pages in the data directory). */
  protocol: ProtocolHead;
}

/** Runs a model on the local engine as the issuer and registers every state it enters, like `statetrail run`. */
export async function track(options: TrackOptions): Promise<TrackResult> {
  const [{ issuerTrackerOptions, openIssuer }, { createOutput }, { loadModel }, { Tracker }, { createEngine }] =
    await Promise.all([
      import("./cli/context"),
      import("./cli/output"),
      import("./model/load"),
      import("./tracker/tracker"),
      import("./engine"),
    ]);
  const log = options.log ?? (() => undefined);
  const issuer = await openIssuer({
    home: options.home,
    network: options.network ?? "localhost",
    rpc: options.rpcUrl,
    json: false,
    quiet: true,
    output: { ...createOutput(false, true), log },
  });
  try {
    const tracker = new Tracker({
      ...issuerTrackerOptions(issuer),
      engine: createEngine({
        engine: "local",
        handlers: options.handlers,
        taskHandler: options.taskHandler,
        skipWaits: options.skipWaits ?? false,
      }),
      anchor: options.anchor,
      log,
    });
    const model = await loadModel(options.model);
    await tracker.deployModel(model);
    const input = options.input ?? {};
    const bytes =
      typeof input === "string"
        ? Buffer.from(input, "utf8")
        : Buffer.isBuffer(input)
          ? input
          : Buffer.from(JSON.stringify(input));
    const protocol = await tracker.run(model, bytes);
    return {
      instanceHash: protocol.instance_hash,
      status: protocol.status,
      protocolUrl: `${issuer.identity.url}/instances/${protocol.instance_hash}/protocol`,
      protocol,
    };
  } finally {
    issuer.provider.destroy();
  }
}

function requireProtocol(protocol: string | object | undefined): string | object {
  if (protocol === undefined) throw new TypeError("verifyProtocol: give `url` or `protocol`");
  return protocol;
}

/** Connects as the CLI does (the RPC endpoint checked to serve the trusted chain), runs `use`, disconnects. */
async function withChain<T>(
  options: ChainOptions,
  use: (provider: ChainProvider, trusted: TrustedSetup, ens: string | null) => Promise<T>,
): Promise<T> {
  const [{ connect }, { loadDeployment }, { trustedFromDeployment }, { rpcUrlFor }] = await Promise.all([
    import("./chain/provider"),
    import("./chain/deployments"),
    import("./verify"),
    import("./cli/context"),
  ]);
  const network = options.network ?? "localhost";
  const deployment = options.trusted && options.ensRegistry !== undefined ? null : loadDeployment(network);
  const trusted = options.trusted ?? trustedFromDeployment(deployment!);
  const ens = options.ensRegistry !== undefined ? options.ensRegistry : (deployment?.ens.registry ?? null);
  const provider = await connect({
    rpcUrl: options.rpcUrl ?? rpcUrlFor({ network }),
    expectedChainId: trusted.chainId,
    ensRegistry: ens,
  });
  try {
    return await use(provider, trusted, ens);
  } finally {
    provider.destroy();
  }
}
