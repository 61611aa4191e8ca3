import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { randomBytes } from "node:crypto";
import { Home } from "../../store/home";
import { engineFromOptions, readInputArgument } from "./run";
import { EXIT } from "../output";
import { type CommandContext } from "../main";
import { PACKAGE_ROOT } from "../../package-root";

const EXAMPLES = path.join(PACKAGE_ROOT, "examples");

interface DemoOptions {
  model: string;
  input: string;
  handlers: string;
  chainPort: string;
  serverPort?: string;
  keepServing: boolean;
}

export function registerDemo({ program, run }: CommandContext): void {
  program
    .command("demo")
    .description("everything on the embedded defaults: chain, identity, model, tracked run, HTTPS, verification")
    .option("--model <file>", "the model to run", path.join(EXAMPLES, "order-fulfilment.asl.json"))
    .option("--input <json|file>", "its input", path.join(EXAMPLES, "order-fulfilment.input.json"))
    .option("--handlers <module>", "its Task handlers", path.join(EXAMPLES, "order-fulfilment.handlers.js"))
    .option("--chain-port <port>", "JSON-RPC port of the local chain (reused when one runs there)", "8545")
    .option("--server-port <port>", "HTTPS port (default: a free one)")
    .option("--keep-serving", "leave the chain and the HTTPS server running until Ctrl-C", false)
    .addHelpText(
      "after",
      "\nWithout --home the data directory is a temporary one, removed at the end.\n" +
        "Examples:\n  $ npm run demo\n  $ npx statetrail demo --keep-serving",
    )
    .action((options: DemoOptions) =>
      run(async (globals) => {
        // Loaded here, not for --help (lazy loading: src/cli/lazy.ts).
        const { Wallet } = await import("ethers");
        const { ensureLocalChain } = await import("../../chain/local");
        const { devPrivateKey } = await import("../../chain/keys");
        const { freePort } = await import("../../chain/node");
        const { initIdentity } = await import("../../identity/identity");
        const { loadModel } = await import("../../model/load");
        const { startServer } = await import("../../server");
        const { Tracker } = await import("../../tracker/tracker");
        const { ensReaderFromProvider, renderReport, trustedFromDeployment, verifyProtocol } =
          await import("../../verify");
        const { registriesOf } = await import("../context");
        const log = globals.output.log;
        const started = Date.now();
        const step = (n: number, text: string) => log(`\n[${n}/7] ${text}`);

        step(1, "local chain: hardhat node, registries, ENS");
        const chain = await ensureLocalChain({ port: Number(options.chainPort), log });
        // Without --home: a temporary data directory (keystore included), removed when the demo ends.
        const temporary = globals.home === undefined;
        const home = new Home(globals.home ?? fs.mkdtempSync(path.join(os.tmpdir(), "statetrail-demo-"))).ensure();
        // The demo's keystore gets a random password for this run unless the user set one.
        process.env.STATETRAIL_PASSWORD ??= randomBytes(16).toString("hex");
        let server: Awaited<ReturnType<typeof startServer>> | undefined;
        try {
          step(
            2,
            `identity: key, TLS certificate, on-chain registration, ENS (data in ${home.root}` +
              `${temporary ? ", removed at the end" : ""})`,
          );
          const port = options.serverPort ? Number(options.serverPort) : await freePort();
          const identity = await initIdentity({
            home,
            provider: chain.provider,
            network: chain.deployment.network,
            chainId: chain.deployment.chainId,
            registries: registriesOf(chain.deployment),
            ens: chain.deployment.ens,
            host: "localhost",
            port,
            funder: new Wallet(devPrivateKey(0), chain.provider),
            force: true,
            log,
          });
          log(`  issuer ${identity.record.address} = ${identity.record.ens_name}`);
          log(`  certificate ${identity.record.certificate_fingerprint}`);

          step(3, "HTTPS server with the registered certificate");
          server = await startServer({
            home,
            port,
            wellKnown: { registries: registriesOf(chain.deployment) },
            // The timeline page at /, verifying with the demo's chain connection.
            timeline: {
              verify: {
                provider: chain.provider,
                trusted: trustedFromDeployment(chain.deployment),
                ens: ensReaderFromProvider(chain.provider),
              },
            },
            log,
          });
          log(`  ${server.url}`);

          step(4, `model: ${path.relative(process.cwd(), options.model)}`);
          const model = await loadModel(options.model);
          const tracker = new Tracker({
            home,
            signer: identity.signer,
            identity: identity.record,
            registries: registriesOf(chain.deployment),
            chainId: chain.deployment.chainId,
            engine: engineFromOptions({ engine: "local", handlers: options.handlers, skipWaits: true }),
            onProtocol: server.notify,
            log,
          });
          const deployed = await tracker.deployModel(model);
          log(`  model_hash ${model.hash} ${deployed.registered ? "registered" : "(already registered)"}`);

          step(5, "tracked run on the local engine: every state registered on-chain");
          const protocol = await tracker.run(model, readInputArgument(options.input));
          const url = `${identity.record.url}/instances/${protocol.instance_hash}/protocol`;
          // A demo run is short: its entries are listed from the pages (up to the first 100).
          for (const entry of home.readEntries(protocol, 0, 100)) {
            log(
              `  #${String(entry.seq).padStart(2)} ${entry.state_type.padEnd(18)} ${entry.state_name.padEnd(24)} block ${entry.block_nr}`,
            );
          }
          log(`  ${protocol.status}: ${protocol.entries} states`);

          step(
            6,
            "verification, as an auditor would: TLS, ENS, certificate, model, instance, states, completeness, signature",
          );
          const report = await verifyProtocol({
            input: { url },
            provider: chain.provider,
            trusted: trustedFromDeployment(chain.deployment),
            ens: ensReaderFromProvider(chain.provider),
          });
          log(renderReport(report));

          step(7, "confidential: the server made private, one auditor granted the Task outcomes only");
          const confidential = await demoConfidential({
            home,
            instance: protocol.instance_hash,
            url,
            log,
            verify: (auditor) =>
              verifyProtocol({
                input: { url },
                provider: chain.provider,
                trusted: trustedFromDeployment(chain.deployment),
                ens: ensReaderFromProvider(chain.provider),
                auditor,
              }),
          });
          globals.output.result(
            {
              protocol_url: url,
              instance_hash: protocol.instance_hash,
              status: protocol.status,
              states: protocol.entries,
              verdict: report.verdict,
              confidential,
              home: temporary ? null : home.root,
              seconds: (Date.now() - started) / 1000,
            },
            `\nprotocol: ${url}\nverdict: ${report.verdict} (${((Date.now() - started) / 1000).toFixed(1)} s)`,
          );
          if (options.keepServing) {
            log(`\nserving ${server.url} and the chain at ${chain.node.url}; press Ctrl-C to stop`);
            log(`  timeline: ${server.url}/#/instances/${protocol.instance_hash}`);
            log(`  try: npx statetrail verify ${url}`);
            await new Promise<void>((resolve) => {
              process.once("SIGINT", resolve);
              process.once("SIGTERM", resolve);
            });
          }
          if (report.exit_code !== 0) return report.exit_code;
          // The confidential part is shown to work, or the demo fails: anonymous refused, the auditor's partial view
          // verified as far as disclosed (never plain valid).
          const shown = confidential.anonymous === "could-not-verify" && confidential.auditor === "valid-as-disclosed";
          return shown ? EXIT.OK : EXIT.INTERNAL;
        } finally {
          await server?.close();
          chain.provider.destroy();
          if (chain.started) await chain.node.stop();
          if (temporary) fs.rmSync(home.root, { recursive: true, force: true });
        }
      }),
    );
}

/**
 * The demo's last step: `statetrail access private`, then `statetrail grant instance:<h> <auditor> --fields outcome`
 * for a fresh auditor key, then the instance verified anonymously (refused: AUTH_REQUIRED, could not verify) and by
 * the auditor, who signs in and sees every state's structure and Task outcomes but not the inputs: valid as
 * disclosed (docs/AUDITOR.md). The server re-reads the policy at every request: no restart.
 */
async function demoConfidential(options: {
  home: Home;
  instance: string;
  url: string;
  log: (line: string) => void;
  verify: (auditor: import("ethers").Signer | null) => Promise<import("../../verify").VerificationReport>;
}): Promise<{ auditor_address: string; anonymous: string; auditor: string }> {
  const { Wallet } = await import("ethers");
  const { grantAccess, setMode } = await import("../../store/access");
  const { renderReport } = await import("../../verify");
  const { home, instance, log } = options;
  setMode(home, "private");
  log("  $ statetrail access private");
  const auditor = Wallet.createRandom();
  const { grant } = await grantAccess(home, {
    scope: `instance:${instance}`,
    grantee: auditor.address,
    fields: "outcome",
  });
  log(
    `  $ statetrail grant instance:${instance.slice(0, 12)}… ${auditor.address} --fields outcome   (grant ${grant.id})`,
  );
  const anonymous = await options.verify(null);
  const refused = anonymous.steps.find((step) => step.code === "AUTH_REQUIRED");
  log(`  anonymous: ${anonymous.verdict}${refused ? ` (${refused.code}: the server answers 401, no data)` : ""}`);
  const granted = await options.verify(auditor);
  log(`  auditor ${auditor.address}, signed in with Ethereum (EIP-4361):`);
  log(renderReport(granted).replace(/^/gm, "    "));
  // Back to open, so that what the demo printed (and `--keep-serving`'s `statetrail verify <url>`) reads as before.
  setMode(home, "open");
  log("  $ statetrail access open   (the demo's server is open again: anyone may read the instance above)");
  return { auditor_address: auditor.address, anonymous: anonymous.verdict, auditor: granted.verdict };
}
