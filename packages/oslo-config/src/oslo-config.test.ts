import { describe, expect, it } from "vitest";
import { OsloConfig } from "./oslo-config.js";
import { OsloConfigError } from "./oslo-config-error.js";
import { parseOsloIni } from "./oslo-ini-parser.js";
import { osloOption } from "./oslo-option.js";
import { booleanType, floatType, integerType, multiType, stringType } from "./oslo-types.js";

const NEUTRON = "/etc/neutron/neutron.conf";
const L3 = "/etc/neutron/l3_agent.ini";
const config = (files: Record<string, string[]>, options: Parameters<OsloConfig["register"]>[0][] = []) =>
  new OsloConfig(
    Object.entries(files).map(([file, lines]) => parseOsloIni(lines.join("\n"), file)),
    options,
  );

const statePath = osloOption({ group: "DEFAULT", name: "state_path", type: stringType(), default: "/var/lib/neutron" });
const socket = osloOption({ group: "DEFAULT", name: "metadata_proxy_socket", type: stringType(), default: "$state_path/metadata_proxy" });
const reportInterval = osloOption({ group: "AGENT", name: "report_interval", type: floatType(), default: 30 });

describe("OsloConfig", () => {
  it("gives the latest file's last line, with where it was written", () => {
    const c = config({ [NEUTRON]: ["[agent]", "report_interval = 10"], [L3]: ["[AGENT]", "report_interval = 20", "report_interval = 25"] });
    expect(c.get(reportInterval)).toEqual({
      value: 25,
      source: { file: L3, line: 3, section: "AGENT", option: "report_interval", value: "25" },
      sources: [{ file: L3, line: 3, section: "AGENT", option: "report_interval", value: "25" }],
    });
    expect(c.files).toEqual([NEUTRON, L3]);
  });

  it("gives the default when no file sets it, with no source", () => {
    expect(config({ [L3]: ["[DEFAULT]"] }).get(reportInterval)).toEqual({ value: 30, source: undefined, sources: [] });
  });

  it("a default that interpolates a value the files set depends on that line", () => {
    const c = config({ [NEUTRON]: ["[DEFAULT]", "state_path = /srv/neutron"], [L3]: ["[DEFAULT]"] }, [statePath]);
    const value = c.get(socket);
    expect(value.value).toBe("/srv/neutron/metadata_proxy");
    expect(value.source).toBeUndefined();
    expect(value.sources).toEqual([{ file: NEUTRON, line: 2, section: "DEFAULT", option: "state_path", value: "/srv/neutron" }]);
    // Unset, it is Neutron's default through and through.
    expect(config({ [L3]: [] }, [statePath]).get(socket)).toEqual({ value: "/var/lib/neutron/metadata_proxy", source: undefined, sources: [] });
  });

  it("takes an option it was not told about as text from the files when a value names it", () => {
    const c = config({ [L3]: ["[DEFAULT]", "base = /opt", "metadata_proxy_socket = $base/sock"] });
    expect(c.get(socket).value).toBe("/opt/sock");
  });

  it("a value of the wrong type fails naming file, line, section, option and value", () => {
    const c = config({ [L3]: ["[DEFAULT]", "", "[agent]", "report_interval = soon"] });
    expect(() => c.get(reportInterval)).toThrow(new OsloConfigError("OSLO_CONFIG_VALUE", "not a number", { file: L3, line: 4, section: "agent", option: "report_interval", value: "soon" }));
    expect(() => c.get(reportInterval)).toThrow(`${L3} line 4: [agent] report_interval = "soon": not a number`);
  });

  it("a $name that is no option, or a value that refers back to itself, fails naming the line", () => {
    const c = config({ [L3]: ["[DEFAULT]", "metadata_proxy_socket = $nowhere/x", "a = $b", "b = ${a}"] }, [osloOption({ group: "DEFAULT", name: "a", type: stringType() })]);
    expect(() => c.get(socket)).toThrow(`${L3} line 2: [DEFAULT] metadata_proxy_socket = "$nowhere/x": $nowhere names no option of [DEFAULT] that is set or known`);
    expect(() => c.get(osloOption({ group: "DEFAULT", name: "a", type: stringType() }))).toThrow(/refers back to itself: \[DEFAULT\] a → \[DEFAULT\] b → \[DEFAULT\] a/);
  });

  it("reads deprecated names, the current name first within a file, a later file first across files", () => {
    const ssl = osloOption({ group: "oslo_messaging_rabbit", name: "ssl", type: booleanType(), default: false, deprecatedNames: [{ name: "rabbit_use_ssl" }] });
    expect(config({ [L3]: ["[oslo_messaging_rabbit]", "rabbit_use_ssl = yes", "ssl = no"] }).get(ssl).value).toBe(false);
    expect(config({ [NEUTRON]: ["[oslo_messaging_rabbit]", "ssl = no"], [L3]: ["[oslo_messaging_rabbit]", "rabbit_use_ssl = yes"] }).get(ssl).source?.option).toBe("rabbit_use_ssl");
  });

  it("a multi-valued option takes every line of every file, earliest first, each a source", () => {
    const m = osloOption({ group: "DEFAULT", name: "m", type: multiType(integerType()) });
    const value = config({ [NEUTRON]: ["[DEFAULT]", "m = 1", "m = 2"], [L3]: ["[DEFAULT]", "m = 3"] }).get(m);
    expect(value.value).toEqual([1, 2, 3]);
    expect(value.sources.map((s) => `${s.file}:${s.line}`)).toEqual([`${NEUTRON}:2`, `${NEUTRON}:3`, `${L3}:2`]);
    expect(value.source?.file).toBe(L3);
  });

  it("lists every assignment, and tells which belong to an option", () => {
    const c = config({ [NEUTRON]: ["[DEFAULT]", "debug = true"], [L3]: ["[agent]", "report_interval = 5"] });
    expect(c.entries().map((e) => `${e.file} [${e.section}] ${e.key}`)).toEqual([`${NEUTRON} [DEFAULT] debug`, `${L3} [agent] report_interval`]);
    expect(OsloConfig.isEntryOf(reportInterval, { section: "agent", key: "report_interval" })).toBe(true);
    expect(OsloConfig.isEntryOf(reportInterval, { section: "DEFAULT", key: "report_interval" })).toBe(false);
  });
});
