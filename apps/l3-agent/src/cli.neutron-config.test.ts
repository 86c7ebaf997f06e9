/**
 * The l3-agent binary started as neutron-l3-agent is, with Neutron's own files (`--config-file`,
 * `--config-dir`): Debian's neutron.conf and l3_agent.ini as the package installs them
 * (test-fixtures/neutron, full of comments), and a copy of l3_agent.ini an operator edited for the
 * Linux bridge. `plan` without a state never reaches the kernel: what the files gave is read from
 * the agent's logs (the values taken, the options it does not use, the plugins' settings).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { runCli, type LogLine } from "@chainwarden/testing";

const APP_DIR = fileURLToPath(new URL("..", import.meta.url));
const BIN = join(APP_DIR, "bin", "l3-agent.js");
const NEUTRON = join(APP_DIR, "test-fixtures", "neutron");
const NEUTRON_CONF = join(NEUTRON, "neutron.conf");
const DEBIAN_L3 = join(NEUTRON, "l3_agent.ini");
const OPERATOR_L3 = join(NEUTRON, "l3_agent.linuxbridge.ini");
const CONF_D = join(NEUTRON, "agent.conf.d");
// Debian's order: neutron.conf, the agent.conf.d directory, then the agent's own file.
const OPERATOR_ARGS = ["--config-file", NEUTRON_CONF, "--config-dir", CONF_D, "--config-file", OPERATOR_L3];

const tmp = mkdtempSync(join(tmpdir(), "l3-agent-neutron-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let files = 0;
function file(name: string, text: string): string {
  const path = join(tmp, `${++files}-${name}`);
  writeFileSync(path, text);
  return path;
}

function logs(stderr: string): LogLine[] {
  return stderr
    .split("\n")
    .filter((l) => l.startsWith("{"))
    .map((l) => JSON.parse(l) as LogLine);
}
const logged = (stderr: string, msg: string) => logs(stderr).find((l) => l.msg === msg);

describe.concurrent("l3-agent: Neutron's config files", () => {
  it("Debian's files as installed are refused: l3_agent.ini's interface_driver = openvswitch, named with its line (exit 2)", async () => {
    const r = await runCli(BIN, ["plan", "--config-file", NEUTRON_CONF, "--config-file", DEBIAN_L3]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid configuration (1 problem)");
    expect(r.stderr).toContain(`  - ${DEBIAN_L3} [DEFAULT] interface_driver: "openvswitch" is not supported: `);
    expect(r.stderr).toMatch(/\(supported: linuxbridge, neutron\.agent\.linux\.interface\.BridgeInterfaceDriver, null, neutron\.agent\.linux\.interface\.NullDriver\) \(line 18\)/);
    expect(r.stdout).toBe("");
  });

  it("takes what the operator's files set (a later file wins, --config-dir where it stands), at debug level as [DEFAULT] debug asks", async () => {
    const r = await runCli(BIN, ["plan", ...OPERATOR_ARGS]);
    // No state: nothing is planned; the configuration was accepted.
    expect(r.code).toBe(1);
    expect(r.stdout).toBe("# no desired state was read: nothing would be changed\n");
    const read = logged(r.stderr, "Neutron config files read");
    expect(read?.files).toEqual([NEUTRON_CONF, join(CONF_D, "10-state-path.conf"), OPERATOR_L3]);
    const from = (file: string, option: string, line: number) => `${file} ${option} (line ${line})`;
    expect(read?.taken).toEqual({
      state_path: { value: "/var/lib/chainwarden-neutron", from: from(join(CONF_D, "10-state-path.conf"), "[DEFAULT] state_path", 3) },
      log_level: { value: "debug", from: from(OPERATOR_L3, "[DEFAULT] debug", 160) },
      metadata_port: { value: 9798, from: from(OPERATOR_L3, "[DEFAULT] metadata_port", 45) },
      // neutron.conf says openvswitch too; l3_agent.ini comes later and wins.
      "plugin_options.l3-nat.interface_driver": { value: "linuxbridge", from: from(OPERATOR_L3, "[DEFAULT] interface_driver", 18) },
      // Neutron's default $state_path/metadata_proxy, with the state_path agent.conf.d sets.
      "plugin_options.l3-nat.metadata_upstream": { value: "/var/lib/chainwarden-neutron/metadata_proxy", from: from(join(CONF_D, "10-state-path.conf"), "[DEFAULT] state_path", 3) },
      "plugin_options.l3-nat.use_random_fully": { value: false, from: from(OPERATOR_L3, "[agent] use_random_fully", 282) },
      "plugin_options.l3-nat.check_child_processes_interval": { value: 30, from: from(OPERATOR_L3, "[agent] check_child_processes_interval", 283) },
    });
    const unused = logged(r.stderr, "Neutron options this agent does not use")?.options as string[];
    expect(unused).toEqual(expect.arrayContaining(["[DEFAULT] core_plugin", "[agent] root_helper", "[database] connection", "[DEFAULT] ovs_use_veth"]));
    expect(unused).not.toContain("[DEFAULT] interface_driver");
    expect(unused).not.toContain("[agent] extensions");
    expect(logged(r.stderr, "l3-nat registered")).toMatchObject({ interfaceDriver: "linuxbridge" });
  });

  it("the YAML config wins over Neutron's files, and a flag over both", async () => {
    const yaml = file("agent.yaml", "metadata_port: 9900\nlog_level: debug\nplugin_options:\n  l3-nat:\n    use_random_fully: true\n");
    const r = await runCli(BIN, ["plan", ...OPERATOR_ARGS, "--config", yaml, "--metadata-port", "9901"]);
    expect(r.code).toBe(1);
    const taken = logged(r.stderr, "Neutron config files read")?.taken as Record<string, unknown>;
    expect(Object.keys(taken)).not.toContain("metadata_port");
    expect(Object.keys(taken)).not.toContain("plugin_options.l3-nat.use_random_fully");
    // The other options of l3-nat still come from Neutron's file.
    expect(taken["plugin_options.l3-nat.interface_driver"]).toMatchObject({ value: "linuxbridge" });
  });

  it("lists every value it does not support, each with file, section, option, value and line (exit 2)", async () => {
    const ini = file(
      "l3_agent.ini",
      [
        "[DEFAULT]",
        "agent_mode = dvr_snat",
        "interface_driver = neutron.agent.linux.interface.OVSInterfaceDriver",
        "metadata_port = 0",
        "handle_internal_only_routers = false",
        "[agent]",
        "extensions = fwaas_v2,port_forwarding",
        "check_child_processes_action = exit",
        "report_interval = soon",
        "[fwaas]",
        "driver = openvswitch",
        "",
      ].join("\n"),
    );
    const r = await runCli(BIN, ["status", "--config-file", NEUTRON_CONF, "--config-file", ini]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid configuration (8 problems)");
    const problem = (option: string, text: string, line: number) => expect(r.stderr).toMatch(new RegExp(`^  - ${ini} \\[${option.replace(" ", "\\] ")}: .*${text}.*\\(line ${line}\\)$`, "m"));
    problem("DEFAULT agent_mode", '"dvr_snat" is not supported: DVR is not implemented', 2);
    problem("DEFAULT interface_driver", '"neutron\\.agent\\.linux\\.interface\\.OVSInterfaceDriver" is not supported', 3);
    problem("DEFAULT metadata_port", '"0" is not valid for metadata_port', 4);
    problem("DEFAULT handle_internal_only_routers", '"false" is not supported', 5);
    problem("agent extensions", '"port_forwarding" in "fwaas_v2,port_forwarding" is not supported', 7);
    problem("agent check_child_processes_action", '"exit" is not supported', 8);
    problem("agent report_interval", '"soon": not a number', 9);
    problem("fwaas driver", '"openvswitch" is not supported', 11);
    expect(r.stdout).toBe("");
  });

  it("a file that does not parse, a missing file and a missing directory are refused, each named (exit 2)", async () => {
    const broken = file("broken.ini", "[DEFAULT]\ndebug = true\nthis line has no value\n");
    const missing = join(tmp, "no-such.ini");
    const r = await runCli(BIN, ["apply", "--once", "--config-file", broken, "--config-file", missing, "--config-dir", join(tmp, "no-such.d")]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain("invalid configuration (3 problems)");
    expect(r.stderr).toContain(`  - ${broken}: neither '=' nor ':' in an option line: "this line has no value" (line 3)`);
    expect(r.stderr).toContain(`  - ${missing}: config file not found`);
    expect(r.stderr).toContain(`  - ${join(tmp, "no-such.d")}: config directory not found`);
  });

  it("run refuses them too, before it starts anything", async () => {
    const r = await runCli(BIN, ["run", "--config-file", DEBIAN_L3]);
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${DEBIAN_L3} [DEFAULT] interface_driver: "openvswitch" is not supported`);
  });

  it("--help lists --config-file and --config-dir, and what Neutron's files set and refuse", async () => {
    const r = await runCli(BIN, ["--help"]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^ {2}--config-file FILE +a Neutron config file .*repeatable.*$/m);
    expect(r.stdout).toMatch(/^ {2}--config-dir DIR +a directory of Neutron config files.*$/m);
    // One line each: the next line is the next flag.
    expect(r.stdout).toMatch(/--config-file FILE .*\n {2}--config-dir DIR .*\n {2}--state PATH/);
    expect(r.stdout).toContain("Neutron config files (--config-file, --config-dir; precedence: Neutron's files < --config < flags):");
    expect(r.stdout).toMatch(/\[DEFAULT\] interface_driver →\s+plugin_options\.l3-nat\.interface_driver \(linuxbridge\|null\)/);
    expect(r.stdout).toMatch(/\[DEFAULT\] agent_mode \(legacy\)/);
  });
});
