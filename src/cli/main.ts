import { Command, CommanderError } from "commander";
import { toStatetrailError } from "../errors";
import { AUDITOR_COMMANDS, createOutput, errorCodesHelp, EXIT, reportError, type CommandRole } from "./output";
import { type GlobalOptions } from "./context";
import { registerAccess } from "./commands/access";
import { registerDemo } from "./commands/demo";
import { registerIdentity } from "./commands/identity";
import { registerModel } from "./commands/model";
import { registerNode } from "./commands/node";
import { registerPublish } from "./commands/publish";
import { localEngineWarnings, registerRun } from "./commands/run";
import { registerServe } from "./commands/serve";
import { registerVerify } from "./commands/verify";
import { registerWatch } from "./commands/watch";

export type CommandAction = (globals: GlobalOptions) => Promise<number | void>;

/** Builds the program. Each command lives in its own file under ./commands. */
export function buildProgram(run: (action: CommandAction) => Promise<void>): Command {
  const program = new Command("statetrail")
    .description("Auditable cloud workflows: every state of a Step Functions execution registered on Ethereum.")
    .option("--home <dir>", "data directory (default: $STATETRAIL_HOME or ~/.statetrail)")
    .option("--network <name>", "network of deployments/<name>/ (localhost, sepolia, ...)", "localhost")
    .option("--rpc <url>", "Ethereum JSON-RPC endpoint (default: from the network)")
    .option("--json", "print results as JSON on stdout", false)
    .option("-q, --quiet", "no progress on stderr", false)
    .showHelpAfterError()
    .addHelpText(
      "after",
      `
Examples:
  $ statetrail demo                                   everything on the embedded defaults
  $ statetrail node                                   local chain + registries + ENS
  $ statetrail identity init --host localhost --ens-label acme
  $ statetrail model deploy examples/order-fulfilment.asl.json
  $ statetrail run examples/order-fulfilment.asl.json --input examples/order-fulfilment.input.json \\
      --handlers examples/order-fulfilment.handlers.js --skip-waits
  $ statetrail serve
  $ statetrail verify https://localhost:8443/instances/<hash>/protocol

(In a clone of the repository: npx statetrail …, or npm link once to put statetrail on PATH.)

Exit codes: 0 ok · 1 invalid (verify) · 2 could not verify · 64 usage · 65 bad data ·
            69 service unavailable · 70 internal · 75 temporary (retry) · 77 identity/permission
            verify and watch: only 0 valid · 1 invalid · 2 could not verify · 64 usage (verify --help)
Error codes:
${errorCodesHelp()}`,
    );
  const context = { program, run };
  registerNode(context);
  registerIdentity(context);
  registerModel(context);
  registerRun(context);
  registerServe(context);
  registerVerify(context);
  registerWatch(context);
  registerPublish(context);
  registerAccess(context);
  registerDemo(context);
  warnAtModelDeploy(program);
  return program;
}

/**
 * Issue 15, item 8: `model deploy` of a model the local engine refuses warns before it is registered. A hook, so
 * the warning comes with every `model deploy` (commands/model.ts is the natural home for the one call).
 */
function warnAtModelDeploy(program: Command): void {
  const deploy = program.commands.find((c) => c.name() === "model")?.commands.find((c) => c.name() === "deploy");
  deploy?.hook("preAction", async (command) => {
    const options = command.opts<{ engine?: string; maxModelBytes?: string }>();
    if (options.engine !== undefined && options.engine !== "local") return;
    let lines: string[];
    try {
      const { loadModel } = await import("../model/load");
      const model = await loadModel(command.args[0], { maxBytes: Number(options.maxModelBytes) || undefined });
      lines = localEngineWarnings(model);
    } catch {
      return; // the command itself reports a model it can't load
    }
    const { output } = globalsOf(program);
    for (const line of lines) output.log(line);
  });
}

export interface CommandContext {
  program: Command;
  /** Runs a command's action with the global options, turning a thrown error into its exit code. */
  run: (action: CommandAction) => Promise<void>;
}

export function globalsOf(program: Command): GlobalOptions {
  const options = program.opts<{ home?: string; network: string; rpc?: string; json: boolean; quiet: boolean }>();
  return { ...options, output: createOutput(options.json, options.quiet) };
}

export async function main(argv: string[]): Promise<number> {
  let exitCode: number = EXIT.OK;
  let program: Command | undefined = undefined;
  // Who runs the command decides its exit codes and the hints of chain errors (output.ts, CommandRole).
  let role: CommandRole = "issuer";
  const run = async (action: CommandAction) => {
    const globals = globalsOf(program!);
    try {
      const code = await action(globals);
      exitCode = code ?? EXIT.OK;
    } catch (error) {
      let coded = toStatetrailError(error);
      // context.ts loads ethers: only when an auditor's command failed, never for --help (lazy loading).
      if (role === "auditor") coded = (await import("./context")).forAuditor(coded, globals);
      exitCode = reportError(coded, globals.json, role);
    }
  };
  program = buildProgram(run);
  program.hook("preAction", (_program, command) => {
    role = AUDITOR_COMMANDS.has(command.name()) && command.parent === program ? "auditor" : "issuer";
  });
  // Every command, not only the program: commander's subcommands don't inherit an override set after they were
  // added, and a usage error in one (`statetrail model hash --bogus`) called process.exit(1) instead of 64.
  const override = (command: Command): void => {
    command.exitOverride();
    command.commands.forEach(override);
  };
  override(program);
  try {
    await program.parseAsync(argv);
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode === 0 ? EXIT.OK : EXIT.USAGE;
    }
    return reportError(error, false);
  }
  return exitCode;
}
