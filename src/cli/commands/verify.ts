import fs from "node:fs";
import { StatetrailError, toStatetrailError } from "../../errors";
import { loadDeployment } from "../../chain/deployments";
import { parseHexHash } from "../../chain/hash";
import { type ChainProvider } from "../../chain/provider";
import { type PeerCertificate } from "../../net/pinned-fetch";
import { decodeUtf8, readFileLimited } from "../../protocol/limits";
import {
  type ExpectedSubject,
  type FetchRecorder,
  type Fetcher,
  type TrustedSetup,
  type VerificationReport,
  type verifyProtocol,
} from "../../verify";
import { refusedReport } from "../../verify/report";
import { type GlobalOptions } from "../context";
import { EXIT } from "../output";
import { type CommandContext } from "../main";
import { lazy } from "../../lazy";

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
}

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
    .addHelpText(
      "after",
      `
Exit codes: 0 valid · 1 invalid (a check failed) · 2 could not verify (network, RPC or data missing)
Examples:
  $ statetrail verify https://localhost:8443/instances/<hash>/protocol
  $ statetrail verify https://localhost:8443/instances/<hash>/protocol --issuer 0x…
  $ statetrail verify ./protocol.json --rpc http://127.0.0.1:8545
  $ statetrail verify acme.test --json
  $ statetrail verify acme.test --html report.html
  $ statetrail verify s3://bucket/prefix/instances/<hash>/protocol     (a mirror copy)`,
    )
    .action((target: string, options: VerifyCliOptions) =>
      run(async (globals) => {
        const { FetchRecorder, renderReport, renderReportsHtml } = await import("../../verify");
        const recorder = options.html ? new FetchRecorder() : undefined;
        const reports = await verifyTarget(target, options, globals, undefined, recorder);
        if (options.html && recorder) {
          const file = fs.existsSync(target) ? fs.readFileSync(target, "utf8") : null;
          fs.writeFileSync(options.html, renderReportsHtml(reports.map((r) => recorder.evidenceFor(r, file))));
          globals.output.log(`HTML report written to ${options.html}`);
        }
        if (globals.json) {
          globals.output.result(reports.length === 1 ? reports[0] : reports);
        } else {
          for (const report of reports) globals.output.result(report, renderReport(report));
        }
        return worstExit(reports);
      }),
    );
}

export function worstExit(reports: VerificationReport[]): number {
  if (reports.length === 0) return EXIT.COULD_NOT_VERIFY;
  if (reports.some((r) => r.exit_code === 1)) return EXIT.INVALID;
  if (reports.some((r) => r.exit_code === 2)) return EXIT.COULD_NOT_VERIFY;
  return EXIT.OK;
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

export async function verifyTarget(
  target: string,
  options: VerifyCliOptions,
  globals: GlobalOptions,
  onReport?: (report: VerificationReport) => void,
  recorder?: FetchRecorder,
): Promise<VerificationReport[]> {
  const { connect } = await import("../../chain/provider");
  const { rpcUrlFor } = await import("../context");
  const { ensReaderFromProvider, isMirrorUrl, pinnedFetcher, storageFetcher, verifyProtocol } =
    await import("../../verify");
  const { trusted, ens } = trustedSetup(globals, options);
  const wrap = (fetcher: Fetcher): Fetcher => (recorder ? recorder.wrap(fetcher) : fetcher);
  // A mirror: untrusted storage holding a copy (verify/mirror.ts); s3:// and http:// can only be one.
  const mirrored = isMirrorUrl(target) || (options.mirror === true && /^https:\/\//i.test(target));
  const provider = await connect({
    rpcUrl: rpcUrlFor(globals),
    expectedChainId: trusted.chainId,
    ensRegistry: options.ens ? ens : null,
  });
  try {
    const reports: VerificationReport[] = [];
    for (const resolved of await resolveTargets(target, options, provider, trusted)) {
      if ("refused" in resolved) {
        reports.push(resolved.refused);
        onReport?.(resolved.refused);
        continue;
      }
      const { input, expected } = resolved;
      // One instance that breaks the verifier must not take down the others' reports.
      const report = await verifyProtocol({
        input,
        expected,
        provider,
        trusted,
        ens: options.ens && ens ? ensReaderFromProvider(provider) : null,
        conformance: options.conformance !== false,
        fetcher: wrap(pinnedFetcher),
        mirror: mirrored ? { fetcher: wrap(storageFetcher({ endpoint: options.s3Endpoint })) } : undefined,
        onStep: (step) => globals.output.log(`  ${step.id} ${step.status}`),
      }).catch((cause: unknown) => {
        const error = toStatetrailError(cause);
        const source = "url" in input ? input.url : (input.name ?? "protocol object");
        return refusedReport(source, expected, `${error.code}: ${error.message}`, error.code, "error");
      });
      reports.push(report);
      onReport?.(report);
    }
    return reports;
  } finally {
    provider.destroy();
  }
}

type Input = Parameters<typeof verifyProtocol>[0]["input"];

/** What to verify and what it must be about; or a question refused before any protocol was read. */
export type Resolved = { input: Input; expected: ExpectedSubject } | { refused: VerificationReport };

/**
 * The protocols a target names, each with what the auditor asked: the instance of a URL (V1 reads it from the
 * URL) or `--instance`, the issuer of `--issuer` or the address an ENS name resolves to.
 */
export async function resolveTargets(
  target: string,
  options: VerifyCliOptions,
  provider: ChainProvider,
  trusted: TrustedSetup,
): Promise<Resolved[]> {
  const asked: ExpectedSubject = {};
  const { getAddress, isAddress } = await import("ethers");
  const { DEFAULT_MAX_BYTES, isMirrorUrl } = await import("../../verify");
  if (options.issuer !== undefined) {
    if (!isAddress(options.issuer)) {
      throw new StatetrailError("INVALID_ARGUMENT", `--issuer is not an address: "${options.issuer}"`, {
        hint: "give the issuer's Ethereum address, 0x followed by 40 hex digits",
      });
    }
    asked.issuer = getAddress(options.issuer);
  }
  if (options.instance !== undefined) asked.instanceHash = parseHexHash(options.instance, "--instance");
  if (/^https:\/\//i.test(target) || isMirrorUrl(target)) return [{ input: { url: target }, expected: asked }];
  if (fs.existsSync(target)) {
    const bytes = readFileLimited(target, DEFAULT_MAX_BYTES.protocol, "protocol file");
    return [{ input: { protocol: decodeUtf8(bytes, target), name: target }, expected: asked }];
  }
  if (/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(target)) return instancesOfEnsName(target, asked, provider, trusted);
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
): Promise<Resolved[]> {
  const { getAddress } = await import("ethers");
  const { getText, resolveAddress } = await import("../../chain/ens");
  const { pinnedFetch } = await import("../../net/pinned-fetch");
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
  const listing = await pinnedFetch(listingUrl, { maxBytes: 8 * 1024 * 1024 });
  if (listing.status !== 200) {
    throw new StatetrailError("FETCH_FAILED", `GET ${listingUrl}: HTTP ${listing.status} (redirects are not followed)`);
  }
  const refusal = await notTheIssuers(listing.certificate, listingUrl, expected, provider, trusted);
  if (refusal) return [{ refused: refusedReport(listingUrl, expected, refusal, "CERT_NOT_REGISTERED") }];
  let rows: Array<{ instance_hash: string }>;
  try {
    rows = JSON.parse(decodeUtf8(listing.body, listingUrl)) as Array<{ instance_hash: string }>;
  } catch (error) {
    throw new StatetrailError("FETCH_FAILED", `${listingUrl} did not return JSON`, { cause: error });
  }
  if (!Array.isArray(rows)) throw new StatetrailError("FETCH_FAILED", `${listingUrl} did not return a list`);
  // The listing is untrusted: only well-formed hashes become URLs, each verified as the named issuer's.
  return rows.map((row) => ({
    input: { url: `${base}/instances/${parseHexHash(String(row?.instance_hash), "listed instance")}/protocol` },
    expected,
  }));
}

/** Why the certificate a server presented does not speak for the issuer now, or null when it does. */
async function notTheIssuers(
  certificate: PeerCertificate,
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
