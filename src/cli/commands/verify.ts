import fs from "node:fs";
import { getAddress } from "ethers";
import { StatetrailError } from "../../errors";
import { loadDeployment } from "../../chain/deployments";
import { parseHexHash } from "../../chain/hash";
import { connect, type ChainProvider } from "../../chain/provider";
import { pinnedFetch } from "../../net/pinned-fetch";
import { decodeUtf8, readFileLimited } from "../../protocol/limits";
import {
  DEFAULT_MAX_BYTES,
  ensReaderFromProvider,
  FetchRecorder,
  isMirrorUrl,
  pinnedFetcher,
  renderReport,
  renderReportsHtml,
  storageFetcher,
  trustedFromDeployment,
  verifyProtocol,
  type Fetcher,
  type TrustedSetup,
  type VerificationReport,
} from "../../verify";
import { rpcUrlFor, type GlobalOptions } from "../context";
import { EXIT } from "../output";
import { type CommandContext } from "../main";

export interface VerifyCliOptions {
  registries?: string;
  chainId?: string;
  ensRegistry?: string;
  instance?: string;
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
    .option("--instance <hash>", "with an ENS name: verify only this instance (default: every listed one)")
    .option("--no-ens", "skip the ENS check (V2), reported as skipped; the verdict can then not be valid")
    .option("--no-conformance", "skip V9 (the states are a legal run of the model), reported as skipped")
    .option("--html <file>", "also write a self-contained HTML audit report (no scripts, opens offline)")
    .option("--mirror", "the https URL is a copy on a mirror (implied for s3:// and http://): see docs/AUDITOR.md")
    .option("--s3-endpoint <url>", "S3-compatible endpoint for s3:// mirrors (default: $AWS_ENDPOINT_URL_S3, AWS)")
    .addHelpText(
      "after",
      `
Exit codes: 0 valid · 1 invalid (a check failed) · 2 could not verify (network, RPC or data missing)
Examples:
  $ statetrail verify https://localhost:8443/instances/<hash>/protocol
  $ statetrail verify ./protocol.json --rpc http://127.0.0.1:8545
  $ statetrail verify acme.test --json
  $ statetrail verify acme.test --html report.html
  $ statetrail verify s3://bucket/prefix/instances/<hash>/protocol     (a mirror copy)`,
    )
    .action((target: string, options: VerifyCliOptions) =>
      run(async (globals) => {
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
    const [model, certificate, instance] = parts.map((p) => getAddress(p));
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
  return { trusted: trustedFromDeployment(deployment), ens: options.ensRegistry ?? deployment.ens.registry };
}

export async function verifyTarget(
  target: string,
  options: VerifyCliOptions,
  globals: GlobalOptions,
  onReport?: (report: VerificationReport) => void,
  recorder?: FetchRecorder,
): Promise<VerificationReport[]> {
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
    for (const input of await resolveTargets(target, options, provider)) {
      const report = await verifyProtocol({
        input,
        provider,
        trusted,
        ens: options.ens && ens ? ensReaderFromProvider(provider) : null,
        conformance: options.conformance !== false,
        fetcher: wrap(pinnedFetcher),
        mirror: mirrored ? { fetcher: wrap(storageFetcher({ endpoint: options.s3Endpoint })) } : undefined,
        onStep: (step) => globals.output.log(`  ${step.id} ${step.status}`),
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

export async function resolveTargets(
  target: string,
  options: VerifyCliOptions,
  provider: ChainProvider,
): Promise<Input[]> {
  if (/^https:\/\//i.test(target)) return [{ url: target }];
  if (isMirrorUrl(target)) return [{ url: target }]; // s3:// or http://: verified as a mirror copy
  if (fs.existsSync(target)) {
    const bytes = readFileLimited(target, DEFAULT_MAX_BYTES.protocol, "protocol file");
    return [{ protocol: decodeUtf8(bytes, target), name: target }];
  }
  if (/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(target)) return instancesOfEnsName(target, options, provider);
  throw new StatetrailError("INVALID_ARGUMENT", `"${target}" is not an https URL, an existing file or an ENS name`);
}

/** An issuer named in ENS: its `url` text record, then the instances its server lists. */
async function instancesOfEnsName(name: string, options: VerifyCliOptions, provider: ChainProvider): Promise<Input[]> {
  const resolver = await provider.getResolver(name).catch(() => null);
  const url = resolver ? await resolver.getText("url").catch(() => null) : null;
  if (!url) {
    throw new StatetrailError("VERIFY_INCOMPLETE", `ENS name ${name} has no "url" text record on this chain`, {
      hint: "check the name and --network / --ens-registry",
    });
  }
  const base = url.replace(/\/+$/, "");
  if (options.instance) return [{ url: `${base}/instances/${parseHexHash(options.instance, "--instance")}/protocol` }];
  const listing = await pinnedFetch(`${base}/instances`, { maxBytes: 8 * 1024 * 1024 });
  let rows: Array<{ instance_hash: string }>;
  try {
    rows = JSON.parse(decodeUtf8(listing.body, `${base}/instances`)) as Array<{ instance_hash: string }>;
  } catch (error) {
    throw new StatetrailError("FETCH_FAILED", `${base}/instances did not return JSON`, { cause: error });
  }
  if (!Array.isArray(rows)) throw new StatetrailError("FETCH_FAILED", `${base}/instances did not return a list`);
  // The listing is untrusted: only well-formed hashes become URLs to verify.
  return rows.map((row) => ({
    url: `${base}/instances/${parseHexHash(String(row?.instance_hash), "listed instance")}/protocol`,
  }));
}
