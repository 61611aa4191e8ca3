import { StatetrailError } from "../../errors";
import { readIdentity } from "../../identity/record";
import { parseHexHash } from "../../chain/hash";
import { type CommandContext } from "../main";
import { lazy } from "../../lazy";

// Loaded when used (lazy.ts): not for --help.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const certificates = lazy(() => require("../../identity/certificate") as typeof import("../../identity/certificate"));

interface InitOptions {
  host: string;
  port: string;
  ensLabel?: string;
  ensName?: string;
  cert?: string;
  key?: string;
  privateKeyEnv?: string;
  validityDays: string;
  force: boolean;
}

export function registerIdentity({ program, run }: CommandContext): void {
  const identity = program.command("identity").description("the issuer's key, TLS certificate and ENS name");

  identity
    .command("init")
    .description("create the keystore and certificate, register the fingerprint, set the ENS records")
    .option("--host <host>", "host name of the HTTPS server", "localhost")
    .option("--port <port>", "port of the HTTPS server", "8443")
    .option("--ens-label <label>", "local chain: claim <label>.test")
    .option("--ens-name <name>", "public chains: an ENS name you already own")
    .option("--cert <file>", "use your own certificate (PEM) instead of a generated one")
    .option("--key <file>", "the certificate's private key (PEM)")
    .option("--private-key-env <var>", "import the issuer key from this environment variable")
    .option("--validity-days <days>", "validity of a generated certificate", "365")
    .option("--force", "replace an existing identity.json (the keystore is kept)", false)
    .addHelpText(
      "after",
      "\nExample:\n  $ STATETRAIL_PASSWORD=… statetrail identity init --host localhost --port 8443 --ens-label acme",
    )
    .action((options: InitOptions) =>
      run(async (globals) => {
        const { Wallet } = await import("ethers");
        const { devPrivateKey } = await import("../../chain/keys");
        const { initIdentity } = await import("../../identity/identity");
        const { homeOf, openChain } = await import("../context");
        // Read the key before anything else: an unset variable must not fall back to making a new, unfunded key.
        const privateKey = options.privateKeyEnv ? privateKeyFromEnvironment(options.privateKeyEnv) : undefined;
        const home = homeOf(globals);
        const chain = await openChain(globals);
        try {
          const local = chain.deployment.chainId === 31337;
          const result = await initIdentity({
            home,
            provider: chain.provider,
            network: globals.network,
            chainId: chain.deployment.chainId,
            registries: chain.registries,
            ens: chain.deployment.ens,
            host: options.host,
            port: Number(options.port),
            ensLabel: options.ensLabel,
            ensName: options.ensName,
            ...pemOptions(options),
            privateKey,
            validityDays: Number(options.validityDays),
            funder: local ? new Wallet(devPrivateKey(0), chain.provider) : undefined,
            force: options.force,
            log: globals.output.log,
          });
          for (const warning of result.warnings) globals.output.log(`warning: ${warning}`);
          const r = result.record;
          globals.output.result(
            result.record,
            [
              `issuer       ${r.address}`,
              `ENS name     ${r.ens_name ?? "(none)"}`,
              `server       ${r.url}`,
              `certificate  ${r.certificate_fingerprint}`,
              `data         ${home.root}`,
            ].join("\n"),
          );
        } finally {
          chain.provider.destroy();
        }
      }),
    );

  identity
    .command("show")
    .description("print the identity and its live on-chain status (certificate, ENS)")
    .action(() =>
      run(async (globals) => {
        const { showIdentity } = await import("../../identity/identity");
        const { homeOf, openChain } = await import("../context");
        const home = homeOf(globals);
        const chain = await openChain(globals);
        try {
          const view = await showIdentity(home, chain.provider, {
            certificateRegistry: chain.registries.certificate,
            ensRegistry: chain.deployment.ens.registry,
          });
          const r = view.record;
          const status = view.certificate.status;
          const lines = [
            `issuer       ${r.address} (chain ${r.chain_id}, ${r.network})`,
            `ENS name     ${r.ens_name ?? "(none)"}${view.ens ? (view.ens.consistent ? " ✓ forward, reverse, url" : " ✗") : ""}`,
            `server       ${r.url}`,
            `certificate  ${r.certificate_fingerprint} ${status ? (status.valid ? "✓ registered, valid" : "✗ not valid") : ""}`,
            ...view.previousCertificates.map((p) => `  previous   ${p.fingerprint}${p.revoked ? " (revoked)" : ""}`),
            ...view.problems.map((p) => `problem: ${p}`),
          ];
          globals.output.result(view, lines.join("\n"));
          return view.problems.length === 0 ? 0 : 1;
        } finally {
          chain.provider.destroy();
        }
      }),
    );

  identity
    .command("rotate")
    .description("register a new certificate (generated, or --cert/--key) and make it the server's")
    .option("--cert <file>", "the new certificate (PEM)")
    .option("--key <file>", "its private key (PEM)")
    .option("--validity-days <days>", "validity of a generated certificate", "365")
    .option("--revoke-previous", "revoke the previous certificate once the new one is in place", false)
    .action((options: { cert?: string; key?: string; validityDays: string; revokePrevious: boolean }) =>
      run(async (globals) => {
        const { fundFromDevAccount } = await import("../../chain/local");
        const { getRegistries } = await import("../../chain/contracts");
        const { loadKeystore } = await import("../../identity/keystore");
        const { rotateCertificate } = await import("../../identity/registration");
        const { homeOf, openChain } = await import("../context");
        const home = homeOf(globals);
        const chain = await openChain(globals);
        try {
          const signer = (await loadKeystore(home)).connect(chain.provider);
          // As init does: on the local chain the key is funded from a development account (a restarted chain
          // left it empty); elsewhere the balance is checked first, so the error names the address to fund.
          await fundFromDevAccount(chain.provider, signer.address);
          if ((await chain.provider.getBalance(signer.address)) === 0n) {
            throw new StatetrailError(
              "INSUFFICIENT_FUNDS",
              `the issuer ${signer.address} has no ETH to pay for the rotation`,
              {
                hint: `send some ETH on chain ${chain.deployment.chainId} to ${signer.address}, then run identity rotate again`,
              },
            );
          }
          const result = await rotateCertificate({
            home,
            registry: getRegistries(chain.deployment, signer).certificate,
            signer,
            ...pemOptions(options),
            validityDays: Number(options.validityDays),
            revokePrevious: options.revokePrevious,
          });
          globals.output.result(
            {
              fingerprint: result.record.certificate_fingerprint,
              previous: result.previous,
              revoked: !!result.revocation,
            },
            `new certificate ${result.record.certificate_fingerprint}\nprevious ${result.previous}${result.revocation ? " (revoked)" : ""}\nrestart \`statetrail serve\` to serve it`,
          );
        } finally {
          chain.provider.destroy();
        }
      }),
    );

  identity
    .command("revoke [fingerprint]")
    .description("revoke a certificate of this identity (default: the current one)")
    .action((fingerprint: string | undefined) =>
      run(async (globals) => {
        const { getRegistries } = await import("../../chain/contracts");
        const { loadKeystore } = await import("../../identity/keystore");
        const { revokeIdentityCertificate } = await import("../../identity/registration");
        const { homeOf, openChain } = await import("../context");
        const home = homeOf(globals);
        const chain = await openChain(globals);
        try {
          const signer = (await loadKeystore(home)).connect(chain.provider);
          const target = parseHexHash(fingerprint ?? readIdentity(home).certificate_fingerprint, "fingerprint");
          const result = await revokeIdentityCertificate({
            home,
            registry: getRegistries(chain.deployment, signer).certificate,
            signer,
            fingerprint: target,
          });
          globals.output.result(
            { fingerprint: target, revoked_at: result.revocation.revokedAt },
            `revoked ${target} at ${result.revocation.revokedAt}`,
          );
        } finally {
          chain.provider.destroy();
        }
      }),
    );
}

/** `--cert` and `--key` come together; both are read and checked (key matches, not expired) up front. */
function pemOptions(options: { cert?: string; key?: string }): { certPem?: string; keyPem?: string } {
  if (!options.cert && !options.key) return {};
  if (!options.cert || !options.key) {
    throw new StatetrailError("INVALID_ARGUMENT", "--cert and --key must be given together");
  }
  const material = certificates.readCertificateFiles(options.cert, options.key);
  return { certPem: material.certPem, keyPem: material.keyPem };
}

/**
 * The key in environment variable `name` (`--private-key-env`). KEY_MISSING naming the variable when it is unset
 * or empty: statetrail reads only the environment, not Hardhat's configuration variables.
 */
export function privateKeyFromEnvironment(name: string, env: NodeJS.ProcessEnv = process.env): string {
  const value = env[name]?.trim();
  if (!value) {
    throw new StatetrailError("KEY_MISSING", `--private-key-env ${name}: the environment variable ${name} is not set`, {
      hint:
        `export ${name}=0x… (64 hex characters) in this shell; a key stored with \`npx hardhat vars set ${name}\` ` +
        `is not read by statetrail: export ${name}="$(npx hardhat vars get ${name})". Leave --private-key-env out ` +
        "to make a new key instead",
    });
  }
  return value;
}
