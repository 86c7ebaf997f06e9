import { isIP } from "node:net";
import { InvalidTransportUrlError } from "./oslo-messaging-errors.js";

/** One broker of a `transport_url`, as oslo.messaging's `TransportHost` holds it. */
export interface TransportHost {
  /** As written (oslo does not url-decode host names); `null` when the host part was empty. */
  hostname: string | null;
  port: number | null;
  username: string | null;
  password: string | null;
}

/** A parsed `transport_url`, field for field what oslo.messaging's `TransportURL.parse` returns. */
export interface TransportUrl {
  /** The scheme, lower case: `rabbit` (or `kombu`, oslo's alias of the rabbit driver). */
  transport: string;
  /** The path after the first `/`, url-decoded; `null` when the URL has no path, `""` for a bare `/`. */
  virtualHost: string | null;
  hosts: TransportHost[];
  /** Query options, each value the comma-joined list of its url-decoded values (blank values dropped). */
  query: Record<string, string>;
}

/**
 * Parses `driver://[user:pass@]host:port[,[userN:passN@]hostN:portN]/virtual_host?query` exactly as
 * oslo.messaging 14 (`TransportURL.parse` over Python's `urlparse`) does: hosts split on commas, each
 * with its own optional credentials; the username and password url-decoded (the last `@` ends the
 * credentials, the first `:` ends the username), the host name kept as written, `[v6]` literals, the
 * port an integer; the virtual host url-decoded; query values joined with commas.
 *
 * Throws `InvalidTransportUrlError` where oslo raises (no scheme, unbalanced IPv6 brackets, a port that
 * is not an integer); the error shows the URL with its passwords replaced by `***`.
 */
export function parseTransportUrl(raw: string): TransportUrl {
  const fail = (reason: string): never => {
    throw new InvalidTransportUrlError(redactTransportUrl(raw), reason);
  };
  if (typeof raw !== "string") fail("not a string");
  const split = urlSplit(raw, fail);
  if (!split.scheme) fail("no scheme specified (expected e.g. rabbit://user:pass@host:5672/)");

  const query: Record<string, string> = {};
  for (const [key, values] of parseQs(split.query)) query[key] = values.join(",");

  const virtualHost = split.path.startsWith("/") ? unquote(split.path.slice(1)) : null;

  const hosts: TransportHost[] = [];
  split.netloc.split(",").forEach((part, index) => {
    if (!part) return;
    let hostname: string | null = part;
    let username: string | null = null;
    let password: string | null = null;
    let portText: string | null = null;
    const at = part.lastIndexOf("@");
    if (at >= 0) {
      username = part.slice(0, at);
      hostname = part.slice(at + 1);
      const colon = username.indexOf(":");
      if (colon >= 0) {
        password = unquote(username.slice(colon + 1));
        username = username.slice(0, colon);
      }
      username = unquote(username);
    }
    if (!hostname) {
      hostname = null;
    } else if (hostname.startsWith("[")) {
      const end = hostname.indexOf("]");
      if (end < 0) fail(`host ${index + 1}: an IPv6 address opened with [ is not closed`);
      const rest = hostname.slice(end);
      hostname = hostname.slice(1, end);
      const colon = rest.indexOf(":");
      if (colon >= 0) portText = rest.slice(colon + 1);
    } else {
      const colon = hostname.indexOf(":");
      if (colon >= 0) {
        portText = hostname.slice(colon + 1);
        hostname = hostname.slice(0, colon);
      }
    }
    let port: number | null = null;
    if (portText !== null && portText !== "") {
      const value = pythonInt(portText);
      if (value === undefined) return fail(`host ${index + 1}: port ${JSON.stringify(portText)} is not an integer`);
      port = value;
    }
    hosts.push({ hostname, port, username, password });
  });

  return { transport: split.scheme, virtualHost, hosts, query };
}

/**
 * The URL with every password replaced by `***`, for logs and errors; works on URLs that do not
 * parse as well.
 */
export function redactTransportUrl(raw: string): string {
  if (typeof raw !== "string") return "<not a string>";
  const start = raw.indexOf("//");
  if (start < 0) return raw.replace(/:[^:@/]*@/g, ":***@");
  let end = raw.length;
  for (const c of ["/", "?", "#"]) {
    const i = raw.indexOf(c, start + 2);
    if (i >= 0 && i < end) end = i;
  }
  const netloc = raw
    .slice(start + 2, end)
    .split(",")
    .map((host) => {
      const at = host.lastIndexOf("@");
      if (at < 0) return host;
      const credentials = host.slice(0, at);
      const colon = credentials.indexOf(":");
      return colon < 0 ? host : `${credentials.slice(0, colon)}:***${host.slice(at)}`;
    })
    .join(",");
  return raw.slice(0, start + 2) + netloc + raw.slice(end);
}

/** `host:port` names of a URL's hosts, for logs (no credentials). */
export function describeHosts(url: TransportUrl): string[] {
  return url.hosts.map((h) => `${h.hostname && h.hostname.includes(":") ? `[${h.hostname}]` : (h.hostname ?? "")}:${h.port ?? 5672}`);
}

interface SplitUrl {
  scheme: string;
  netloc: string;
  path: string;
  query: string;
}

const SCHEME_CHARS = /^[A-Za-z0-9+\-.]+$/;
// Python's urlsplit strips leading C0 controls and spaces, and removes tabs and newlines anywhere.
const LEADING_C0_OR_SPACE = /^[\x00-\x20]+/;
const UNSAFE_BYTES = /[\t\r\n]/g;

/** Python 3.11's `urllib.parse.urlsplit`, for the parts `TransportURL.parse` reads. */
function urlSplit(input: string, fail: (reason: string) => never): SplitUrl {
  let url = input.replace(LEADING_C0_OR_SPACE, "").replace(UNSAFE_BYTES, "");
  let scheme = "";
  const colon = url.indexOf(":");
  if (colon > 0 && /^[A-Za-z]/.test(url) && SCHEME_CHARS.test(url.slice(0, colon))) {
    scheme = url.slice(0, colon).toLowerCase();
    url = url.slice(colon + 1);
  }
  let netloc = "";
  if (url.startsWith("//")) {
    let end = url.length;
    for (const c of ["/", "?", "#"]) {
      const i = url.indexOf(c, 2);
      if (i >= 0 && i < end) end = i;
    }
    netloc = url.slice(2, end);
    url = url.slice(end);
    if (netloc.includes("[") !== netloc.includes("]")) fail("unbalanced [ ] around an IPv6 address");
    if (netloc.includes("[")) checkBracketedNetloc(netloc, fail);
  }
  const hash = url.indexOf("#");
  if (hash >= 0) url = url.slice(0, hash);
  let query = "";
  const q = url.indexOf("?");
  if (q >= 0) {
    query = url.slice(q + 1);
    url = url.slice(0, q);
  }
  return { scheme, netloc, path: url, query };
}

/**
 * Python's `_check_bracketed_netloc`: it looks only at what follows the netloc's last `@`, so with
 * several hosts a bracketed address makes Python (and oslo) insist that the last host be an IP address.
 */
function checkBracketedNetloc(netloc: string, fail: (reason: string) => never): void {
  const hostAndPort = netloc.slice(netloc.lastIndexOf("@") + 1);
  const open = hostAndPort.indexOf("[");
  let hostname: string;
  if (open >= 0) {
    if (open > 0) fail("text before [ of an IPv6 address");
    const rest = hostAndPort.slice(1);
    const close = rest.indexOf("]");
    hostname = close < 0 ? rest : rest.slice(0, close);
    const port = close < 0 ? "" : rest.slice(close + 1);
    if (port && !port.startsWith(":")) fail("text between ] and the port of an IPv6 address");
  } else {
    const colon = hostAndPort.indexOf(":");
    hostname = colon < 0 ? hostAndPort : hostAndPort.slice(0, colon);
  }
  if (hostname.startsWith("v")) {
    if (!/^v[a-fA-F0-9]+\..+$/s.test(hostname)) fail(`IPvFuture address ${JSON.stringify(hostname)} is invalid`);
  } else if (isIP(hostname) === 4) {
    fail(`an IPv4 address (${hostname}) cannot be in brackets`);
  } else if (isIP(hostname) !== 6) {
    fail(`${JSON.stringify(hostname)} is not an IP address (Python requires the last host to be one when the URL has [ ])`);
  }
}

/** Python's `parse_qs` (blank values dropped, `+` as space, first-seen key order). */
function parseQs(query: string): Map<string, string[]> {
  const result = new Map<string, string[]>();
  for (const field of query.split("&")) {
    if (!field) continue;
    const eq = field.indexOf("=");
    if (eq < 0) continue;
    const value = field.slice(eq + 1);
    if (!value) continue;
    const name = unquote(field.slice(0, eq).replace(/\+/g, " "));
    const list = result.get(name) ?? [];
    list.push(unquote(value.replace(/\+/g, " ")));
    result.set(name, list);
  }
  return result;
}

/**
 * Python's `urllib.parse.unquote`: `%XX` sequences become bytes, decoded as UTF-8 with U+FFFD for
 * invalid sequences; a `%` not followed by two hex digits stays as it is.
 */
export function unquote(text: string): string {
  if (!text.includes("%")) return text;
  const bytes: number[] = [];
  const out: string[] = [];
  const flush = () => {
    if (bytes.length) out.push(Buffer.from(bytes).toString("utf8"));
    bytes.length = 0;
  };
  for (let i = 0; i < text.length; ) {
    if (text[i] === "%" && /^[0-9A-Fa-f]{2}$/.test(text.slice(i + 1, i + 3))) {
      bytes.push(parseInt(text.slice(i + 1, i + 3), 16));
      i += 3;
    } else {
      flush();
      const cp = text.codePointAt(i)!;
      out.push(String.fromCodePoint(cp));
      i += cp > 0xffff ? 2 : 1;
    }
  }
  flush();
  return out.join("");
}

/** Python's `int(text)` for decimal text (surrounding whitespace, a sign, `_` between digits). */
export function pythonInt(text: string): number | undefined {
  const m = /^\s*([+-]?)(\d+(?:_\d+)*)\s*$/.exec(text);
  if (!m) return undefined;
  return Number(`${m[1]}${m[2]!.replace(/_/g, "")}`);
}
