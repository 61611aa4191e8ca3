import { isStatetrailError } from "../../errors";
import { parseProtocol, protocolSchema, type InstanceProtocol } from "../../protocol/schema";
import { contentUrls } from "../../protocol/urls";
import { type VerifyContext } from "../context";
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
 * Fills `context.protocol`, `context.origin` and `context.certificate`.
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
    const protocol = parse(bytes, findings, url.href);
    if (!protocol) return findings.outcome("");
    checkSubject(protocol, { ...expected, urlInstance: named }, findings);
    context.protocol = protocol;
    context.origin = url.origin;
    const issuerOrigin = issuerOriginOf(protocol, findings);
    context.web.restrictTo(issuerOrigin ?? url.origin);
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
  const protocol = parse(input.protocol, findings, name);
  if (!protocol) return findings.outcome("");
  checkSubject(protocol, expected, findings);
  context.protocol = protocol;
  const issuerOrigin = issuerOriginOf(protocol, findings);
  if (!issuerOrigin) return findings.outcome("");
  context.origin = issuerOrigin;
  context.web.restrictTo(issuerOrigin);
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
    const published = parse(served.bytes, new Findings(), url.href);
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
  protocol: InstanceProtocol,
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

/** Whether a protocol is about what was asked (every expectation given holds). */
export function matchesExpected(protocol: InstanceProtocol, expected: ExpectedSubject, url: string | null): boolean {
  const findings = new Findings();
  checkSubject(protocol, { ...expected, urlInstance: url ? instanceNamedBy(url) : null }, findings);
  return !findings.failed;
}

function asAsked(protocol: InstanceProtocol, expected: ExpectedSubject): string {
  const parts: string[] = [];
  if (expected.instanceHash) parts.push(`instance ${short(protocol.instance_hash)}`);
  if (expected.issuer) {
    parts.push(`issuer ${protocol.issuer.address}${expected.ensName ? ` (${expected.ensName}'s address)` : ""}`);
  }
  return parts.length > 0 ? `; about the ${parts.join(" of the ")} asked for` : "";
}

function parse(
  source: InstanceProtocol | string | Uint8Array,
  findings: Findings,
  name: string,
): InstanceProtocol | null {
  if (typeof source !== "string" && !(source instanceof Uint8Array)) {
    const result = protocolSchema.safeParse(source);
    if (result.success) return result.data;
    const problems = result.error.issues.map((issue) => `${issue.path.join(".") || "(root)"}: ${issue.message}`);
    findings.fail(`${name} does not match the protocol schema: ${problems.join("; ")}`, "PROTOCOL_INVALID");
    return null;
  }
  try {
    return parseProtocol(source);
  } catch (error) {
    if (isStatetrailError(error)) findings.fail(`${name}: ${error.message.replace(/\n\s*/g, "; ")}`, error.code);
    else findings.error(error, name);
    return null;
  }
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

function issuerOriginOf(protocol: InstanceProtocol, findings: Findings): string | null {
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
 * Every data URL of a protocol is the issuer's content-addressed URL for its hash (DESIGN.md): anything
 * else is refused rather than fetched.
 */
export function checkContentUrls(protocol: InstanceProtocol, findings: Findings): void {
  const urls = contentUrls(protocol.issuer.url);
  const expected: Array<[string, string, string]> = [
    ["model_data", protocol.model_data, urls.model(protocol.model_hash)],
    ["instance_data", protocol.instance_data, urls.input(protocol.instance_hash)],
  ];
  for (const entry of protocol.instance_protocol) {
    expected.push([`state_data of seq ${entry.seq}`, entry.state_data, urls.state(entry.state_hash)]);
  }
  const wrong = expected.filter(([, actual, canonical]) => actual !== canonical);
  for (const [what, actual, canonical] of wrong.slice(0, 5)) {
    findings.fail(`${what} is ${actual}, not the issuer's content-addressed URL ${canonical}`);
  }
  if (wrong.length > 5) findings.fail(`${wrong.length - 5} more data URLs are not the issuer's`);
}
