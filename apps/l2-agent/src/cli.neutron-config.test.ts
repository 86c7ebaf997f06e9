/**
 * The l2-agent binary started as neutron-linuxbridge-agent is, with Neutron's own files
 * (`--config-file`): Debian's neutron.conf and linuxbridge_agent.ini as the package installs them
 * (test-fixtures/neutron, full of comments), and a copy an operator edited. `plan` without a state
 * never reaches the kernel: what the files gave is read from the agent's logs.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, type LogLine } from "@chainwarden/testing";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l2-agent.js");
const NEUTRON = join(APP_DIR, "test-fixtures", "neutron");
const NEUTRON_CONF = join(NEUTRON, "neutron.conf");
const DEBIAN_LB = join(NEUTRON, "linuxbridge_agent.ini");
const OPERATOR_LB = join(NEUTRON, "linuxbridge_agent.operator.ini");

const tmp = mkdtempSync(join(tmpdir(), "l2-agent-neutron-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let files = 0;
function file(name: string, text: string): string {
  const path = join(tmp, `${++files}-${name}`);
  writeFileSync(path, text);
  return path;
}

const logged = (stderr: string, msg: string) =>
  stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as LogLine)
    .find((l) => l.msg === msg);

describe.concurrent("l2-agent: Neutron's config files", () => {
  it("Debian's files as installed are accepted: nothing they set is unsupported, and they set nothing of ours", async () => {
    const r = await runCli(BIN, ["plan", "--config-file", NEUTRON_CONF, "--config-file", DEBIAN_LB]);
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("# no desired state was read: nothing would be changed\n");
    expect(logged(r.stderr, "Neutron config files read")).toMatchObject({ files: [NEUTRON_CONF, DEBIAN_LB], taken: {} });
  });

  it("takes what the operator's file sets, at debug level as [DEFAULT] debug asks", async () => {
    const r = await runCli(BIN, ["plan", "--config-file", NEUTRON_CONF, "--config-file", OPERATOR_LB]);
    expect(r.code).toBe(1);
    const from = (option: string, line: number) => `${OPERATOR_LB} ${option} (line ${line})`;
    expect(logged(r.stderr, "Neutron config files read")?.taken).toEqual({
      log_level: { value: "debug", from: from("[DEFAULT] debug", 16) },
      firewall_driver: { value: "neutron.agent.linux.iptables_firewall.IptablesFirewallDriver", from: from("[securitygroup] firewall_driver", 201) },
      enable_ipset: { value: false, from: from("[securitygroup] enable_ipset", 209) },
      polling_interval: { value: 5, from: from("[agent] polling_interval", 142) },
    });
    expect(logged(r.stderr, "security group firewall registered")).toMatchObject({ firewallDriver: "iptables", enableIpset: false, pollingIntervalMs: 5000 });
    const unused = logged(r.stderr, "Neutron options this agent does not use")?.options as string[];
    // neutron.conf's interface_driver is the l3 agent's business.
    expect(unused).toEqual(expect.arrayContaining(["[DEFAULT] interface_driver", "[DEFAULT] core_plugin", "[agent] root_helper"]));
  });

  it("a flag wins over Neutron's files", async () => {
    const r = await runCli(BIN, ["plan", "--config-file", OPERATOR_LB, "--enable-ipset"]);
    expect(r.code).toBe(1);
    expect(Object.keys(logged(r.stderr, "Neutron config files read")?.taken as object)).not.toContain("enable_ipset");
    expect(logged(r.stderr, "security group firewall registered")).toMatchObject({ enableIpset: true });
  });

  it("beside neutron-linuxbridge-agent: its file says firewall_driver = noop, and --firewall-driver (or the config file) makes that moot", async () => {
    const ini = file("linuxbridge_agent.ini", ["[securitygroup]", "firewall_driver = noop", "enable_ipset = true", ""].join("\n"));
    const refused = await runCli(BIN, ["plan", "--config-file", NEUTRON_CONF, "--config-file", ini]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain(`  - ${ini} [securitygroup] firewall_driver: "noop" is not supported`);
    const r = await runCli(BIN, ["plan", "--config-file", NEUTRON_CONF, "--config-file", ini, "--firewall-driver", "iptables", "--log-level", "debug"]);
    expect(r.code, r.stderr).toBe(1); // no state: nothing to plan, as with Debian's files above
    expect(logged(r.stderr, "security group firewall registered")).toMatchObject({ firewallDriver: "iptables", enableIpset: true });
    const yaml = file("l2-agent.yaml", "firewall_driver: iptables\n");
    expect((await runCli(BIN, ["plan", "--config-file", NEUTRON_CONF, "--config-file", ini, "--config", yaml])).code).toBe(1);
  });

  it("refuses what it does not do, each with file, section, option, value and line (exit 2)", async () => {
    const ini = file(
      "linuxbridge_agent.ini",
      ["[DEFAULT]", "debug = yes", "[agent]", "extensions = qos", "polling_interval = 0", "[securitygroup]", "firewall_driver = openvswitch", "enable_security_group = False", ""].join("\n"),
    );
    const r = await runCli(BIN, ["status", "--config-file", NEUTRON_CONF, "--config-file", ini]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid configuration (4 problems)");
    expect(r.stderr).toContain(`  - ${ini} [agent] extensions: "qos" in "qos" is not supported: no l2 agent extension`);
    expect(r.stderr).toMatch(new RegExp(`  - ${ini} \\[agent\\] polling_interval: "0" is not valid for polling_interval: .* \\(line 5\\)`));
    expect(r.stderr).toMatch(
      new RegExp(`  - ${ini} \\[securitygroup\\] firewall_driver: "openvswitch" is not supported: this agent is Neutron's iptables firewall.*\\(supported: iptables, .*\\) \\(line 7\\)`),
    );
    expect(r.stderr).toContain(`  - ${ini} [securitygroup] enable_security_group: "False" is not supported: security groups are this agent's only job`);
  });

  it("--help lists --config-file and --config-dir, and what Neutron's files set and refuse", async () => {
    const r = await runCli(BIN, ["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/--config-file FILE .*\n {2}--config-dir DIR .*\n/);
    expect(r.stdout).toMatch(/\[SECURITYGROUP\] firewall_driver → firewall_driver\s+\(iptables\|iptables_hybrid\)/);
    expect(r.stdout).toMatch(/\[SECURITYGROUP\] enable_security_group \(true\)/);
  });
});
