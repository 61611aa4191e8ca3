import { StatetrailError } from "../../errors";
import { type ChainProvider } from "../../chain/provider";
import { type VerificationReport } from "../../verify/types";
import { type WatchChain, type WatchEvent } from "../../verify/watch";
import { type CommandContext } from "../main";
import { AUDITOR_HELP, AUDITOR_OPTION_HELP, auditorKeySource } from "../auditor";
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
    .option("--auditor-key-env <NAME>", AUDITOR_OPTION_HELP.keyEnv)
    .option("--auditor-keystore <file>", AUDITOR_OPTION_HELP.keystore)
    .addHelpText(
      "after",
      `
Reports (one line each, JSON lines with --json): first what it watches (the protocol's head as served:
instance, issuer, model, states so far, status), then every state from the first in seq order, published and
registered, whether the instance is running or has already ended (read page by page), then live ones (the head is
read again every --poll and on each SSE event, only new entries are read); verified (the verdict; unless
valid, each failing step with its code, and what to do), divergence (withheld | forged | revoked | invalid),
terminated (the final verdict). Stops when the instance terminates.

${AUDITOR_HELP}
Exit codes: 0 terminated and valid, no divergence · 1 divergence or invalid · 2 could not verify · 3 valid as
disclosed (some data not disclosed to you: the report says what)
Example:
  $ statetrail watch https://localhost:8443/instances/<hash>/protocol --json`,
    )
    .action((target: string, options: VerifyCliOptions & { grace: string; poll: string; timeout?: string }) =>
      run(async (globals) => {
        // Loaded here, not for --help (lazy loading: src/lazy.ts). watch.ts itself is light: ethers and the
        // verifier are loaded by `connect`, while the protocol's head is fetched (the first line waits for no more).
        const auditor = auditorKeySource(options); // a usage error before anything is read
        const { watchInstance } = await import("../../verify/watch");
        const { SignInSession } = await import("../../verify/auth");
        // One sign-in per server for the watch (head, pages, events, verifications and an ENS name's listing), on the
        // trusted chain: worked out only when a server first asks to sign in.
        const auth = new SignInSession({ auditor, chainId: () => trustedSetup(globals, options).trusted.chainId });
        let provider: ChainProvider | undefined;
        const connectChain = async (): Promise<WatchChain & { url: string }> => {
          const { connect } = await import("../../chain/provider");
          const { ensReaderFromProvider } = await import("../../verify");
          const { rpcUrlFor } = await import("../rpc-endpoint");
          const { trusted, ens } = trustedSetup(globals, options);
          provider = await connect({
            rpcUrl: rpcUrlFor(globals),
            expectedChainId: trusted.chainId,
            ensRegistry: options.ens ? ens : null,
          });
          const targets = await resolveTargets(target, options, provider, trusted, { auth });
          const first = targets[0];
          if (first && "refused" in first) throw new Refused(first.refused);
          if (!first || !("url" in first.input) || !/^https:\/\//i.test(first.input.url)) {
            throw new StatetrailError("INVALID_ARGUMENT", "watch follows a protocol served over https, not a file");
          }
          return {
            url: first.input.url,
            provider,
            trusted,
            ens: options.ens && ens ? ensReaderFromProvider(provider) : null,
            expected: first.expected,
          };
        };
        const settings = {
          optional: options.ens ? [] : (["V2"] as const),
          graceMs: Number(options.grace) * 1000,
          pollMs: Number(options.poll) * 1000,
          timeoutMs: options.timeout === undefined ? undefined : Number(options.timeout) * 1000,
          onEvent: (event: WatchEvent) => globals.output.event(event, describe(event)),
          auditor: auth,
        };
        try {
          // An https URL is fetched at once; an ENS name first needs the chain to say which URL it serves.
          const result = /^https:\/\//i.test(target)
            ? await watchInstance({ url: target, connect: connectChain, ...settings })
            : await connectChain().then((chain) => watchInstance({ ...chain, ...settings }));
          return result.exitCode;
        } catch (error) {
          if (!(error instanceof Refused)) throw error;
          const { renderReport } = await import("../../verify");
          globals.output.result(error.report, renderReport(error.report));
          return error.report.exit_code;
        } finally {
          provider?.destroy();
        }
      }),
    );
}

/** What the target resolved to is refused before anything is watched (an ENS name without a matching instance). */
class Refused extends Error {
  constructor(readonly report: VerificationReport) {
    super("refused");
  }
}

function describe(event: WatchEvent): string {
  const at = new Date().toISOString();
  switch (event.type) {
    case "watching":
      return (
        `${at} watching   instance ${event.instance_hash} of issuer ${event.issuer} (model ${event.model_hash}), ` +
        `${event.states} state${event.states === 1 ? "" : "s"} so far, status ${event.status} (as served; verifying)`
      );
    case "verified": {
      const why = event.problems.map(
        (p) => `\n${" ".repeat(at.length)}   ${p.step} ${p.code ? `${p.code}: ` : ""}${p.detail}`,
      );
      const hint = event.hint ? `\n${" ".repeat(at.length)}   what to do: ${event.hint}` : "";
      return `${at} verified   ${event.verdict} (${event.states} states)${event.failed.length ? ` failed: ${event.failed.join(", ")}` : ""}${why.join("")}${hint}`;
    }
    case "published":
      return `${at} published  #${event.seq} ${event.state_name} ${event.state_hash}`;
    case "registered":
      return `${at} registered #${event.seq} ${event.state_hash} in block ${event.block_nr}`;
    case "divergence":
      return `${at} DIVERGENCE ${event.kind}: ${event.detail}`;
    case "terminated":
      return `${at} terminated ${event.status}, final verdict ${event.verdict}`;
    case "error":
      return `${at} error      ${event.code}: ${event.message}${event.hint ? `\n${" ".repeat(at.length)}   what to do: ${event.hint}` : ""}`;
  }
}
