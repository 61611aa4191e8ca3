import { StatetrailError, isStatetrailError } from "../../errors";
import { decodeUtf8, describeIssues, safeParseBounded } from "../../protocol/limits";
import { encodePages, headOf } from "../../protocol/pages";
import {
  checkVersion,
  parseHead,
  protocolHeadSchema,
  wholeProtocolSchema,
  type InstanceProtocol,
  type ProtocolHead,
} from "../../protocol/schema";
import { parseStrictJson } from "../../protocol/strict-json";
import { contentUrls } from "../../protocol/urls";
import { type PageSource, type VerifyContext } from "../context";
import { originOf } from "../fetcher";
import { Findings, iso, sameAddress, short, type StepOutcome } from "../findings";
import { type ExpectedSubject, type ServerCertificate } from "../types";

/** Where the issuer's server publishes an instance's protocol (DESIGN.md, "Instance protocol"). */
export function protocolUrl(origin: string, instanceHash: string): string {
  return `${origin}/instances/${instanceHash}/protocol`;
}

/**
 * V1: obtain the protocol and the issuer server's certificate. A URL input is fetched over TLS and must be
 * served from the issuer's own origin; a file or object input is schema-checked, then the issuer's server
 * is asked for the same instance's protocol so that its certificate is captured all the same.
 * The protocol must be about what was asked (`expected`, and the instance a URL names): a genuine protocol
 * of another instance or issuer, served where the asked one should be, fails (SUBJECT_MISMATCH).
 * Fills `context.protocol` (the head), `context.pages`, `context.origin` and `context.certificate`. Pages are
 * read from the issuer's page URLs (through the same pinned session as every other issuer URL), or, for a whole
 * protocol given as a file or object, encoded from memory and read through the same page decoder.
 */
export async function readProtocol(context: VerifyContext, expected: ExpectedSubject = {}): Promise<StepOutcome> {
  const findings = new Findings();
  const { input } = context;
  if ("url" in input) {
    const url = checkedHttps(input.url, findings, "protocol URL");
    if (!url) return findings.outcome("");
    const named = instanceNamedBy(url.href);
    if (!named && !expected.instanceHash) {
      findings.fail(
        `${url.href} names no instance, so nothing binds the protocol it serves to a question`,
        "SUBJECT_MISMATCH",
      );
    }
    let bytes: Buffer;
    let certificate: ServerCertificate | null;
    try {
      ({ bytes, certificate } = await context.web.get(url.href, context.settings.maxBytes.protocol));
    } catch (error) {
      findings.error(error, `fetching ${url.href}`);
      return findings.outcome("");
    }
    const protocol = parseServedHead(bytes, findings, url.href);
    if (!protocol) return findings.outcome("");
    checkSubject(protocol, { ...expected, urlInstance: named }, findings);
    context.protocol = protocol;
    context.origin = url.origin;
    const issuerOrigin = issuerOriginOf(protocol, findings);
    context.web.restrictTo(issuerOrigin ?? url.origin);
    context.pages = urlPages(context, issuerOrigin ?? url.origin, protocol.instance_hash);
    checkContentUrls(protocol, findings);
    if (!certificate) {
      findings.fail(`${url.href} was not served over TLS: no server certificate`, "TLS_FAILED");
      return findings.outcome("");
    }
    context.certificate = certificate;
    if (issuerOrigin && issuerOrigin !== url.origin) {
      findings.fail(`protocol served from ${url.origin}, but its issuer url is ${protocol.issuer.url}`);
    }
    return findings.outcome(
      `fetched ${url.href} over TLS (${bytes.length} bytes); server certificate ${describe(certificate)}` +
        asAsked(protocol, expected),
    );
  }

  const name = input.name ?? "protocol object";
  const given = parseGiven(input.protocol, findings, name);
  if (!given) return findings.outcome("");
  const protocol = given.head;
  checkSubject(protocol, expected, findings);
  const issuerOrigin = issuerOriginOf(protocol, findings);
  if (!issuerOrigin) return findings.outcome("");
  context.protocol = protocol;
  context.origin = issuerOrigin;
  context.web.restrictTo(issuerOrigin);
  context.pages = given.pages
    ? memoryPages(given.pages, name)
    : urlPages(context, issuerOrigin, protocol.instance_hash);
  checkContentUrls(protocol, findings);
  const url = checkedHttps(protocolUrl(issuerOrigin, protocol.instance_hash), findings, "issuer url");
  if (!url) return findings.outcome("");
  try {
    const served = await context.web.get(url.href, context.settings.maxBytes.protocol);
    if (!served.certificate) {
      findings.fail(`${url.href} was not served over TLS: no server certificate`, "TLS_FAILED");
      return findings.outcome("");
    }
    context.certificate = served.certificate;
    const published = parseServedHead(served.bytes, new Findings(), url.href);
    if (
      !published ||
      published.instance_hash !== protocol.instance_hash ||
      !sameAddress(published.issuer.address, protocol.issuer.address)
    ) {
      findings.fail(`the issuer's server does not publish this instance's protocol at ${url.href}`);
    }
    return findings.outcome(
      `read ${name}; the issuer's server publishes it at ${url.href} over TLS; server certificate ${describe(served.certificate)}` +
        asAsked(protocol, expected),
    );
  } catch (error) {
    findings.error(error, `fetching ${url.href} to capture the issuer's certificate`);
    return findings.outcome("");
  }
}

/** The instance a protocol URL names (`…/instances/<instance_hash>/protocol`), or null. */
export function instanceNamedBy(url: string): string | null {
  let path: string;
  try {
    path = new URL(url).pathname;
  } catch {
    return null;
  }
  const match = /\/instances\/([0-9a-fA-F]{64})\/protocol\/?$/.exec(path);
  return match ? match[1].toLowerCase() : null;
}

/**
 * Binds the verdict to the question: the protocol is about the instance asked for (explicitly, and the one
 * its URL names) and the issuer asked for. Anything else is a substitution, however genuine it is.
 */
export function checkSubject(
  protocol: ProtocolHead,
  expected: ExpectedSubject & { urlInstance?: string | null },
  findings: Findings,
): void {
  const asked = [
    ...(expected.urlInstance ? [["its URL", expected.urlInstance]] : []),
    ...(expected.instanceHash ? [["the question", expected.instanceHash.toLowerCase()]] : []),
  ];
  for (const [where, instance] of asked) {
    if (protocol.instance_hash !== instance) {
      findings.fail(
        `the protocol is about instance ${protocol.instance_hash}, not instance ${instance} named by ${where}`,
        "SUBJECT_MISMATCH",
      );
    }
  }
  if (expected.issuer && !sameAddress(protocol.issuer.address, expected.issuer)) {
    const from = expected.ensName ? `, the address ${expected.ensName} resolves to` : "";
    findings.fail(
      `the protocol's issuer is ${protocol.issuer.address}, not the issuer asked for ${expected.issuer}${from}`,
      "SUBJECT_MISMATCH",
    );
  }
}

/** How a protocol is not about what was asked (every expectation given, and the instance its URL names); empty if it is. */
export function subjectMismatches(protocol: ProtocolHead, expected: ExpectedSubject, url: string | null): string[] {
  const findings = new Findings();
  checkSubject(protocol, { ...expected, urlInstance: url ? instanceNamedBy(url) : null }, findings);
  return findings.failed ? (findings.outcome("").problems ?? []) : [];
}

function asAsked(protocol: ProtocolHead, expected: ExpectedSubject): string {
  const parts: string[] = [];
  if (expected.instanceHash) parts.push(`instance ${short(protocol.instance_hash)}`);
  if (expected.issuer) {
    parts.push(`issuer ${protocol.issuer.address}${expected.ensName ? ` (${expected.ensName}'s address)` : ""}`);
  }
  return parts.length > 0 ? `; about the ${parts.join(" of the ")} asked for` : "";
}

/** A head as served at the protocol URL: strict JSON, version 3, the head schema (no entries inline). */
function parseServedHead(bytes: Buffer, findings: Findings, name: string): ProtocolHead | null {
  try {
    return parseHead(bytes);
  } catch (error) {
    if (isStatetrailError(error)) findings.fail(`${name}: ${error.message.replace(/\n\s*/g, "; ")}`, error.code);
    else findings.error(error, name);
    return null;
  }
}

/**
 * A protocol given as a file or object: a head alone (its pages are read from the issuer's server) or a whole
 * protocol, head and entries inline (its pages are encoded from memory, so they go through the one page decoder).
 */
function parseGiven(
  source: InstanceProtocol | ProtocolHead | string,
  findings: Findings,
  name: string,
): { head: ProtocolHead; pages: Buffer[] | null } | null {
  try {
    let json: unknown = source;
    if (typeof source === "string" || (source as unknown) instanceof Uint8Array) {
      const text = typeof source === "string" ? source : decodeUtf8(source as unknown as Uint8Array, "protocol");
      // Strict: a member named twice (a decoy before a signed member) is refused, as is any syntax error.
      json = parseStrictJson(text, "protocol");
    }
    checkVersion(json);
    const whole = json !== null && typeof json === "object" && "instance_protocol" in json;
    const result = safeParseBounded(whole ? wholeProtocolSchema : protocolHeadSchema, json);
    if (!result.success) {
      throw new StatetrailError(
        "PROTOCOL_INVALID",
        `does not match the ${whole ? "whole protocol" : "protocol head"} schema: ${describeIssues(result).join("; ")}`,
      );
    }
    if (!whole) return { head: result.data as ProtocolHead, pages: null };
    const protocol = result.data as InstanceProtocol;
    return { head: headOf(protocol), pages: encodePages(protocol) };
  } catch (error) {
    if (isStatetrailError(error)) findings.fail(`${name}: ${error.message.replace(/\n\s*/g, "; ")}`, error.code);
    else findings.error(error, name);
    return null;
  }
}

/** The pages of an instance on the issuer's server, read through the verification's pinned session. */
function urlPages(context: VerifyContext, origin: string, instanceHash: string): PageSource {
  const urls = contentUrls(origin);
  return {
    describe: (index) => urls.page(instanceHash, index),
    read: async (index) =>
      (await context.web.get(urls.page(instanceHash, index), context.settings.maxBytes.page)).bytes,
  };
}

/** The pages of a whole protocol given in memory. */
function memoryPages(pages: Buffer[], name: string): PageSource {
  return {
    describe: (index) => `page ${index} of ${name} (encoded from memory)`,
    read: async (index) => {
      const page = pages[index];
      if (!page)
        throw new StatetrailError("NOT_FOUND", `${name} has no page ${index}`, {
          hint: "the head claims more entries than the protocol holds",
        });
      return page;
    },
  };
}

function checkedHttps(value: string, findings: Findings, what: string): URL | null {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    findings.fail(`${what} is not a URL: "${value}"`);
    return null;
  }
  if (url.protocol !== "https:") {
    findings.fail(`${what} ${url.href} is not https: the protocol must be served over TLS`, "TLS_FAILED");
    return null;
  }
  return url;
}

function issuerOriginOf(protocol: ProtocolHead, findings: Findings): string | null {
  try {
    return originOf(protocol.issuer.url);
  } catch {
    findings.fail(`issuer url is not a URL: "${protocol.issuer.url}"`);
    return null;
  }
}

function describe(certificate: ServerCertificate): string {
  return `${short(certificate.fingerprint)} (valid ${iso(certificate.notBefore)} to ${iso(certificate.notAfter)})`;
}

/**
 * The head's data URLs are the issuer's content-addressed URLs for their hashes (DESIGN.md): anything else is
 * refused rather than fetched. Each entry's `state_data` is checked as its page is read (V6, {@link stateUrlProblem}).
 */
export function checkContentUrls(protocol: ProtocolHead, findings: Findings): void {
  const urls = contentUrls(protocol.issuer.url);
  const expected: Array<[string, string, string]> = [
    ["model_data", protocol.model_data, urls.model(protocol.model_hash)],
    ["instance_data", protocol.instance_data, urls.input(protocol.instance_hash)],
  ];
  for (const [what, actual, canonical] of expected) {
    if (actual !== canonical)
      findings.fail(`${what} is ${actual}, not the issuer's content-addressed URL ${canonical}`);
  }
}

/** Why an entry's `state_data` is not the issuer's content-addressed URL of its hash, or null when it is. */
export function stateUrlProblem(
  protocol: ProtocolHead,
  entry: { state_data: string; state_hash: string },
): string | null {
  const canonical = contentUrls(protocol.issuer.url).state(entry.state_hash);
  return entry.state_data === canonical
    ? null
    : `state_data is ${entry.state_data}, not the issuer's content-addressed URL ${canonical}`;
}
