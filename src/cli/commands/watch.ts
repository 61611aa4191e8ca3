import { StatetrailError } from "../../errors";
import { type WatchEvent } from "../../verify/watch";
import { type CommandContext } from "../main";
import { resolveTargets, trustedSetup, type VerifyCliOptions } from "./verify";

export function registerWatch({ program, run }: CommandContext): void {
  program
    .command("watch <target>")
    .description("follow a running instance (https URL or issuer ENS name) and report divergence at once")
    .option(
      "--registries <model,certificate,instance>",
      "trust these registry addresses instead of deployments/<network>",
    )
    .option("--chain-id <id>", "the chain the registries are on (with --registries)")
    .option("--ens-registry <address>", "the ENS registry to read (default: the network's)")
    .option("--instance <hash>", "the instance asked about; with an ENS name: the one to watch (default: the newest)")
    .option("--issuer <address>", "the issuer asked about: a protocol of any other issuer is invalid")
    .option("--no-ens", "skip the ENS check (V2)")
    .option("--grace <seconds>", "how long a state may be registered but unpublished (or the reverse)", "10")
    .option("--poll <seconds>", "how often the chain is read", "1")
    .option("--timeout <seconds>", "stop after this long even if the instance is still running")
    .addHelpText(
      "after",
      `
Reports (one line each, JSON lines with --json): verified, published, registered, divergence
(withheld | forged | revoked | invalid), terminated. Stops when the instance terminates.
Exit codes: 0 terminated and valid, no divergence · 1 divergence or invalid · 2 could not verify
Example:
  $ statetrail watch https://localhost:8443/instances/<hash>/protocol --json`,
    )
    .action((target: string, options: VerifyCliOptions & { grace: string; poll: string; timeout?: string }) =>
      run(async (globals) => {
        // Loaded here, not for --help (lazy loading: src/cli/lazy.ts).
        const { connect } = await import("../../chain/provider");
        const { ensReaderFromProvider, renderReport } = await import("../../verify");
        const { watchInstance } = await import("../../verify/watch");
        const { rpcUrlFor } = await import("../context");
        const { trusted, ens } = trustedSetup(globals, options);
        const provider = await connect({
          rpcUrl: rpcUrlFor(globals),
          expectedChainId: trusted.chainId,
          ensRegistry: options.ens ? ens : null,
        });
        try {
          const targets = await resolveTargets(target, options, provider, trusted);
          const first = targets[0];
          if (first && "refused" in first) {
            globals.output.result(first.refused, renderReport(first.refused));
            return first.refused.exit_code;
          }
          if (!first || !("url" in first.input)) {
            throw new StatetrailError("INVALID_ARGUMENT", "watch follows a protocol served over https, not a file");
          }
          const result = await watchInstance({
            url: first.input.url,
            expected: first.expected,
            provider,
            trusted,
            ens: options.ens && ens ? ensReaderFromProvider(provider) : null,
            optional: options.ens ? [] : ["V2"],
            graceMs: Number(options.grace) * 1000,
            pollMs: Number(options.poll) * 1000,
            timeoutMs: options.timeout === undefined ? undefined : Number(options.timeout) * 1000,
            onEvent: (event) => globals.output.event(event, describe(event)),
          });
          return result.exitCode;
        } finally {
          provider.destroy();
        }
      }),
    );
}

function describe(event: WatchEvent): string {
  const at = new Date().toISOString();
  switch (event.type) {
    case "verified":
      return `${at} verified   ${event.verdict} (${event.states} states)${event.failed.length ? ` failed: ${event.failed.join(", ")}` : ""}`;
    case "published":
      return `${at} published  #${event.seq} ${event.state_name} ${event.state_hash}`;
    case "registered":
      return `${at} registered #${event.seq} ${event.state_hash} in block ${event.block_nr}`;
    case "divergence":
      return `${at} DIVERGENCE ${event.kind}: ${event.detail}`;
    case "terminated":
      return `${at} terminated ${event.status}, final verdict ${event.verdict}`;
    case "error":
      return `${at} error      ${event.code}: ${event.message}`;
  }
}
