import fs from "node:fs";
import { StatetrailError, toStatetrailError } from "../../errors";
import { loadDeployment } from "../../chain/deployments";
import { parseHexHash } from "../../chain/hash";
import { type ChainProvider } from "../../chain/provider";
import { type PeerCertificate, type PinnedResponse } from "../../net/pinned-fetch";
import { decodeUtf8, readFileLimited } from "../../protocol/limits";
import {
  type ExpectedSubject,
  type FetchRecorder,
  type Fetcher,
  type TrustedSetup,
  type VerificationReport,
  type verifyProtocol,
} from "../../verify";
import { type Bundle, type BundleInstance } from "../../verify/bundle";
import { refusedReport, summarize, summaryLine, type InputForm, type VerificationRun } from "../../verify/report";
import { STEP_IDS, type StepResult } from "../../verify/types";
import { type GlobalOptions } from "../context";
import { type CommandContext } from "../main";
import { lazy } from "../../lazy";
import { AUDITOR_HELP, AUDITOR_OPTION_HELP, auditorKeySource } from "../auditor";
import { type AuditorSource, type SignInSession } from "../../verify/auth";

// Loaded when used (lazy.ts): not for --help.
/* eslint-disable @typescript-eslint/no-require-imports */
const ethers = lazy(() => require("ethers") as typeof import("ethers"));
const verifier = lazy(() => require("../../verify") as typeof import("../../verify"));
/* eslint-enable @typescript-eslint/no-require-imports */

export interface VerifyCliOptions {
  registries?: string;
  chainId?: string;
  ensRegistry?: string;
  instance?: string;
  /** The issuer asked about (for URL and file inputs; with an ENS name it must be the name's address). */
  issuer?: string;
  ens: boolean;
  /** false with --no-conformance: V9 is skipped (reported as skipped, optional). */
  conformance?: boolean;
  html?: string;
  mirror?: boolean;
  s3Endpoint?: string;
  /** Write an offline bundle of everything fetched (verify/bundle.ts). */
  saveBundle?: string;
  /** The auditor's key, for issuers' servers that ask to sign in (cli/auditor.ts). */
  auditorKeyEnv?: string;
  auditorKeystore?: string;
}

/** The auditor's exit codes, the same for every input form (docs/AUDITOR.md, "Exit codes"). */
export const VERIFY_EXIT_CODES = `Exit codes (the same for a URL, a file, a bundle, an ENS name and a mirror):
  0   valid: every instance verified valid, with all of its data disclosed to you
  1   invalid: a check failed on at least one instance (altered, withheld or forged data, another instance or
      issuer than asked, a bundle claiming a certificate the issuer never registered)
  2   could not verify: nothing failed, but something prevented verifying: the issuer's server or the RPC
      endpoint down, an RPC of another chain, an ENS name without url/addr record, a TLS failure, data not
      served, a private server without a key or a grant (AUTH_REQUIRED, GRANT_MISSING), no deployment for
      --network, no instance listed (the report says which, and what to do)
  3   valid as disclosed: nothing failed and every check ran, but some data was not disclosed to you (the
      execution input or fields of states: selective disclosure, protocol v4); what was disclosed is genuine,
      what was not is known only by its digest, and V9 replayed or compared only what was disclosed (the
      report's "disclosure" says what was withheld)
  64  usage: an unknown option, a target that is not an https URL, a file or an ENS name, a bad --issuer,
      both --auditor-key-env and --auditor-keystore, --auditor-key-env naming a variable that is not set
Several instances: 1 if any is invalid, else 2 if any could not be verified, else 3 if any is valid only as
disclosed, else 0.`;

export function registerVerify({ program, run }: CommandContext): void {
  program
    .command("verify <target>")
    .description("verify an instance protocol (an https URL, a file, or an issuer's ENS name) against the chain")
    .option(
      "--registries <model,certificate,instance>",
      "trust these registry addresses instead of deployments/<network>",
    )
    .option("--chain-id <id>", "the chain the registries are on (with --registries)")
    .option("--ens-registry <address>", "the ENS registry to read (default: the network's)")
    .option(
      "--instance <hash>",
      "the instance asked about; with an ENS name: verify only this one (default: every listed one)",
    )
    .option("--issuer <address>", "the issuer asked about: a protocol of any other issuer is invalid")
    .option("--no-ens", "skip the ENS check (V2), reported as skipped; the verdict can then not be valid")
    .option("--no-conformance", "skip V9 (the replay of the model against the recorded run), reported as skipped")
    .option("--html <file>", "also write a self-contained HTML audit report (no scripts, opens offline)")
    .option("--mirror", "the https URL is a copy on a mirror (implied for s3:// and http://): see docs/AUDITOR.md")
    .option("--s3-endpoint <url>", "S3-compatible endpoint for s3:// mirrors (default: $AWS_ENDPOINT_URL_S3, AWS)")
    .option(
      "--save-bundle <file>",
      "also write everything fetched (the protocol's head and pages, model, input, states) to one file that `verify <file>` checks offline",
    )
    .option("--auditor-key-env <NAME>", AUDITOR_OPTION_HELP.keyEnv)
    .option("--auditor-keystore <file>", AUDITOR_OPTION_HELP.keystore)
    .addHelpText(
      "after",
      `
A protocol file is the protocol's signed head alone (its pages are then read from the issuer's server) or a
whole protocol (head and entries inline, "instance_protocol"). It is checked against the chain, but its model,
input and states are fetched from the issuer's server named in it (and V1 asks that server for the protocol's
head). To verify without the issuer's server, verify a bundle (it holds the head and every page): \`verify <url|name> --save-bundle b.json\`, later \`verify b.json\` (only the
RPC is needed; the server's TLS certificate is then taken from the bundle, not observed: see docs/AUDITOR.md).

Progress goes to stderr (V0 … V9 in order); reports to stdout, then with several instances a summary line
("N instances: a valid, b invalid, c could not verify[, d valid as disclosed]"). --json prints one object for every input form:
{ "statetrail_verifications": 1, "target", "input_form", "reports": [...], "summary": {...} }
(docs/verification-report.schema.json).

${AUDITOR_HELP}

${VERIFY_EXIT_CODES}
Examples:
  $ statetrail verify https://localhost:8443/instances/<hash>/protocol
  $ statetrail verify https://localhost:8443/instances/<hash>/protocol --issuer 0x…
  $ statetrail verify ./protocol.json --rpc http://127.0.0.1:8545
  $ statetrail verify acme.test --json
  $ statetrail verify acme.test --html report.html
  $ statetrail verify s3://bucket/prefix/instances/<hash>/protocol     (a mirror copy)
  $ statetrail verify acme.test --save-bundle acme.bundle.json          (then, offline: verify acme.bundle.json)`,
    )
    .action((target: string, options: VerifyCliOptions) =>
      run(async (globals) => {
        // V1's request goes out while the verifier's modules load (after the usage errors: none is then asked).
        askedOf(options);
        auditorKeySource(options);
        const early = /^https:\/\//i.test(target) && !options.mirror ? await askEarly(target) : null;
        // Its handshake and answer need turns of the event loop, which loading the modules in one block would
        // hold up: ethers' bundle, then the verifier's modules, a turn before and after each.
        if (early) {
          await nextTurn();
          const { getAddress } = await import("ethers"); // loads ethers' bundle (a name, for build-cli.js)
          if (typeof getAddress !== "function") throw new StatetrailError("INTERNAL", "ethers did not load");
          await nextTurn();
        }
        const { FetchRecorder, renderReport, renderReportsHtml } = await import("../../verify");
        if (early) await nextTurn();
        const recorder = options.html || options.saveBundle ? new FetchRecorder() : undefined;
        const { reports, form, protocolFile } = await verifyTarget(
          target,
          options,
          globals,
          undefined,
          recorder,
          early,
        );
        const run: VerificationRun = {
          statetrail_verifications: 1,
          target,
          input_form: form,
          reports,
          summary: summarize(reports),
        };
        if (options.html && recorder) {
          fs.writeFileSync(options.html, renderReportsHtml(reports.map((r) => recorder.evidenceFor(r, protocolFile))));
          globals.output.log(`HTML report written to ${options.html}`);
        }
        if (options.saveBundle && recorder)
          run.bundle = saveBundle(options.saveBundle, recorder, run, protocolFile, globals);
        if (globals.json) {
          globals.output.result(run);
        } else {
          const notes = notesFor(form, target);
          for (const report of reports) globals.output.result(report, renderReport(report, { notes }));
          if (reports.length !== 1) globals.output.result(run.summary, summaryLine(run.summary));
        }
        return run.summary.exit_code;
      }),
    );
}

/**
 * V1's first request, made as `verify <https URL>` starts: the same GET of the protocol URL V1 makes (no pin, the
 * protocol's size limit and deadline, no sign-in), sent before ethers, the chain and the verifier's modules are
 * loaded, instead of after. V1 takes its answer ({@link answeringEarly}) as if it had asked then: the body, and the
 * certificate of the connection it came over, which then pins the origin for every later request as always.
 */
export interface EarlyRequest {
  url: string;
  maxBytes: number;
  timeoutMs: number;
  response: Promise<PinnedResponse>;
}

/** Resolves on the next turn of the event loop, once what the network brought meanwhile is handled. */
const nextTurn = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

async function askEarly(target: string): Promise<EarlyRequest | null> {
  let url: string;
  try {
    url = new URL(target).href;
  } catch {
    return null; // V1 says what is wrong with it
  }
  const { DEFAULT_TIMEOUT_MS, pinnedFetch } = await import("../../net/pinned-fetch");
  const { DEFAULT_MAX_BYTES } = await import("../../verify/context");
  const maxBytes = DEFAULT_MAX_BYTES.protocol;
  const timeoutMs = DEFAULT_TIMEOUT_MS;
  const response = pinnedFetch(url, { maxBytes, timeoutMs, reuse: true });
  response.catch(() => undefined); // V1 sees the failure, if it takes this answer at all
  return { url, maxBytes, timeoutMs, response };
}

/**
 * `fetcher`, except that its first request, if it is the early one (same URL, no pin, same limit and deadline),
 * gets the early answer. A refusal of access (401, 403) is asked again through `fetcher` with the verification's
 * sign-ins (which sign in, or say why not: auth.ts); any other answer or failure is V1's, as it would have been.
 */
function answeringEarly(early: EarlyRequest | null | undefined, fetcher: Fetcher): Fetcher {
  let pending = early ?? null;
  return async (url, request) => {
    const taken = pending;
    pending = null;
    if (
      !taken ||
      url !== taken.url ||
      request.fingerprint !== undefined ||
      request.maxBytes !== taken.maxBytes ||
      request.timeoutMs !== taken.timeoutMs
    ) {
      return fetcher(url, request);
    }
    const { fetchedOf } = await import("../../verify/fetcher");
    const { FetchError } = await import("../../net/pinned-fetch");
    return fetchedOf(url, taken.response).catch((error: unknown) => {
      const access = error instanceof FetchError && (error.status === 401 || error.status === 403);
      if (access && request.auth) return fetcher(url, request);
      throw error;
    });
  };
}

/** What the text report says about how the input was read. */
function notesFor(form: InputForm, target: string): string[] {
  if (form === "file") {
    return [
      `${target} is a protocol file: its model, input and states (and, for a head alone, its pages) were fetched from ` +
        `the issuer's server named in it (issuer.url). To verify without that server, verify a bundle ` +
        `(verify <url|name> --save-bundle <file>).`,
    ];
  }
  if (form === "bundle") {
    return [
      `offline bundle ${target}: nothing was fetched from the issuer's server. Every byte was checked against the ` +
        `chain; the server's TLS certificate is taken from the bundle, not observed (V1, V3), so a valid verdict ` +
        `rests on hashes, signature and chain alone.`,
    ];
  }
  return [];
}

function saveBundle(
  file: string,
  recorder: FetchRecorder,
  run: VerificationRun,
  protocolFile: string | null,
  globals: GlobalOptions,
): { file: string; instances: string[] } {
  const bundle = recorder.toBundle(run.reports, { madeBy: `statetrail verify ${run.target}`, protocolFile });
  fs.writeFileSync(file, JSON.stringify(bundle) + "\n");
  const files = Object.keys(bundle.files).length;
  globals.output.log(`bundle written to ${file}: ${bundle.instances.length} instance(s), ${files} file(s)`);
  const kept = new Set(bundle.instances.map((instance) => instance.instance_hash));
  for (const report of run.reports) {
    if (!report.subject || !kept.has(report.subject.instance_hash)) {
      globals.output.log(`  not in the bundle: ${report.source} (no protocol was read: see its V1)`);
    }
  }
  if (recorder.overflowed) {
    globals.output.log("  warning: more data than the recorder keeps (256 MiB): the bundle is incomplete");
  }
  return { file, instances: bundle.instances.map((instance) => instance.instance_hash) };
}

/** Prints each step of one verification to stderr as it finishes, in step order (V1 runs first, V0 next). */
function progress(log: (line: string) => void): (step: StepResult) => void {
  const done = new Map<string, StepResult>();
  let next = 0;
  return (step) => {
    done.set(step.id, step);
    while (next < STEP_IDS.length && done.has(STEP_IDS[next])) {
      const ready = done.get(STEP_IDS[next++])!;
      log(`  ${ready.id} ${ready.status.toUpperCase().padEnd(5)} ${ready.title} (${ready.durationMs} ms)`);
    }
  };
}

/** Trusted registries come from deployments/<network>/ or the auditor's flags, never from the protocol. */
export function trustedSetup(
  globals: GlobalOptions,
  options: VerifyCliOptions,
): { trusted: TrustedSetup; ens: string | null } {
  if (options.registries) {
    const parts = options.registries.split(",").map((p) => p.trim());
    if (parts.length !== 3 || !options.chainId) {
      throw new StatetrailError(
        "INVALID_ARGUMENT",
        "--registries takes model,certificate,instance addresses and needs --chain-id",
      );
    }
    const [model, certificate, instance] = parts.map((p) => ethers.getAddress(p));
    return {
      trusted: {
        chainId: Number(options.chainId),
        registries: { model, certificate, instance },
        source: "--registries",
      },
      ens: options.ensRegistry ?? null,
    };
  }
  const deployment = loadDeployment(globals.network);
  return { trusted: verifier.trustedFromDeployment(deployment), ens: options.ensRegistry ?? deployment.ens.registry };
}

export interface VerifyOutcome {
  reports: VerificationReport[];
  form: InputForm;
  /** The protocol file's text, for a file input. */
  protocolFile: string | null;
}

/**
 * Verifies every instance `target` names. Whatever prevents verifying (the RPC, the issuer's server, an ENS name
 * without records, a missing deployment) becomes a could-not-verify report with its code and what to do, so
 * every input form gives reports with the same exit codes; only a usage error (INVALID_ARGUMENT) is thrown.
 */
export async function verifyTarget(
  target: string,
  options: VerifyCliOptions,
  globals: GlobalOptions,
  onReport?: (report: VerificationReport) => void,
  recorder?: FetchRecorder,
  /** V1's request, already sent (the verify command's {@link askEarly}). */
  early?: EarlyRequest | null,
): Promise<VerifyOutcome> {
  const outcome: VerifyOutcome = { reports: [], form: formOf(target, options), protocolFile: null };
  const asked = askedOf(options); // a usage error comes before anything is read
  const auditor = auditorKeySource(options);
  const push = (report: VerificationReport) => {
    outcome.reports.push(report);
    onReport?.(report);
  };
  try {
    await verifyResolved(target, options, globals, outcome, push, recorder, auditor, early);
  } catch (cause) {
    // context.ts (and with it ethers) only when something failed: `verify --help` loads neither.
    const { forAuditor } = await import("../context");
    const error = forAuditor(toStatetrailError(cause), globals);
    if (error.code === "INVALID_ARGUMENT" || error.code === "INTERNAL") throw error;
    // A file that says it is a bundle and is refused is still a bundle to the reader of --json.
    if (error.code === "BUNDLE_INVALID") outcome.form = "bundle";
    const chain =
      error.code === "RPC_UNREACHABLE" || error.code === "WRONG_CHAIN" || error.code === "DEPLOYMENT_MISSING";
    push(
      refusedReport(
        target,
        { ...asked, ...(outcome.form === "ens-name" ? { ensName: target } : {}) },
        `${error.code}: ${error.message}`,
        error.code,
        "error",
        {
          step: chain ? "V0" : "V1",
          hint: error.hint,
        },
      ),
    );
  }
  return outcome;
}

/** How `target` is read (a file is a bundle or a protocol: set once it is read). */
function formOf(target: string, options: VerifyCliOptions): InputForm {
  if (/^https:\/\//i.test(target)) return options.mirror ? "mirror" : "url";
  if (verifier.isMirrorUrl(target)) return "mirror";
  if (fs.existsSync(target)) return "file";
  if (ENS_NAME.test(target)) return "ens-name";
  throw new StatetrailError("INVALID_ARGUMENT", `"${target}" is not an https URL, an existing file or an ENS name`, {
    hint: "give https://<server>/instances/<hash>/protocol, the path of a protocol or bundle file, or a name like acme.eth",
  });
}

const ENS_NAME = /^[a-z0-9-]+(\.[a-z0-9-]+)+$/i;

async function verifyResolved(
  target: string,
  options: VerifyCliOptions,
  globals: GlobalOptions,
  outcome: VerifyOutcome,
  push: (report: VerificationReport) => void,
  recorder?: FetchRecorder,
  auditor: AuditorSource | null = null,
  early?: EarlyRequest | null,
): Promise<void> {
  const { connect } = await import("../../chain/provider");
  const { rpcUrlFor } = await import("../rpc-endpoint");
  const { ChainView, SignInSession, ensReaderFromProvider, pinnedFetcher, storageFetcher, verifyProtocol } =
    await import("../../verify");
  const { bundleFetcher, bundleReport } = await import("../../verify/bundle");
  const { trusted, ens } = trustedSetup(globals, options);
  // One sign-in per issuer's server for the whole command (every instance of an ENS name), on the trusted chain.
  const auth = new SignInSession({ auditor, chainId: trusted.chainId });
  const wrap = (fetcher: Fetcher): Fetcher => (recorder ? recorder.wrap(fetcher) : fetcher);
  // A mirror: untrusted storage holding a copy (verify/mirror.ts); s3:// and http:// can only be one.
  const mirrored = outcome.form === "mirror";
  const provider = await connect({
    rpcUrl: rpcUrlFor(globals),
    expectedChainId: trusted.chainId,
    ensRegistry: options.ens ? ens : null,
  });
  // The issuer's server, V1's first request answered by the early one (an https URL's only verification).
  const web = answeringEarly(outcome.form === "url" ? early : null, pinnedFetcher);
  try {
    const resolved = await resolveTargets(target, options, provider, trusted, { bundles: true, auth });
    for (const [index, item] of resolved.entries()) {
      if ("refused" in item) {
        push(item.refused);
        continue;
      }
      const { input, expected, bundle, protocolFile } = item;
      if (bundle) outcome.form = "bundle";
      if (protocolFile !== undefined) outcome.protocolFile = protocolFile;
      const source = "url" in input ? input.url : (input.name ?? "protocol object");
      globals.output.log(`verifying ${source}${resolved.length > 1 ? ` (${index + 1} of ${resolved.length})` : ""}`);
      // An offline bundle is read as a mirror whose storage is the file: nothing goes to the network but the RPC.
      const offline = bundle ? wrap(bundleFetcher(bundle.bundle, bundle.name)) : null;
      // One instance that breaks the verifier must not take down the others' reports.
      let report = await verifyProtocol({
        input,
        expected,
        provider,
        trusted,
        ens: options.ens && ens ? ensReaderFromProvider(provider) : null,
        conformance: options.conformance !== false,
        auditor: auth,
        fetcher: offline ?? wrap(web),
        mirror: offline
          ? { fetcher: offline }
          : mirrored
            ? { fetcher: wrap(storageFetcher({ endpoint: options.s3Endpoint })) }
            : undefined,
        onStep: progress(globals.output.log),
      }).catch((cause: unknown) => {
        const error = toStatetrailError(cause);
        return refusedReport(source, expected, `${error.code}: ${error.message}`, error.code, "error");
      });
      if (bundle) {
        report = await bundleReport(report, bundle.entry, bundle.bundle, bundle.name, new ChainView(provider, trusted));
      }
      push(report);
    }
  } finally {
    provider.destroy();
    // The issuer's servers' kept connections (pinnedFetcher's keep-alive): closed with the command's chain.
    (await import("../../net/pinned-fetch")).closePinnedConnections();
  }
}

type Input = Parameters<typeof verifyProtocol>[0]["input"];

/** What to verify and what it must be about; or a question refused before any protocol was read. */
export type Resolved =
  | {
      input: Input;
      expected: ExpectedSubject;
      /** An instance of an offline bundle (only with `bundles`). */
      bundle?: { bundle: Bundle; entry: BundleInstance; name: string };
      /** The text of a protocol file. */
      protocolFile?: string;
    }
  | { refused: VerificationReport };

/** What --issuer and --instance ask (INVALID_ARGUMENT for what is not an address or a hash). */
export function askedOf(options: Pick<VerifyCliOptions, "issuer" | "instance">): ExpectedSubject {
  const asked: ExpectedSubject = {};
  if (options.issuer !== undefined) {
    if (!ethers.isAddress(options.issuer)) {
      throw new StatetrailError("INVALID_ARGUMENT", `--issuer is not an address: "${options.issuer}"`, {
        hint: "give the issuer's Ethereum address, 0x followed by 40 hex digits",
      });
    }
    asked.issuer = ethers.getAddress(options.issuer);
  }
  if (options.instance !== undefined) asked.instanceHash = parseHexHash(options.instance, "--instance");
  return asked;
}

/**
 * The protocols a target names, each with what the auditor asked: the instance of a URL (V1 reads it from the
 * URL) or `--instance`, the issuer of `--issuer` or the address an ENS name resolves to.
 */
export async function resolveTargets(
  target: string,
  options: VerifyCliOptions,
  provider: ChainProvider,
  trusted: TrustedSetup,
  read: { bundles?: boolean; auth?: SignInSession } = {},
): Promise<Resolved[]> {
  const asked = askedOf(options);
  const { DEFAULT_MAX_BYTES, isMirrorUrl } = await import("../../verify");
  if (/^https:\/\//i.test(target) || isMirrorUrl(target)) return [{ input: { url: target }, expected: asked }];
  if (fs.existsSync(target)) {
    if (read.bundles) {
      const { BUNDLE_MAX_BYTES, isBundleDocument, parseBundle } = await import("../../verify/bundle");
      const text = decodeUtf8(readFileLimited(target, BUNDLE_MAX_BYTES, "protocol or bundle file"), target);
      let document: unknown = null;
      try {
        document = JSON.parse(text);
      } catch {
        // not JSON: V1 says so for the protocol
      }
      if (isBundleDocument(document)) {
        const bundle = parseBundle(document, target);
        const named = bundle.instances.filter((entry) => entry.instance_hash === asked.instanceHash);
        // --instance picks its entry; a bundle without it is verified against the question (and fails V1).
        return (named.length > 0 ? named : bundle.instances).map((entry) => ({
          input: { url: entry.protocol_url },
          expected: asked,
          bundle: { bundle, entry, name: target },
        }));
      }
      if (Buffer.byteLength(text) > DEFAULT_MAX_BYTES.protocol) {
        readFileLimited(target, DEFAULT_MAX_BYTES.protocol, "protocol file"); // throws INPUT_TOO_LARGE
      }
      return [{ input: { protocol: text, name: target }, expected: asked, protocolFile: text }];
    }
    const bytes = readFileLimited(target, DEFAULT_MAX_BYTES.protocol, "protocol file");
    return [{ input: { protocol: decodeUtf8(bytes, target), name: target }, expected: asked }];
  }
  if (ENS_NAME.test(target)) return instancesOfEnsName(target, asked, provider, trusted, read.auth);
  throw new StatetrailError("INVALID_ARGUMENT", `"${target}" is not an https URL, an existing file or an ENS name`);
}

/**
 * An issuer named in ENS: the name's address is the issuer asked about, its `url` record the server. The
 * listing of instances is taken only from a server presenting a certificate registered for that address, and
 * every listed instance must then be that issuer's: whoever answers at the url can't substitute another
 * issuer's instances, however genuine.
 */
async function instancesOfEnsName(
  name: string,
  asked: ExpectedSubject,
  provider: ChainProvider,
  trusted: TrustedSetup,
  auth?: SignInSession,
): Promise<Resolved[]> {
  const { getAddress } = await import("ethers");
  const { getText, resolveAddress } = await import("../../chain/ens");
  const { FetchError, pinnedFetch } = await import("../../net/pinned-fetch");
  const { serverUnreachable } = await import("../../verify/fetcher");
  const { sameAddress } = await import("../../verify/findings");
  const [url, address] = await Promise.all([getText(provider, name, "url"), resolveAddress(provider, name)]);
  const hint = "check the name and --network / --ens-registry";
  if (!url)
    throw new StatetrailError("VERIFY_INCOMPLETE", `ENS name ${name} has no "url" text record on this chain`, { hint });
  if (!address) {
    throw new StatetrailError("VERIFY_INCOMPLETE", `ENS name ${name} resolves to no address: no issuer to verify`, {
      hint,
    });
  }
  if (asked.issuer && !sameAddress(asked.issuer, address)) {
    throw new StatetrailError("INVALID_ARGUMENT", `--issuer ${asked.issuer} is not ${name}'s address ${address}`, {
      hint: "give the name or the address, or both of the same issuer",
    });
  }
  const expected: ExpectedSubject = { ...asked, issuer: getAddress(address), ensName: name };
  const base = url.replace(/\/+$/, "");
  if (expected.instanceHash)
    return [{ input: { url: `${base}/instances/${expected.instanceHash}/protocol` }, expected }];
  const listingUrl = `${base}/instances`;
  // Signed in to only over a certificate the name's address registered (the auditor's signature is for the issuer).
  const signIns = auth?.hasAuditor
    ? auth.withServerCheck(async (_origin, fingerprint) => {
        const refusal = await notTheIssuers({ fingerprint }, listingUrl, expected, provider, trusted);
        if (refusal) throw new StatetrailError("CERT_NOT_REGISTERED", `not signing in: ${refusal}`);
      })
    : auth;
  const list = async (fingerprint?: string): Promise<PinnedResponse> => {
    const options = { maxBytes: 8 * 1024 * 1024, fingerprint, reuse: true };
    return (signIns ? signIns.fetch(listingUrl, options) : pinnedFetch(listingUrl, options)).catch((error: unknown) => {
      throw serverUnreachable(error, listingUrl) ?? error;
    });
  };
  let listing = await list();
  if (listing.status !== 200) {
    throw new StatetrailError("FETCH_FAILED", `GET ${listingUrl}: HTTP ${listing.status} (redirects are not followed)`);
  }
  const refusal = await notTheIssuers(listing.certificate, listingUrl, expected, provider, trusted);
  if (refusal) return [{ refused: refusedReport(listingUrl, expected, refusal, "CERT_NOT_REGISTERED") }];
  // A private server lists what the caller may read, without asking anyone to sign in (`Vary: Authorization`): with
  // the auditor's key, sign in to that origin (over the certificate just checked) and ask that server again.
  if (signIns?.hasAuditor && /\bauthorization\b/i.test(String(listing.headers.vary ?? ""))) {
    const { fingerprint } = listing.certificate;
    // A server without sign-in routes (404, 405) keeps its anonymous listing; any other failure is reported.
    const signedIn = await signIns.signInAt(listingUrl, fingerprint).then(
      () => true,
      (error: unknown) => {
        if (error instanceof FetchError && (error.status === 404 || error.status === 405)) return false;
        throw error;
      },
    );
    if (signedIn) listing = await list(fingerprint);
  }
  let rows: Array<{ instance_hash: string }>;
  try {
    rows = JSON.parse(decodeUtf8(listing.body, listingUrl)) as Array<{ instance_hash: string }>;
  } catch (error) {
    throw new StatetrailError("FETCH_FAILED", `${listingUrl} did not return JSON`, { cause: error });
  }
  if (!Array.isArray(rows)) throw new StatetrailError("FETCH_FAILED", `${listingUrl} did not return a list`);
  // The listing is untrusted: only well-formed hashes become URLs, each verified once (a hash listed again, in any
  // case, is the same instance: not verified and counted again) as the named issuer's. Rows that are not instance
  // hashes are the server's fault, not the auditor's (never a usage error): one report says it could not verify them.
  const listed = new Set<string>();
  const malformed: unknown[] = [];
  for (const row of rows) {
    try {
      listed.add(parseHexHash(String(row?.instance_hash), "listed instance"));
    } catch {
      malformed.push(row);
    }
  }
  const resolved: Resolved[] = [...listed].map((hash) => ({
    input: { url: `${base}/instances/${hash}/protocol` },
    expected,
  }));
  if (malformed.length > 0) {
    const example = JSON.stringify(malformed[0])?.slice(0, 200) ?? String(malformed[0]);
    const detail = `${listingUrl} lists ${malformed.length} row(s) that name no instance (e.g. ${example})`;
    resolved.push({ refused: refusedReport(listingUrl, expected, detail, "FETCH_FAILED", "error") });
  }
  return resolved;
}

/** Why the certificate a server presented does not speak for the issuer now, or null when it does. */
async function notTheIssuers(
  certificate: Pick<PeerCertificate, "fingerprint">,
  url: string,
  expected: ExpectedSubject,
  provider: ChainProvider,
  trusted: TrustedSetup,
): Promise<string | null> {
  const { ChainView } = await import("../../verify");
  const { sameAddress } = await import("../../verify/findings");
  const chain = new ChainView(provider, trusted);
  const issuer = `${expected.issuer} (${expected.ensName}'s address)`;
  const record = await chain.certificateOf(certificate.fingerprint, expected.issuer!);
  const presented = `the server at ${new URL(url).origin} presents certificate ${certificate.fingerprint}`;
  if (!record.holder || !sameAddress(record.holder, expected.issuer)) {
    return `${presented}, which is not registered for ${issuer}: its listing of instances is not the issuer's`;
  }
  if (record.revokedAt !== 0) return `${presented}, which ${issuer} revoked at ${record.revokedAt}`;
  const now = Math.max(Math.floor(Date.now() / 1000), (await chain.snapshot()).timestamp);
  if (now < record.notBefore || now > record.notAfter) {
    return `${presented}, which is outside its registered window (${record.notBefore} to ${record.notAfter}) now`;
  }
  return null;
}
