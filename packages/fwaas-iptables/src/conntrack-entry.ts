import { addressVersion } from "./ip-network.js";

/** One connection as `conntrack -L` prints it: the original tuple, and the reply's addresses. */
export interface ConntrackEntry {
  readonly family: 4 | 6;
  readonly protocolName: string;
  readonly protocolNumber: number;
  readonly source: string;
  readonly destination: string;
  readonly sourcePort: number | undefined;
  readonly destinationPort: number | undefined;
  readonly icmpType: number | undefined;
  readonly icmpCode: number | undefined;
  readonly icmpId: number | undefined;
  /** The reply's source: the real destination when the connection was DNATed (floating IPs). */
  readonly replySource: string | undefined;
  readonly replyDestination: string | undefined;
  readonly zone: number | undefined;
}

const NUMBER = /^\d{1,10}$/;

/**
 * Parses the default `conntrack -L -f ipv4|ipv6` output, e.g.
 * `tcp      6 431999 ESTABLISHED src=10.0.0.2 dst=10.0.1.2 sport=40000 dport=5001 src=10.0.1.2 ...`.
 * The first `src=` starts the original tuple, the second the reply tuple. Lines that are not
 * entries (the summary on stderr, blank lines) and entries with values that are not what their
 * key promises are skipped: what is parsed here goes back to conntrack as arguments.
 */
export function parseConntrackEntries(output: string, family: 4 | 6): ConntrackEntry[] {
  const entries: ConntrackEntry[] = [];
  for (const line of output.split("\n")) {
    const tokens = line.trim().split(/\s+/);
    if (tokens.length < 4 || !/^[a-z0-9-]+$/.test(tokens[0]!) || !NUMBER.test(tokens[1]!)) continue;
    const orig = new Map<string, string>();
    const reply = new Map<string, string>();
    let tuple = 0;
    let zone: number | undefined;
    for (const t of tokens.slice(2)) {
      const eq = t.indexOf("=");
      if (eq <= 0) continue;
      const key = t.slice(0, eq);
      const value = t.slice(eq + 1);
      if (key === "src") tuple++;
      if (key === "zone" && NUMBER.test(value)) zone = Number(value);
      const target = tuple === 1 ? orig : tuple === 2 ? reply : undefined;
      if (target && !target.has(key)) target.set(key, value);
    }
    const source = orig.get("src");
    const destination = orig.get("dst");
    if (!source || !destination || addressVersion(source)?.version !== family || addressVersion(destination)?.version !== family) continue;
    const num = (m: Map<string, string>, k: string) => {
      const v = m.get(k);
      return v !== undefined && NUMBER.test(v) ? Number(v) : undefined;
    };
    const replySource = reply.get("src");
    const replyDestination = reply.get("dst");
    entries.push({
      family,
      protocolName: tokens[0]!,
      protocolNumber: Number(tokens[1]),
      source,
      destination,
      sourcePort: num(orig, "sport"),
      destinationPort: num(orig, "dport"),
      icmpType: num(orig, "type"),
      icmpCode: num(orig, "code"),
      icmpId: num(orig, "id"),
      replySource: replySource && addressVersion(replySource) ? replySource : undefined,
      replyDestination: replyDestination && addressVersion(replyDestination) ? replyDestination : undefined,
      zone,
    });
  }
  return entries;
}

/** The `conntrack -D` arguments that delete exactly this entry (by its original tuple). */
export function deleteEntryArgs(entry: ConntrackEntry): string[] {
  const args = ["-D", "-f", entry.family === 4 ? "ipv4" : "ipv6"];
  args.push("-p", /^[a-z][a-z0-9-]*$/.test(entry.protocolName) && entry.protocolName !== "unknown" ? entry.protocolName : String(entry.protocolNumber));
  args.push("-s", entry.source, "-d", entry.destination);
  if (entry.sourcePort !== undefined && entry.destinationPort !== undefined) {
    args.push("--sport", String(entry.sourcePort), "--dport", String(entry.destinationPort));
  }
  // conntrack names the ICMPv6 fields apart and refuses `--icmp-*` after `-p icmpv6`.
  const icmp = entry.protocolNumber === 58 ? "--icmpv6" : "--icmp";
  if (entry.icmpType !== undefined) args.push(`${icmp}-type`, String(entry.icmpType));
  if (entry.icmpCode !== undefined) args.push(`${icmp}-code`, String(entry.icmpCode));
  if (entry.icmpId !== undefined) args.push(`${icmp}-id`, String(entry.icmpId));
  if (entry.zone !== undefined) args.push("--zone", String(entry.zone));
  return args;
}
