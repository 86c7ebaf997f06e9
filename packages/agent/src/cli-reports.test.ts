import { describe, expect, it } from "vitest";
import { applyFailures, applySucceeded, applySummary, formatPlan, formatStatus, planFailures, planSucceeded, statusInSync } from "./cli-reports.js";
import type { PlanReport, StatusReport, SyncReport } from "./loop-reports.js";

const family = (f: 4 | 6, input: string, lines: number) => ({ family: f, namespace: "ns", input, lines, tables: [], changes: [], full: true });
const problem = { source: "state.yaml", path: "routers.0._floatingips.0", resource: "r1", message: "router r1: floating_ip_adress: did you mean floating_ip_address?" };

describe("formatPlan", () => {
  it("prints # headers around the exact restore input, and no changes", () => {
    const report: PlanReport = {
      stateRead: true,
      problems: [],
      namespaces: [
        { namespace: "ns", resources: ["chain_set/a"], held: [], actions: [], families: [family(4, "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", 1), family(6, "", 0)] },
        { namespace: undefined, resources: [], held: [], actions: [], families: [{ ...family(4, "", 0), namespaceMissing: true }] },
        { namespace: "broken", resources: ["chain_set/b"], held: [], actions: [], families: [], error: "the handler failed\nwith details" },
      ],
    };
    expect(formatPlan(report)).toBe(
      [
        "# namespace ns: chain_set/a",
        "# IPv4: 1 line",
        "*filter",
        "-A INPUT -j ACCEPT",
        "COMMIT",
        "# IPv6: no changes",
        "# namespace (host): no resources",
        "# IPv4: no changes (namespace does not exist yet: input for a fresh one)",
        "# namespace broken: chain_set/b",
        "# error (nothing planned here): the handler failed",
        "",
      ].join("\n"),
    );
    expect(formatPlan({ stateRead: true, problems: [], namespaces: [] })).toBe("# no namespaces in the desired state: no changes\n");
  });

  it("names a handler that failed in the plan, plans the rest, and fails plan", () => {
    const report: PlanReport = {
      stateRead: true,
      problems: [],
      namespaces: [
        {
          namespace: "ns",
          resources: ["chain_set/a", "guard/g1"],
          held: ["guard/g1"],
          actions: [],
          families: [family(4, "*filter\n-A INPUT -j ACCEPT\nCOMMIT\n", 1)],
          failedHandlers: [{ kind: "guard", plugin: "acme", error: "guard backend unreachable\nat line 3" }],
        },
      ],
    };
    expect(formatPlan(report)).toBe(
      [
        "# namespace ns: chain_set/a, guard/g1",
        "# held as the kernel has it (invalid input or a failed apply): guard/g1",
        "# the guard handler of plugin acme failed (its resources are held as the kernel has them): guard backend unreachable",
        "# IPv4: 1 line",
        "*filter",
        "-A INPUT -j ACCEPT",
        "COMMIT",
        "",
      ].join("\n"),
    );
    expect(planSucceeded(report)).toBe(false);
    expect(planFailures("l2-agent", report)).toBe(
      "l2-agent: the guard handler of plugin acme failed in namespace ns; planned as a run would apply it (its resources held): guard backend unreachable\nat line 3\n",
    );
  });

  it("lists removals (stale namespaces, chains, host objects), held resources, waiting ports and the problems", () => {
    const removal = { ...family(4, "*filter\n-F neutron-l3-agent-x\n-X neutron-l3-agent-x\nCOMMIT\n", 2), changes: [{ table: "filter", chain: "neutron-l3-agent-x", added: 0, removed: 1, deleted: true }] };
    const report: PlanReport = {
      stateRead: true,
      problems: [problem],
      namespaces: [
        { namespace: "qrouter-2", resources: [], held: [], families: [], stale: true, actions: [{ verb: "remove", object: "namespace", name: "qrouter-2", resource: "router/2" }] },
        {
          namespace: "qrouter-1",
          resources: ["router/1"],
          held: ["router/r1"],
          families: [removal],
          actions: [
            { verb: "stop", object: "metadata proxy", name: "qrouter-1", resource: "router/1" },
            { verb: "wait", object: "port", name: "p1", detail: "device tapp1 does not exist yet" },
          ],
        },
      ],
    };
    const text = formatPlan(report);
    expect(text).toContain("# 1 invalid input; what they name is kept as it is, nothing is removed for them:\n#  - state.yaml routers.0._floatingips.0 (r1): router r1: floating_ip_adress: did you mean floating_ip_address?\n");
    expect(text).toContain("# namespace qrouter-2: left by an earlier run and no longer desired\n# would remove namespace qrouter-2 (router/2)\n");
    expect(text).toContain("# held as the kernel has it (invalid input or a failed apply): router/r1\n");
    expect(text).toContain("# would stop metadata proxy qrouter-1 (router/1)\n# waits: port p1 (device tapp1 does not exist yet)\n");
    expect(text).toContain("# IPv4: 2 lines; removes chains neutron-l3-agent-x\n");
    expect(planSucceeded(report)).toBe(false);
    expect(planSucceeded({ ...report, problems: [] })).toBe(true);
    expect(formatPlan({ stateRead: false, problems: [], namespaces: [] })).toBe("# no desired state was read: nothing would be changed\n");
    expect(planSucceeded({ stateRead: false, problems: [], namespaces: [] })).toBe(false);
  });
});

describe("formatStatus", () => {
  it("prints an aligned table; stale, held and invalid input are not in sync", () => {
    const report: StatusReport = {
      stateRead: true,
      problems: [],
      namespaces: [
        { namespace: "qrouter-1", resources: ["router/1", "router/2"], held: [], exists: true, inSync: true, pendingLines: 0, rules: 12, chains: 30 },
        { namespace: undefined, resources: ["chain_set/x"], held: [], exists: true, inSync: false, pendingLines: 7, rules: 3, chains: 2, error: "boom\nmore" },
        { namespace: "qrouter-9", resources: [], held: [], exists: true, inSync: false, pendingLines: 0, rules: 0, chains: 0, stale: true },
        { namespace: "qrouter-3", resources: ["router/3"], held: ["router/3"], exists: true, inSync: false, pendingLines: 0, rules: 0, chains: 0 },
      ],
    };
    expect(formatStatus(report)).toBe(
      [
        "NAMESPACE  EXISTS  RESOURCES          IN SYNC  PENDING LINES  RULES  CHAINS  NOTE",
        "qrouter-1  yes     router/1,router/2  yes      0              12     30",
        "(host)     yes     chain_set/x        no       7              3      2       boom",
        "qrouter-9  yes     -                  no       0              0      0       stale: left by an earlier run, would be removed",
        "qrouter-3  yes     router/3           no       0              0      0       held as the kernel has it: router/3",
        "",
      ].join("\n"),
    );
    expect(statusInSync({ stateRead: true, problems: [], namespaces: [report.namespaces[0]!] })).toBe(true);
    expect(statusInSync({ stateRead: true, problems: [problem], namespaces: [report.namespaces[0]!] })).toBe(false);
  });
});

describe("apply summary", () => {
  it("fails on invalid input, failed resources and an unread state", () => {
    const ok: SyncReport = { namespaces: 2, applied: 2, failed: [], failedResources: [], failedHandlers: [], problems: [], stateRead: true };
    expect(applySucceeded(ok)).toBe(true);
    expect(applySummary(ok)).toBe("applied 2 of 2 namespaces\n");
    const held = { ...ok, failedResources: [{ namespace: "ns", resource: "port/p1", error: new Error("ipset restore failed") }] };
    expect(applySucceeded(held)).toBe(false);
    expect(applySummary(held)).toBe("applied 2 of 2 namespaces, 1 resource held after failing\n");
    expect(applySucceeded({ ...ok, problems: [problem] })).toBe(false);
    const skipped = { ...ok, failedHandlers: [{ namespace: "ns", kind: "guard", plugin: "acme", error: new Error("guard backend unreachable") }] };
    expect(applySucceeded(skipped)).toBe(false);
    expect(applySummary(skipped)).toBe("applied 2 of 2 namespaces, 1 handler skipped after failing\n");
    expect(applyFailures("l2-agent", skipped)).toBe(
      "l2-agent: the guard handler of plugin acme failed in namespace ns even with its resources held; it is skipped there and what the kernel has of its chains is kept: guard backend unreachable\n",
    );
    const unread = { ...ok, namespaces: 0, applied: 0, stateRead: false };
    expect(applySucceeded(unread)).toBe(false);
    expect(applySummary(unread)).toBe("no desired state was read: nothing was changed\n");
  });
});
