import { existsSync, readFileSync, readdirSync } from "node:fs";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";
import { InvalidRuleError } from "../errors.js";
import { canonicalizeRule } from "./canonicalize-rule.js";
import { SAVE_NORMALIZATION_CASES } from "./save-normalization.fixtures.js";

function errorOf(fn: () => unknown): InvalidRuleError {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(InvalidRuleError);
    return e as InvalidRuleError;
  }
  throw new Error("expected an InvalidRuleError, nothing was thrown");
}

describe("canonicalizeRule on the probed fixtures", () => {
  it("prints every fixture input the way iptables-save did", () => {
    const wrong: string[] = [];
    for (const c of SAVE_NORMALIZATION_CASES) {
      let got: string;
      try {
        got = canonicalizeRule(c.input, { family: c.family });
      } catch (e) {
        got = `THROWS ${(e as Error).message}`;
      }
      if (got !== c.saved) wrong.push(`IPv${c.family} ${c.input}\n  saved: ${c.saved}\n  got:   ${got}`);
    }
    expect(wrong).toEqual([]);
  });

  it("has no case where the backends differ (those shapes are refused instead)", () => {
    expect(SAVE_NORMALIZATION_CASES.filter((c) => c.savedLegacy !== undefined && c.savedLegacy !== c.saved)).toEqual([]);
  });

  it("treats saved text as a fixed point, also in strict mode", () => {
    for (const c of SAVE_NORMALIZATION_CASES) {
      expect(canonicalizeRule(c.saved, { family: c.family, strict: true })).toBe(c.saved);
    }
  });
});

describe("strict mode", () => {
  it("refuses non-canonical input and shows both forms", () => {
    const err = errorOf(() => canonicalizeRule("-p tcp --dport 22 -j ACCEPT", { family: 4, strict: true }));
    expect(err.message).toContain('"-p tcp --dport 22 -j ACCEPT"');
    expect(err.message).toContain('"-p tcp -m tcp --dport 22 -j ACCEPT"');
    expect(err.message).toContain("strict");
  });

  it("refuses even whitespace differences", () => {
    expect(() => canonicalizeRule("-j ACCEPT ", { family: 4, strict: true })).toThrow(InvalidRuleError);
    expect(canonicalizeRule("-j ACCEPT ", { family: 4 })).toBe("-j ACCEPT");
  });
});

describe("errors", () => {
  it("carry the resource", () => {
    const err = errorOf(() => canonicalizeRule("-m nosuch -j ACCEPT", { family: 4, resource: "router-1e4c" }));
    expect(err.resource).toBe("router-1e4c");
    expect(err.code).toBe("INVALID_RULE");
    expect(err.rule).toBe("-m nosuch -j ACCEPT");
    expect(err.message).toContain("of router-1e4c");
  });

  // [family, rule, part of the reason]. Comments say why when iptables itself would take it.
  const REJECTED: ReadonlyArray<readonly [4 | 6, string, string]> = [
    // unsafe text and restore-script syntax
    [4, "", "empty rule"],
    [4, "   ", "empty rule"],
    [4, "-j ACCEPT\n-A INPUT -j DROP", "line break"],
    [4, "*filter", "table or chain line"],
    [4, ":INPUT ACCEPT", "table or chain line"],
    [4, "-j COMMIT", "COMMIT"],
    [4, "-m comment --comment COMMIT -j ACCEPT", "COMMIT"], // iptables takes it; we never send that word
    [4, '-m comment --comment "a\\"b" -j ACCEPT', "backslash"],
    [4, '-m comment --comment "x"y -j ACCEPT', "closing quote"],
    [4, "-m comment --comment 'x' -j ACCEPT", "single quote"],
    [4, `-m comment --comment ${"a".repeat(256)} -j ACCEPT`, "at most 255"], // iptables silently cuts it to 255
    [4, "-s 0.0.0.0/0", "matches everything and has no target"],
    [4, "-A INPUT -j ACCEPT", 'unknown option "-A"'],
    [4, "-t nat -j ACCEPT", 'unknown option "-t"'],
    [4, "-c 1 2 -j ACCEPT", "counters"],
    [4, "-4 -j ACCEPT", 'unknown option "-4"'],
    [4, `-j ${"a".repeat(8200)}`, "longer than 8192"],
    // unknown modules, options, missing arguments
    [4, "-m foo -j ACCEPT", 'unknown or unsupported match module "foo"'],
    [4, "-m TCP -p tcp -j ACCEPT", 'unknown or unsupported match module "TCP"'],
    [4, "-m state --bogus -j ACCEPT", 'unknown option "--bogus"'],
    [4, "-m conntrack --ctzone 5 -j ACCEPT", 'unknown option "--ctzone"'],
    [4, "-m state --state", "--state needs an argument"],
    [4, "-m state -j ACCEPT", "-m state needs --state"],
    [4, "-s", "-s needs an argument"],
    [4, "-p tcp -j", "-j needs an argument"],
    [4, "-m set --match-set cwset4 -j ACCEPT", "needs two arguments"],
    [4, "-p tcp --tcp-flags SYN -j ACCEPT", "needs two arguments"],
    [4, "-m state --state NEW extra -j ACCEPT", 'unexpected argument "extra"'],
    [4, "--comment x -j ACCEPT", "belongs to -m comment"],
    [4, "--dport 22 -p tcp -j ACCEPT", 'unknown option "--dport"'], // -p must come first (iptables agrees)
    [4, "-j CT --helper ftp", 'unknown option "--helper"'],
    [4, "-m set --match-set cwset4 src --packets-gt 5 -j ACCEPT", 'unknown option "--packets-gt"'],
    [4, "-j NFLOG", "not supported"],
    [4, "-j QUEUE", "not supported"], // nft refuses QUEUE (RULE_APPEND: No such file or directory)
    // chain names
    [4, "-j neutron-l3-agent-iv4XXXXXXXX-XXXX", "longer than 28"],
    [4, "-g abcdefghijklmnopqrstuvwxyz012", "longer than 28"],
    [4, "-j bad!chain", "not a valid chain name"],
    [4, "-g ACCEPT", "-g needs a user chain"],
    [4, "-j ACCEPT -j DROP", "more than one -j/-g"],
    // abbreviations and old spellings iptables takes but that hide what is meant
    [4, "-p tcp -m multiport --dports 1 --dport 5 -j ACCEPT", 'read by iptables as "--dports"'],
    [4, "-p tcp -m multiport --dports 1:65535 --sport 5 -j ACCEPT", 'read by iptables as "--sports"'],
    [4, "-p tcp --dp 22 -j ACCEPT", 'unknown option "--dp"'],
    [4, "--sou 1.2.3.4 -j ACCEPT", 'read by iptables as "--source"'],
    [4, "--proto tcp -j ACCEPT", 'read by iptables as "--protocol"'],
    [4, "-m state --sta NEW -j ACCEPT", 'read by iptables as "--state"'],
    [4, "-p tcp --dport=22 -j ACCEPT", 'write "--dport VALUE"'],
    [4, "-s ! 10.0.0.1 -j ACCEPT", "bad IPv4 address"], // 1.8.9 refuses the old "--opt !" placement
    [4, "-p ! tcp -j ACCEPT", 'unknown protocol "!"'],
    [4, "-p tcp --dport ! 22 -j ACCEPT", "bad port"],
    // negation
    [4, "! ! -s 1.1.1.1 -j ACCEPT", "two ! in a row"],
    [4, "! -m state --state NEW -j ACCEPT", "! cannot precede -m"],
    [4, "! -j ACCEPT", "! cannot precede -j"],
    [4, "-j ACCEPT !", "! at the end"],
    [4, "-m comment ! --comment x -j ACCEPT", "cannot be negated"],
    [4, "-m limit ! --limit 5/sec -j ACCEPT", "cannot be negated"],
    [4, "-j REJECT ! --reject-with tcp-reset", "cannot be negated"],
    [4, "! -s 0.0.0.0/0 -j ACCEPT", "matches nothing"], // nft: RULE_APPEND failed (Invalid argument)
    [6, "! -s ::/0 -j ACCEPT", "matches nothing"],
    [4, "! -i + -j ACCEPT", "matches nothing"],
    [4, "! -p all -j ACCEPT", "matches nothing"],
    // addresses
    [4, "-s 10.0.0.1,10.0.0.2 -j ACCEPT", "bad IPv4 address"], // iptables makes two rules of it
    [4, "-s 10.1 -j ACCEPT", "bad IPv4 address"], // iptables reads 10.1.0.0
    [4, "-s 010.0.0.1 -j ACCEPT", "bad IPv4 address"], // iptables reads 8.0.0.1
    [4, "-s localhost -j ACCEPT", "bad IPv4 address"], // iptables resolves names
    [4, "-s 10.0.0.0/255.0.255.0 -j ACCEPT", "bad IPv4 address"], // non-contiguous mask
    [4, "-s 10.0.0.0/33 -j ACCEPT", "bad IPv4 address"],
    [4, "-s 2001:db8::1 -j ACCEPT", "bad IPv4 address"],
    [6, "-s 10.0.0.1 -j ACCEPT", "bad IPv6 address"],
    [6, "-s fe80::1%eth0 -j ACCEPT", "bad IPv6 address"],
    [6, "-s 1:::2 -j ACCEPT", "bad IPv6 address"],
    [6, "-s 1:2:3:4:5:6:7:8:9 -j ACCEPT", "bad IPv6 address"],
    [4, "-s 1.1.1.1 -s 2.2.2.2 -j ACCEPT", "more than one -s"],
    // interfaces and protocols
    [4, "-i abcdefghijklmnop -j ACCEPT", "bad interface name"], // 16 characters
    [4, "-i eth!0 -j ACCEPT", "bad interface name"],
    [4, "-i eth/0 -j ACCEPT", "bad interface name"],
    [4, "-p 256 -j ACCEPT", 'unknown protocol "256"'],
    [4, "-p 06 -j ACCEPT", 'unknown protocol "06"'],
    [4, "-p ipsec-esp -j ACCEPT", "unknown protocol"],
    [4, "-p udp --dport 53 -p tcp -j ACCEPT", "more than one -p"],
    [6, "-f -j ACCEPT", "-f does not exist in IPv6"],
    // protocol matches
    [4, "-m tcp --dport 80 -j ACCEPT", "-m tcp needs -p tcp"],
    [4, "-p tcp -m udp --dport 80 -j ACCEPT", "-m udp needs -p udp"],
    [4, "-m multiport --dports 53 -j ACCEPT", "needs -p tcp, udp, udplite, sctp or dccp before it"],
    [4, "-m multiport --dports 53 -p udp -j ACCEPT", "before it"], // libxt_multiport checks -p while parsing
    [4, "! -p tcp -m multiport --dports 1 -j ACCEPT", "-m multiport needs -p tcp"],
    [4, "! -p tcp --dport 22 -j ACCEPT", "(not negated)"], // nft takes it, the legacy kernel refuses it
    [4, "-p tcp --dport 22 -m tcp --sport 1 -j ACCEPT", "-m tcp appears twice"], // nft merges the two, legacy keeps both
    [4, "-p udp --dport 1 -m udp --sport 2 -j ACCEPT", "-m udp appears twice"],
    [4, "-p tcp -m tcp -m tcp -j ACCEPT", "-m tcp appears twice"],
    [4, "-p tcp ! --dport 0:65535 -j ACCEPT", "matches no port"], // nft drops the match, legacy keeps -m tcp
    [4, "-p tcp --dport 2000:1000 -j ACCEPT", "bad port"],
    [4, "-p tcp --dport 65536 -j ACCEPT", "bad port"],
    [4, "-p tcp --dport ssh -j ACCEPT", "bad port"], // service names depend on /etc/services
    [4, "-p tcp --dport 022 -j ACCEPT", "bad port"], // iptables reads octal 18
    [4, "-p tcp --dport 0x16 -j ACCEPT", "bad port"],
    [4, "-p tcp --syn --tcp-flags SYN SYN -j ACCEPT", "repeats or conflicts"],
    [4, "-p tcp --tcp-flags NONE NONE -j ACCEPT", "empty mask"], // prints as a bare -m tcp
    [4, "-p tcp --tcp-flags SYN,FOO SYN -j ACCEPT", 'unknown TCP flag "FOO"'],
    [4, "-p tcp --tcp-option 0 -j ACCEPT", "bad TCP option"],
    [4, "-p tcp -m multiport --dports 1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16 -j ACCEPT", "more than 15 ports"],
    [4, "-p tcp -m multiport --dports 1:2,3:4,5:6,7:8,9:10,11:12,13:14,15:16 -j ACCEPT", "more than 15 ports"],
    [4, "-p tcp -m multiport --dports 80:80 -j ACCEPT", "bad port range"],
    [4, "-p tcp -m multiport --dports 80,,81 -j ACCEPT", "bad port"],
    [4, "-p tcp -m multiport --dports 80 --sports 90 -j ACCEPT", "repeats or conflicts"],
    [4, "-p tcp -m multiport -j ACCEPT", "needs one of --dports"],
    [4, "-p icmp -m icmp -j ACCEPT", "needs --icmp-type"],
    [4, "-p icmp --icmp-type echo -j ACCEPT", "unknown ICMP type"], // iptables: ambiguous abbreviation
    [4, "-p icmp --icmp-type echo-req -j ACCEPT", "unknown ICMP type"], // an abbreviation iptables would take
    [4, "-p icmp --icmp-type 8:9 -j ACCEPT", "unknown ICMP type"],
    [4, "-p icmp --icmp-type 8/256 -j ACCEPT", "unknown ICMP type"],
    [4, "-p icmp --icmp-type 0x8 -j ACCEPT", "unknown ICMP type"],
    [6, "-p ipv6-icmp --icmpv6-type any -j ACCEPT", "unknown ICMPv6 type"],
    [6, "-p ipv6-icmp --icmpv6-type mld-listener-query -j ACCEPT", "unknown ICMPv6 type"], // not in 1.8.9
    [6, "-p icmp --icmp-type 8 -j ACCEPT", 'unknown option "--icmp-type"'],
    [6, "-p ipv6-icmp -m icmp --icmp-type 1 -j ACCEPT", "-m icmp exists only for IPv4"],
    [4, "-p icmp -m icmp6 --icmpv6-type 1 -j ACCEPT", "-m icmp6 exists only for IPv6"],
    [4, "-p ipv6-icmp --icmpv6-type 1 -j ACCEPT", 'unknown option "--icmpv6-type"'],
    // other matches
    [4, "-m comment --comment x --comment y -j ACCEPT", "repeats or conflicts"],
    [4, "-m state --state NEW, -j ACCEPT", "unknown state"],
    [4, "-m state --state BOGUS -j ACCEPT", "unknown state"],
    [4, "-m conntrack -j ACCEPT", "at least one option"],
    [4, "-m conntrack --ctstate ESTABLISHED ! --ctstate NEW -j ACCEPT", "repeats or conflicts"],
    [4, "-m conntrack --ctdir SIDEWAYS -j ACCEPT", "--ctdir takes ORIGINAL or REPLY"],
    [4, "-m conntrack ! --ctdir REPLY -j ACCEPT", "cannot be negated"],
    [4, "-m mac --mac-source fa:16:3e:31:e3 -j ACCEPT", "bad MAC address"],
    [4, "-m mac --mac-source fa-16-3e-31-e3-11 -j ACCEPT", "bad MAC address"],
    [4, "-m physdev -j ACCEPT", "needs a --physdev-* option"],
    [4, "-m physdev --physdev-in tap1234567890123 -j ACCEPT", "bad interface name"],
    [4, "-m set --match-set cwset4 SRC -j ACCEPT", "comma list of src/dst"],
    [4, "-m set --match-set cwset4 src,dst,src,dst,src,dst,src -j ACCEPT", "comma list of src/dst"],
    [4, `-m set --match-set ${"s".repeat(32)} src -j ACCEPT`, "bad ipset name"],
    [4, "-m set --match-set cwset4 src --return-nomatch --return-nomatch -j ACCEPT", "repeats or conflicts"], // iptables takes it
    [4, "-m mark --mark 0x100000000 -j ACCEPT", "bad mark"],
    [4, "-m mark --mark 010 -j ACCEPT", "bad mark"], // iptables reads octal 8
    [4, "-m mark -j ACCEPT", "needs --mark"],
    [4, "-m connmark -m mark --mark 1 -j ACCEPT", "-m connmark needs --mark"], // --mark goes to the newer mark
    [4, "-m addrtype --limit-iface-in -j ACCEPT", "needs --src-type or --dst-type"],
    [4, "-m addrtype --dst-type LOCAL --limit-iface-in --limit-iface-out -j ACCEPT", "exclude each other"],
    [4, "-m addrtype --dst-type NOWHERE -j ACCEPT", "unknown address type"],
    [4, "-m limit --limit 1/day -j ACCEPT", "too slow for its burst"], // legacy kernel refuses, nft takes it
    [4, "-m limit --limit 0/sec -j ACCEPT", "bad rate"],
    [4, "-m limit --limit 5/seconds -j ACCEPT", "bad rate"],
    [4, "-m limit --limit 10001/sec -j ACCEPT", "faster than 10000/second"],
    [4, "-m limit --limit-burst 10001 -j ACCEPT", "bad --limit-burst"],
    [4, "-m limit --limit-burst 0 -j ACCEPT", "bad --limit-burst"],
    // targets
    [4, "-j REJECT --reject-with tcp-reset", "needs -p tcp"], // the kernel refuses it (nft EINVAL, legacy at COMMIT)
    [4, "! -p tcp -j REJECT --reject-with tcp-reset", "needs -p tcp"],
    [4, "-j REJECT --reject-with icmp6-port-unreachable", "unknown IPv4 reject type"],
    [6, "-j REJECT --reject-with icmp-port-unreachable", "unknown IPv6 reject type"],
    [6, "-p tcp -j REJECT --reject-with tcp-rst", "unknown IPv6 reject type"], // only IPv4 has the alias
    [4, "-j REJECT --reject-with icmp-port", "unknown IPv4 reject type"], // an abbreviation iptables would take
    [4, "-j DNAT", "needs --to-destination"],
    [4, "-j DNAT --to-destination 10.0.0.1:80", "needs -p tcp, udp, sctp or dccp"],
    [4, "-j DNAT --to-destination 10.0.0.1:80 -p tcp", "before it"], // libxt_DNAT checks -p while parsing
    [4, "-j REDIRECT --to-ports 53 -p tcp", "before it"],
    [4, "-p tcp -j DNAT --to-destination 10.0.0.1:80:90", "bad port"],
    [4, "-p tcp -j DNAT --to-destination :80", "bad address"],
    [4, "-j DNAT --to-destination 10.0.0.5-10.0.0.1", "runs backwards"],
    [4, "-j DNAT --to-destination 10.0.0.1 --to-destination 10.0.0.2", "repeats or conflicts"],
    [4, "-j SNAT --to-source 10.0.0.5/24", "bad address"],
    [4, "-j SNAT", "needs --to-source"],
    [6, "-p tcp -j DNAT --to-destination [2001:db8::2-2001:db8::5]:80", "not supported"],
    [6, "-p tcp -j DNAT --to-destination [2001:db8::2]80", "bad address"],
    [4, "-p tcp -j REDIRECT --to-ports 9697:9699", "use N-M"],
    [4, "-j REDIRECT --to-ports 9697", "needs -p tcp, udp, sctp or dccp"],
    [4, "-j MASQUERADE --to-ports 1000", "needs -p tcp, udp, sctp or dccp"],
    [4, "-j MARK", "-j MARK needs one of"],
    [4, "-j MARK --set-mark 1 --set-xmark 2", "repeats or conflicts"],
    [4, "-j MARK --set-mark 0x100000000", "bad --set-mark value"],
    [4, "-j MARK --set-mark -1", "bad --set-mark value"],
    [4, "-j MARK --and-mark 0x1/0xff", "without a mask"],
    [4, "-j CONNMARK", "-j CONNMARK needs"],
    [4, "-j CONNMARK --save-mark --set-mark 1", "repeats or conflicts"],
    [4, "-j CONNMARK --save-mark --mask 0xf --nfmask 0xff", "--mask cannot be used together"],
    [4, "-j CONNMARK --set-xmark 0x1/0xff --ctmask 0xf", "only go with --save-mark"], // --ctmask would replace the mask
    [4, "-j CT --zone 65536", "bad CT zone"],
    [4, "-j CT --zone 010", "bad CT zone"], // iptables reads octal 8
    [4, "-j LOG --log-prefix \"\"", "--log-prefix is empty"],
    [4, "-j LOG --log-prefix 123456789012345678901234567890", "at most 29"], // iptables silently cuts it
    [4, "-j LOG --log-level 8", "unknown log level"],
    [4, "-j LOG --log-level err", "unknown log level"],
    [4, "-j LOG --log-level DEBUG", "unknown log level"],
    [4, "--log-prefix x -j LOG", 'unknown option "--log-prefix"'],
    [4, "-j ACCEPT --log-prefix x", 'unknown option "--log-prefix"'],
  ];

  it.each(REJECTED)("IPv%s %j: %s", (family, rule, reason) => {
    const err = errorOf(() => canonicalizeRule(rule, { family }));
    expect(err.message).toContain(reason);
  });
});

// Every distinct `-A` line of the reference listings (real Neutron on iptables 1.8.9) and of the
// 2013 blog post in seeds/002 must canonicalize to itself. The exceptions are lines that are not
// iptables-save 1.8.9 output: the blog's hand-written templates (placeholders, trailing blanks,
// pre-save spellings) and its 1.4.12 dump, which printed the MAC in upper case.
// The repository's copies (packages/testing/test-fixtures: reference/ and seeds/, see its README).
const SHARED = process.env["CHAINWARDEN_SHARED_DIR"] ?? fileURLToPath(new URL("../../../testing/test-fixtures/", import.meta.url));

const SEED_EXCEPTIONS: ReadonlyMap<string, { canonical: string } | { error: string }> = new Map<string, { canonical: string } | { error: string }>([
  ["-s 10.10.10.2/32 -m mac --mac-source FA:16:3E:31:E3:11 -j RETURN", { canonical: "-s 10.10.10.2/32 -m mac --mac-source fa:16:3e:31:e3:11 -j RETURN" }],
  ["-s 0.0.0.0/0 -d 127.0.0.1 -p tcp -m tcp --dport 9697 -j ACCEPT", { canonical: "-d 127.0.0.1/32 -p tcp -m tcp --dport 9697 -j ACCEPT" }],
  [
    "-s 0.0.0.0/0 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-port 9697",
    { canonical: "-d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-ports 9697" },
  ],
  ["-m state --state ESTABLISHED,RELATED -j ACCEPT", { canonical: "-m state --state RELATED,ESTABLISHED -j ACCEPT" }],
  ["-s XXX.XXX.XXX.XXX/XX -j SNAT --to-source XXX.XXX.XXX.XXX", { error: "bad IPv4 address" }],
  ["-d <floatingip> -j DNAT --to <fixedip>", { error: "bad IPv4 address" }],
  ["-s <fixedip> -j SNAT --to <floatingip>", { error: "bad IPv4 address" }],
  ["-m physdev --physdev-out <port-id> --physdev-is-bridged -j neutron-l2-agent-sg-chain", { error: "bad interface name" }],
  ["-m physdev --physdev-out <port-id> --physdev-is-bridged -j iX-XXXX", { error: "bad interface name" }],
  ["-m physdev --physdev-in <port-id> --physdev-is-bridged -j neutron-l2-agent-sg-chain", { error: "bad interface name" }],
  ["-m physdev --physdev-in <port-id> --physdev-is-bridged -j oX-XXXX", { error: "bad interface name" }],
  ["… -j RETURN", { error: 'unexpected argument "…"' }],
  ["… -j ACCEPT/DROP", { error: 'unexpected argument "…"' }],
  ["-i qr-+ -j neutron-l3-agent-iv4XXXXXXXX-XXXX", { error: "longer than 28" }],
  ["-o qr-+ -j neutron-l3-agent-ov4XXXXXXXX-XXXX", { error: "longer than 28" }],
  ["-o qr-+ -j neutron-l3-agent-fwaas-default-policy", { error: "longer than 28" }],
  ["-i qr-+ -j neutron-l3-agent-fwaas-default-policy", { error: "longer than 28" }],
]);

interface ListedRule {
  file: string;
  family: 4 | 6;
  /** The rule after `-A CHAIN `, trailing blanks removed (the blog's markdown line breaks). */
  rule: string;
}

function listedRules(): ListedRule[] {
  const out: ListedRule[] = [];
  const seen = new Set<string>();
  const refDir = join(SHARED, "reference");
  const files = readdirSync(refDir)
    .filter((f) => f.endsWith(".expected.txt"))
    .map((f) => join(refDir, f));
  files.push(...readdirSync(join(SHARED, "seeds")).filter((f) => f.startsWith("002_")).map((f) => join(SHARED, "seeds", f)));
  for (const file of files) {
    let family: 4 | 6 = 4;
    for (const line of readFileSync(file, "utf8").split("\n")) {
      if (line.startsWith("--- ")) family = line.includes("ip6tables-save") ? 6 : 4;
      if (!line.startsWith("-A ")) continue;
      const rest = line.slice(3).trimEnd();
      const space = rest.indexOf(" ");
      const rule = space === -1 ? "" : rest.slice(space + 1);
      const key = `${family} ${rule}`;
      if (seen.has(key)) continue;
      seen.add(key);
      out.push({ file, family, rule });
    }
  }
  return out;
}

describe("the rules in the reference listings and seeds", () => {
  it("are readable", () => {
    expect(existsSync(join(SHARED, "reference")), `no reference listings under ${SHARED} (set CHAINWARDEN_SHARED_DIR)`).toBe(true);
    expect(listedRules().length).toBeGreaterThan(100);
  });

  it("canonicalize to themselves, except the blog's non-save lines, which go where expected", () => {
    const wrong: string[] = [];
    const usedExceptions = new Set<string>();
    for (const { file, family, rule } of listedRules()) {
      const exception = file.includes("/seeds/") ? SEED_EXCEPTIONS.get(rule) : undefined;
      if (exception !== undefined) usedExceptions.add(rule);
      let got: string;
      try {
        got = canonicalizeRule(rule, { family, strict: exception === undefined });
      } catch (e) {
        got = `THROWS ${(e as Error).message}`;
      }
      const want = exception === undefined ? rule : "canonical" in exception ? exception.canonical : `THROWS`;
      const ok = exception !== undefined && "error" in exception ? got.startsWith("THROWS") && got.includes(exception.error) : got === want;
      if (!ok) wrong.push(`${file} IPv${family}: ${rule}\n  want: ${want}${exception && "error" in exception ? ` (${exception.error})` : ""}\n  got:  ${got}`);
    }
    expect(wrong).toEqual([]);
    expect([...SEED_EXCEPTIONS.keys()].filter((k) => !usedExceptions.has(k))).toEqual([]);
  });
});

describe("speed", () => {
  it("canonicalizes 100k rules (prints the time, asserts nothing about it)", () => {
    const inputs = SAVE_NORMALIZATION_CASES.map((c) => [c.input, c.family] as const);
    const start = performance.now();
    let chars = 0;
    for (let i = 0; i < 100_000; i++) {
      const [input, family] = inputs[i % inputs.length]!;
      chars += canonicalizeRule(input, { family }).length;
    }
    const ms = performance.now() - start;
    console.log(`canonicalizeRule: 100000 rules in ${ms.toFixed(0)} ms (${((ms * 1000) / 100_000).toFixed(2)} µs/rule, ${chars} chars out)`);
    expect(chars).toBeGreaterThan(0);
  });
});
