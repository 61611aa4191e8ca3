import { StatetrailError } from "../../errors";
import { type GlobalOptions } from "../context";
import { type CommandContext } from "../main";

/**
 * Who may read what `serve` publishes (docs/design/ACCESS.md): `statetrail grant`, `statetrail revoke-grant` and
 * `statetrail access private|open|status|public|unpublic`. The policy is access.json in the data directory
 * (src/store/access.ts); every change is appended to access.log, and a running server applies it at its next request.
 * Modules are loaded in the actions only (`statetrail --help` loads none of them).
 */

interface GrantCliOptions {
  until?: string;
  fields?: string;
  publicKey?: string;
}

const MODE_HINT = "statetrail access private: only public instances and grantees may read";

/** Resolves an ENS name on the configured chain (connects only when a name is given). */
function ensResolver(globals: GlobalOptions): (name: string) => Promise<string | null> {
  return async (name) => {
    const { openChain } = await import("../context");
    const { resolveAddress } = await import("../../chain/ens");
    const chain = await openChain(globals);
    try {
      return await resolveAddress(chain.provider, name);
    } finally {
      chain.provider.destroy();
    }
  };
}

export function registerAccess({ program, run }: CommandContext): void {
  program
    .command("grant <scope> <grantee>")
    .description("let an auditor (address or ENS name) read all, model:<hash>, instance:<hash> or <instance_hash>")
    .option(
      "--until <time>",
      "the grant ends then: an ISO time (2027-01-31T12:00:00Z) or a duration (90m, 12h, 30d, 2w)",
    )
    .option(
      "--fields <list>",
      "selective disclosure: only these fields' values (caught, context, input, outcome; comma-separated, " +
        "or all, or none); default all",
    )
    .option(
      "--public-key <hex>",
      "the grantee's secp256k1 public key (0x04… or compressed 0x02…/0x03…): publish encrypts mirror copies for it",
    )
    .addHelpText(
      "after",
      `
--fields: the grantee always sees each state's structure (name, type, iteration path, attempt, sequence, the
chain's times) and the digest of every field, but only the values of the fields listed:
  caught   the error a Catch caught          outcome  how a state (a Task attempt, the execution) ended
  input    a state's input, and the execution input
  context  the Context Object ($$) of entry 0, and the execution input: the Context Object holds it, so
           WARNING: granting context discloses the execution input too
Fields of several grants of one grantee that cover an instance add up. Granting the same scope to the same address
again replaces that grant's --fields and --until (without --fields: every field).
The grantee signs in to \`serve\` with Sign-In with Ethereum (verify --auditor-key-env); an ENS name is resolved
now, on --network, and the address it resolves to is what the grant names. Without access.json the policy is
created in mode private: from then on only public instances and grantees may read. A running server applies the
change at its next request.
Mirror copies of private instances (statetrail publish) are encrypted for grantees whose public key is known:
given here with --public-key (refused unless it is the grantee's address's key), or learnt by the server when the
grantee signs in.
Examples:
  $ statetrail grant instance:<instance_hash> 0x70997970C51812dC3A010C7d01b50e0dd17Dc79c --until 30d
  $ statetrail grant model:<model_hash> auditor.eth
  $ statetrail grant instance:<instance_hash> auditor.eth --fields outcome,caught
  $ statetrail grant all 0x70997970C51812dC3A010C7d01b50e0dd17Dc79c --public-key 0x04…`,
    )
    .action((scope: string, grantee: string, options: GrantCliOptions) =>
      run(async (globals) => {
        const { grantAccess, accessFile, describeFields, resolveGrantee } = await import("../../store/access");
        const { homeOf } = await import("../context");
        const home = homeOf(globals);
        let resolveName = ensResolver(globals);
        let keyOf: string | undefined;
        if (options.publicKey !== undefined) {
          // The key is checked against the grantee before anything is written (an ENS name resolved once).
          const { normalizePublicKey } = await import("../../store/access-keys");
          const { computeAddress } = await import("ethers");
          const key = normalizePublicKey(options.publicKey);
          const { address } = await resolveGrantee(grantee, resolveName);
          if (computeAddress(key).toLowerCase() !== address.toLowerCase()) {
            throw new StatetrailError(
              "INVALID_ARGUMENT",
              `--public-key is the key of ${computeAddress(key)}, not of the grantee ${address}`,
              { hint: "give the grantee's own public key, or leave --public-key out (it is learnt at its sign-in)" },
            );
          }
          resolveName = async () => address;
          keyOf = key;
        }
        const result = await grantAccess(home, {
          scope,
          grantee,
          until: options.until,
          fields: options.fields,
          resolveName,
        });
        if (keyOf !== undefined) {
          const { recordPublicKey } = await import("../../store/access-keys");
          recordPublicKey(home, keyOf, "grant", { address: result.grant.grantee });
        }
        const { grant } = result;
        const lines = [
          `${result.replaced ? "renewed" : "granted"} ${grant.id}: ${grant.grantee}` +
            `${grant.name ? ` (${grant.name})` : ""} may read ${grant.scope}, ${describeFields(grant.fields)}` +
            `${grant.until ? ` until ${grant.until}` : ""}`,
        ];
        if (grant.fields?.includes("context")) {
          lines.push("note: context discloses the execution input too (the Context Object holds it)");
        }
        if (result.created) {
          lines.push(`created ${accessFile(home)} in mode private: only public instances and grantees may read now`);
        }
        if (result.mode === "open") {
          lines.push(`note: the policy is in mode open, so anyone may read; the grant counts once: ${MODE_HINT}`);
        }
        if (keyOf !== undefined) {
          lines.push(
            grant.fields
              ? "its public key is recorded, but a grant limited to some fields gets no mirror copies (a mirror holds every field)"
              : "its public key is recorded: publish encrypts mirror copies for it",
          );
        }
        globals.output.result(
          {
            ...grant,
            fields: grant.fields ?? null,
            created_policy: result.created,
            mode: result.mode,
            public_key: keyOf ?? null,
          },
          lines.join("\n"),
        );
      }),
    );

  program
    .command("revoke-grant <grant>")
    .description("withdraw a grant (its id), or every grant of an address or ENS name")
    .option("--scope <scope>", "only the grants of this scope (all, model:<hash>, instance:<hash>)")
    .addHelpText(
      "after",
      `
A running server refuses the grantee's next request, even within a signed-in session, and ends its event streams.
Examples:
  $ statetrail revoke-grant g-1a2b3c4d
  $ statetrail revoke-grant 0x70997970C51812dC3A010C7d01b50e0dd17Dc79c --scope model:<model_hash>`,
    )
    .action((target: string, options: { scope?: string }) =>
      run(async (globals) => {
        const { revokeGrants } = await import("../../store/access");
        const { homeOf } = await import("../context");
        const removed = revokeGrants(homeOf(globals), target, options.scope);
        globals.output.result(
          { revoked: removed },
          removed.map((g) => `revoked ${g.id}: ${g.grantee}${g.name ? ` (${g.name})` : ""} ${g.scope}`).join("\n"),
        );
      }),
    );

  const access = program
    .command("access")
    .description("the access policy: private | open | status | public <instance> | unpublic <instance>")
    .addHelpText(
      "after",
      `
Without access.json the server is open (anyone reads everything, as before). Mode private: the data routes need a
Sign-In with Ethereum session holding a grant (statetrail grant), except for public instances.
Examples:
  $ statetrail access private
  $ statetrail access public <instance_hash>
  $ statetrail access status`,
    );

  for (const mode of ["private", "open"] as const) {
    access
      .command(mode)
      .description(
        mode === "private"
          ? "only public instances and grantees may read (signed in with Ethereum)"
          : "anyone may read everything (the grants are kept)",
      )
      .action(() =>
        run(async (globals) => {
          const { setMode, accessFile } = await import("../../store/access");
          const { homeOf } = await import("../context");
          const home = homeOf(globals);
          const { before } = setMode(home, mode);
          const text =
            before === mode
              ? `already in mode ${mode}`
              : `mode ${mode}${before === null ? ` (created ${accessFile(home)})` : ` (was ${before})`}`;
          globals.output.result({ mode, before }, text);
        }),
      );
  }

  access
    .command("status")
    .description("the mode, the public instances and the grants")
    .action(() =>
      run(async (globals) => {
        const { readPolicy, accessFile, isLive, describeFields } = await import("../../store/access");
        const { homeOf } = await import("../context");
        const home = homeOf(globals);
        const policy = readPolicy(home);
        const now = new Date();
        const grants = (policy?.grants ?? []).map((grant) => ({
          ...grant,
          fields: grant.fields ?? null,
          live: isLive(grant, now),
        }));
        const mode = policy?.mode ?? "open";
        const lines = [
          `mode ${mode}${policy === null ? " (no access.json: anyone may read everything)" : ""}`,
          `policy: ${accessFile(home)}`,
          `public instances:${policy?.public.length ? "" : " none"}`,
          ...(policy?.public ?? []).map((hash) => `  ${hash}`),
          `grants:${grants.length ? "" : " none"}`,
          ...grants.map(
            (g) =>
              `  ${g.id} ${g.grantee}${g.name ? ` (${g.name})` : ""} ${g.scope} ${describeFields(g.fields)}` +
              `${g.until ? ` until ${g.until}` : ""}${g.live ? "" : " (expired)"}`,
          ),
        ];
        globals.output.result(
          { mode, file: policy === null ? null : accessFile(home), public: policy?.public ?? [], grants },
          lines.join("\n"),
        );
      }),
    );

  for (const [name, isPublic] of [
    ["public", true],
    ["unpublic", false],
  ] as const) {
    access
      .command(`${name} <instance>`)
      .description(
        isPublic ? "anyone may read this instance, signed in or not" : "take an instance off the public list",
      )
      .action((argument: string) =>
        run(async (globals) => {
          const { setPublic } = await import("../../store/access");
          const { homeOf } = await import("../context");
          const result = setPublic(homeOf(globals), argument, isPublic);
          const { instance } = result;
          const text = result.changed
            ? `instance ${instance} is ${isPublic ? "public" : "no longer public"}` +
              (result.created ? " (access.json created in mode open)" : "") +
              (result.mode === "open" ? `\nnote: mode open, anyone may read everything; ${MODE_HINT}` : "")
            : `instance ${instance} was already ${isPublic ? "public" : "not public"}`;
          globals.output.result({ instance, public: isPublic, changed: result.changed, mode: result.mode }, text);
        }),
      );
  }
}
