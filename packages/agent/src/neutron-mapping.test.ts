import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { z } from "zod";
import { composeAgentConfig } from "./agent-config.js";
import { ConfigError } from "./agent-errors.js";
import { loadConfig } from "./config-loader.js";
import { NeutronConfig, NeutronConfigError } from "./neutron-config.js";
import { mapNeutronConfig } from "./neutron-mapping.js";
import { createPlugin } from "./plugin.js";

const tmp = mkdtempSync(join(tmpdir(), "neutron-mapping-"));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));
let files = 0;
function file(name: string, lines: string[]): string {
  const path = join(tmp, `${++files}-${name}`);
  writeFileSync(path, lines.join("\n"));
  return path;
}

/** A plugin like l3-nat: a key and an option set from Neutron, an option it only checks, one it reads. */
const routers = createPlugin({
  name: "routers",
  version: "1.0.0",
  framework: "*",
  options: z.strictObject({ interface_driver: z.string().default("linuxbridge"), mark: z.string().regex(/^0x[0-9a-f]+$/).default("0x1") }),
  settings: {
    keys: { metadata_port: z.number().int().min(1).max(65535).default(9697) },
    neutron: {
      keys: { metadata_port: { section: "DEFAULT", option: "metadata_port", type: "port" } },
      options: {
        interface_driver: {
          section: "DEFAULT",
          option: "interface_driver",
          type: "string",
          values: { linuxbridge: "linuxbridge", "neutron.agent.linux.interface.NullDriver": "noop", null: "noop" },
          unsupported: "no Open vSwitch here",
        },
        mark: { section: "DEFAULT", option: "metadata_access_mark", type: "string" },
      },
      reads: [
        { section: "DEFAULT", option: "agent_mode", type: "string", default: "legacy", values: { legacy: "legacy" }, unsupported: "no DVR" },
        { section: "AGENT", option: "extensions", type: "list", values: { fwaas_v2: "fwaas_v2" } },
        { section: "DEFAULT", option: "my_setting", type: "integer", default: 3 },
      ],
    },
  },
  register() {},
});
const composed = composeAgentConfig([routers]);

function layerOf(...paths: string[]) {
  return mapNeutronConfig(NeutronConfig.read(paths.map((f) => ({ file: f }))), composed.neutron);
}

describe("mapNeutronConfig", () => {
  it("gives each set option's value to its key or plugin option, with its line; unset ones leave ours", () => {
    const neutron = file("neutron.conf", ["[DEFAULT]", "debug = True", "interface_driver = openvswitch", "core_plugin = ml2", "[agent]", "root_helper = sudo"]);
    const l3 = file("l3_agent.ini", ["[DEFAULT]", "interface_driver = neutron.agent.linux.interface.NullDriver", "metadata_port = 9798", "[AGENT]", "comment_iptables_rules = false"]);
    const layer = layerOf(neutron, l3);
    expect(layer.problems).toEqual([]);
    expect(layer.values).toEqual({ log_level: "debug", comment_iptables_rules: false, metadata_port: 9798, plugin_options: { routers: { interface_driver: "noop" } } });
    expect(layer.taken.find((t) => t.path === "plugin_options.routers.interface_driver")?.source).toEqual({
      file: l3,
      line: 2,
      section: "DEFAULT",
      option: "interface_driver",
      value: "neutron.agent.linux.interface.NullDriver",
    });
    expect(layer.unused.map((e) => `[${e.section}] ${e.key}`)).toEqual(["[DEFAULT] core_plugin", "[agent] root_helper"]);
  });

  it("[DEFAULT] debug = false leaves the log level alone", () => {
    expect(layerOf(file("a.conf", ["[DEFAULT]", "debug = false"])).values).toEqual({});
  });

  it("an option two plugins read is one problem when its value is bad, not two", () => {
    const reporter = (name: string) =>
      createPlugin({
        name,
        version: "1.0.0",
        framework: "*",
        settings: {
          keys: { [`${name}_interval`]: z.number().default(30) },
          neutron: { keys: { [`${name}_interval`]: { section: "AGENT", option: "report_interval", type: "float" } } },
        },
        register() {},
      });
    const conf = file("neutron.conf", ["[agent]", "report_interval = soon"]);
    const layer = mapNeutronConfig(NeutronConfig.read([{ file: conf }]), composeAgentConfig([reporter("a"), reporter("b")]).neutron);
    expect(layer.problems.map((p) => `${p.path}: ${p.message}`)).toEqual(['[agent] report_interval: "soon": not a number (line 2)']);
  });

  it("refuses values outside an option's values (checked-only options too), values our schemas refuse, and values oslo.config refuses", () => {
    const l3 = file("l3_agent.ini", [
      "[DEFAULT]",
      "interface_driver = openvswitch",
      "agent_mode = dvr",
      "metadata_port = 0",
      "metadata_access_mark = 0xZZ",
      "my_setting = many",
      "[agent]",
      "extensions = fwaas_v2, port_forwarding",
      "comment_iptables_rules = maybe",
    ]);
    const layer = layerOf(l3);
    expect(layer.values).toEqual({});
    expect(layer.problems).toEqual([
      { source: l3, path: "[agent] comment_iptables_rules", message: '"maybe": expected a boolean: true/false, yes/no, on/off or 1/0 (line 9)' },
      { source: l3, path: "[DEFAULT] metadata_port", message: '"0" is not valid for metadata_port: Too small: expected number to be >=1 (line 4)' },
      {
        source: l3,
        path: "[DEFAULT] interface_driver",
        message: '"openvswitch" is not supported: no Open vSwitch here (supported: linuxbridge, neutron.agent.linux.interface.NullDriver, null) (line 2)',
      },
      { source: l3, path: "[DEFAULT] metadata_access_mark", message: expect.stringMatching(/^"0xZZ" is not valid for plugin_options\.routers\.mark: .* \(line 5\)$/) },
      { source: l3, path: "[DEFAULT] agent_mode", message: '"dvr" is not supported: no DVR (supported: legacy) (line 3)' },
      { source: l3, path: "[agent] extensions", message: '"port_forwarding" in "fwaas_v2, port_forwarding" is not supported (supported: fwaas_v2) (line 8)' },
      { source: l3, path: "[DEFAULT] my_setting", message: '"many": not an integer (line 6)' },
    ]);
  });

  it("a default that interpolates a value the files set counts as set, and is blamed on that line", () => {
    const interpolating = createPlugin({
      name: "proxy",
      version: "1.0.0",
      framework: "*",
      options: z.strictObject({ socket: z.string().optional() }),
      settings: { keys: {}, neutron: { options: { socket: { section: "DEFAULT", option: "metadata_proxy_socket", type: "string", default: "$state_path/metadata_proxy" } } } },
      register() {},
    });
    const targets = composeAgentConfig([interpolating]).neutron;
    const conf = file("neutron.conf", ["[DEFAULT]", "state_path = /srv/neutron"]);
    const layer = mapNeutronConfig(NeutronConfig.read([{ file: conf }]), targets);
    expect(layer.values).toEqual({ state_path: "/srv/neutron", plugin_options: { proxy: { socket: "/srv/neutron/metadata_proxy" } } });
    expect(mapNeutronConfig(NeutronConfig.read([{ file: file("empty.conf", ["[DEFAULT]"]) }]), targets).values).toEqual({});
  });
});

describe("loadConfig with Neutron's files", () => {
  it("Neutron's files < the config file < the flags; one plugin's options merge option by option", () => {
    const l3 = file("l3_agent.ini", ["[DEFAULT]", "metadata_port = 9798", "interface_driver = null", "metadata_access_mark = 0x4", "state_path = /srv/n"]);
    const yaml = file("agent.yaml", ["metadata_port: 9900", "plugin_options:", "  routers:", "    mark: '0x8'"]);
    const config = loadConfig({ schema: composed.schema, file: yaml, overrides: { state_path: "/from/flag" }, defaults: { wrap_name: "w" }, neutron: layerOf(l3) });
    expect(config).toMatchObject({ metadata_port: 9900, state_path: "/from/flag", plugin_options: { routers: { interface_driver: "noop", mark: "0x8" } } });
    expect(loadConfig({ schema: composed.schema, overrides: {}, defaults: { wrap_name: "w" }, neutron: layerOf(l3) })).toMatchObject({ metadata_port: 9798, state_path: "/srv/n" });
  });

  it("a refused value is moot where the config file or a flag sets its key; options only checked stay refused", () => {
    // A neutron-linuxbridge-agent beside ours says firewall_driver = noop in the file both read; here
    // the same with interface_driver (a plugin option) and metadata_port (a key our schema refuses at 0).
    const l3 = file("l3_agent.ini", ["[DEFAULT]", "interface_driver = openvswitch", "metadata_port = 0", "agent_mode = dvr"]);
    const layer = layerOf(l3);
    expect(layer.overridable?.map((o) => o.path)).toEqual(["metadata_port", "plugin_options.routers.interface_driver"]);
    const yaml = file("agent.yaml", ["plugin_options:", "  routers:", "    interface_driver: noop"]);
    let error: unknown;
    try {
      loadConfig({ schema: composed.schema, file: yaml, overrides: { metadata_port: 9697 }, defaults: { wrap_name: "w" }, neutron: layer });
    } catch (err) {
      error = err;
    }
    expect((error as ConfigError).problems).toEqual([{ source: l3, path: "[DEFAULT] agent_mode", message: '"dvr" is not supported: no DVR (supported: legacy) (line 4)' }]);

    const fine = file("l3_agent.ini", ["[DEFAULT]", "interface_driver = openvswitch", "metadata_port = 0"]);
    const config = loadConfig({ schema: composed.schema, file: yaml, overrides: { metadata_port: "9697" }, defaults: { wrap_name: "w" }, neutron: layerOf(fine) });
    expect(config).toMatchObject({ metadata_port: 9697, plugin_options: { routers: { interface_driver: "noop" } } });
    // Without the higher layer, both are refused as before.
    expect(() => loadConfig({ schema: composed.schema, overrides: {}, defaults: { wrap_name: "w" }, neutron: layerOf(fine) })).toThrow(/interface_driver[\s\S]*metadata_port|metadata_port[\s\S]*interface_driver/);
  });

  it("lists Neutron's problems with the config file's", () => {
    const l3 = file("l3_agent.ini", ["[DEFAULT]", "agent_mode = dvr"]);
    const yaml = file("agent.yaml", ["metadata_prot: 1"]);
    let error: unknown;
    try {
      loadConfig({ schema: composed.schema, file: yaml, overrides: {}, defaults: { wrap_name: "w" }, neutron: layerOf(l3) });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).message).toContain("invalid configuration (2 problems)");
    expect((error as ConfigError).message).toContain(`  - ${l3} [DEFAULT] agent_mode: "dvr" is not supported: no DVR (supported: legacy) (line 2)`);
    expect((error as ConfigError).message).toContain("metadata_prot: unknown key; did you mean metadata_port?");
  });
});

describe("NeutronConfig", () => {
  it("reading lists every file it cannot use", () => {
    const broken = file("broken.ini", ["[DEFAULT", "a = 1"]);
    expect(() => NeutronConfig.read([{ file: broken }, { file: join(tmp, "missing.conf") }])).toThrow(NeutronConfigError);
    try {
      NeutronConfig.read([{ file: broken }, { file: join(tmp, "missing.conf") }]);
    } catch (err) {
      expect((err as NeutronConfigError).code).toBe("NEUTRON_CONFIG_INVALID");
      expect((err as NeutronConfigError).problems.map((p) => p.message)).toEqual([`${broken} line 1: a section header must end with ]: "[DEFAULT"`, `${join(tmp, "missing.conf")}: config file not found`]);
    }
  });

  it("with no files, every option is Neutron's default", () => {
    expect(NeutronConfig.none.get({ section: "AGENT", option: "report_interval", type: "float", default: 30 })).toEqual({ value: 30, source: undefined, sources: [] });
  });
});

describe("composeAgentConfig and Neutron options", () => {
  it("collects the framework's options first, then each plugin's, with what they set", () => {
    const owners = composed.neutron.map((t) => `${t.owner}: [${t.use.section}] ${t.use.option} → ${t.key ?? (t.pluginOption ? `${t.pluginOption.plugin}.${t.pluginOption.option}` : "(read)")}`);
    expect(owners.slice(0, 3)).toEqual(["the framework: [DEFAULT] state_path → state_path", "the framework: [AGENT] comment_iptables_rules → comment_iptables_rules", "the framework: [DEFAULT] debug → log_level"]);
    expect(owners.filter((o) => o.startsWith("routers"))).toEqual([
      "routers: [DEFAULT] metadata_port → metadata_port",
      "routers: [DEFAULT] interface_driver → routers.interface_driver",
      "routers: [DEFAULT] metadata_access_mark → routers.mark",
      "routers: [DEFAULT] agent_mode → (read)",
      "routers: [AGENT] extensions → (read)",
      "routers: [DEFAULT] my_setting → (read)",
    ]);
  });

  it("refuses a mapping onto a key the plugin does not own, or an option its schema does not have", () => {
    const stray = (neutron: object) =>
      createPlugin({ name: "stray", version: "1.0.0", framework: "*", options: z.strictObject({ a: z.string().optional() }), settings: { keys: { own: z.string().optional() }, neutron }, register() {} });
    expect(() => composeAgentConfig([stray({ keys: { wrap_name: { section: "DEFAULT", option: "x", type: "string" } } })])).toThrow(
      "plugin stray maps Neutron's [DEFAULT] x onto config key wrap_name, which is not one of its settings",
    );
    expect(() => composeAgentConfig([stray({ options: { b: { section: "DEFAULT", option: "y", type: "string" } } })])).toThrow(
      "plugin stray maps Neutron's [DEFAULT] y onto its option b, which its options schema does not have",
    );
  });
});
