import { isStatetrailError, StatetrailError } from "../../errors";
import { type IdentityRecord } from "../../identity/record";
import { type Home } from "../../store/home";
import { type GlobalOptions } from "../context";
import { type CommandContext } from "../main";
import { lazy } from "../../lazy";

// Loaded when used (lazy.ts): not for --help.
// eslint-disable-next-line @typescript-eslint/no-require-imports
const context = lazy(() => require("../context") as typeof import("../context"));
// eslint-disable-next-line @typescript-eslint/no-require-imports
const access = lazy(() => require("../../store/access") as typeof import("../../store/access"));

interface ServeOptions {
  host?: string;
  port?: string;
  portForwarded: boolean;
  timeline: boolean;
}

export function registerServe({ program, run }: CommandContext): void {
  program
    .command("serve")
    .description("publish models, protocols, inputs and states over HTTPS with the registered certificate")
    .option("--host <host>", "interface to listen on (default: from the identity)")
    .option("--port <port>", "port (default: the port of the identity's registered URL)")
    .option(
      "--port-forwarded",
      "--port differs from the registered URL's port on purpose: a forward (NAT, container) connects them",
      false,
    )
    .option("--no-timeline", "no timeline page at / (only the JSON API)")
    .addHelpText(
      "after",
      "\nStays in the foreground until Ctrl-C. The timeline page is at https://<host>:<port>/.\n" +
        "Auditors reach the server at the URL of the identity (its ENS `url` record), so it listens on that URL's\n" +
        "port; another --port is refused unless --port-forwarded says a forward connects the two.\n" +
        "Example:\n  $ statetrail serve",
    )
    .action((options: ServeOptions) =>
      run(async (globals) => {
        const { startServer } = await import("../../server");
        const { ensReaderFromProvider, trustedFromDeployment } = await import("../../verify");
        const { openChain, homeOf, readIdentityLoosely } = await import("../context");
        const home = homeOf(globals);
        const identity = readIdentityLoosely(home);
        const port = options.port === undefined ? undefined : parsePort(options.port);
        if (identity && port !== undefined && port !== identity.port && !options.portForwarded) {
          throw portMismatch(globals, identity, port);
        }
        const chain = await openChain(globals);
        // The timeline page's verification runs with this connection; without the page it is not needed.
        if (!options.timeline) chain.provider.destroy();
        let server: Awaited<ReturnType<typeof startServer>>;
        try {
          server = await startServer({
            home,
            host: options.host,
            port,
            wellKnown: { registries: chain.registries },
            timeline: options.timeline && {
              verify: {
                provider: chain.provider,
                trusted: trustedFromDeployment(chain.deployment),
                ens: ensReaderFromProvider(chain.provider),
              },
            },
            log: globals.output.log,
          });
        } catch (error) {
          if (options.timeline) chain.provider.destroy();
          throw withPortInUseHint(error, globals, identity, port ?? identity?.port);
        }
        globals.output.result({ url: server.url, fingerprint: server.fingerprint }, `serving ${server.url}`);
        globals.output.log(accessNotice(home));
        await new Promise<void>((resolve) => {
          process.once("SIGINT", resolve);
          process.once("SIGTERM", resolve);
        });
        await server.close();
        if (options.timeline) chain.provider.destroy();
      }),
    );
}

function parsePort(value: string): number {
  const port = Number(value);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new StatetrailError("INVALID_ARGUMENT", `--port must be a port number (0-65535), not "${value}"`);
  }
  return port;
}

/**
 * Issue 15: the identity's URL (in its ENS `url` record, and in every protocol it publishes) names a port; a server
 * elsewhere can't be reached there, and every verification would fail.
 */
function portMismatch(globals: GlobalOptions, identity: IdentityRecord, port: number): StatetrailError {
  return new StatetrailError(
    "INVALID_ARGUMENT",
    `--port ${port} is not where the registered URL points: auditors fetch from ${identity.url}` +
      `${identity.ens_name ? ` (the \`url\` record of ${identity.ens_name})` : ""}, port ${identity.port}, ` +
      `so every verification of what this server publishes would fail`,
    {
      hint:
        `serve on the registered port (leave out --port), or first change the registration: ` +
        `${context.identityInitCommand(globals, identity, { port, force: true })}` +
        ` (protocols published before name the old URL)`,
    },
  );
}

/** EADDRINUSE on the registered port: the way out is to free it, or to change the registration, never --port alone. */
function withPortInUseHint(
  error: unknown,
  globals: GlobalOptions,
  identity: IdentityRecord | null,
  port: number | undefined,
): unknown {
  if (!isStatetrailError(error, "INVALID_ARGUMENT") || !/EADDRINUSE/.test(error.message)) return error;
  if (!identity || port !== identity.port) return error;
  return new StatetrailError("INVALID_ARGUMENT", error.message, {
    cause: error,
    hint:
      `another process listens on port ${port}, the port of the registered URL ${identity.url} (another ` +
      `\`statetrail serve\`?): stop it. To serve on another port, change the registration first: ` +
      context.identityInitCommand(globals, identity, { port: "<new port>", force: true }),
  });
}

/** ACCESS.md: what `serve` says at start about who may read (a warning when anyone may, or the policy is broken). */
export function accessNotice(home: Home): string {
  const { readPolicy, accessFile } = access;
  try {
    const policy = readPolicy(home);
    if (policy === null || policy.mode === "open") {
      return (
        `warning: access mode open${policy === null ? " (no access.json)" : ""}: anyone may read every model, ` +
        `input, state and protocol served here. To restrict: statetrail access private, then statetrail grant ` +
        `<scope> <auditor address>`
      );
    }
    return (
      `access mode private: ${policy.public.length} public instance(s), ${policy.grants.length} grant(s) ` +
      `(statetrail access status)`
    );
  } catch (error) {
    return `error: ${(error as Error).message}. Every data route answers 503 until ${accessFile(home)} is fixed`;
  }
}
