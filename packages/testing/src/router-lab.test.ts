import { existsSync } from "node:fs";
import { isAbsolute } from "node:path";
import { describe, expect, it } from "vitest";
import { netToolPath } from "./net-tool.js";
import { createNetns, isRoot, listNetns } from "./netns.js";
import { createRouterLab } from "./router-lab.js";

describe("netToolPath", () => {
  it("is the absolute path of the shipped net-tool.mjs", () => {
    expect(isAbsolute(netToolPath())).toBe(true);
    expect(netToolPath()).toMatch(/\/bin\/net-tool\.mjs$/);
    expect(existsSync(netToolPath())).toBe(true);
  });
});

describe.skipIf(!isRoot())("createRouterLab (root)", () => {
  it("wires hosts to a bridge, runs net-tool, and deletes every namespace it and the agent made", async () => {
    const agentPrefix = `cwlab${process.pid}-`;
    const lab = await createRouterLab({ prefix: "cw-lab", hosts: ["a", "b"], agentNamespacePrefix: agentPrefix });
    const agentNs = await createNetns(`${agentPrefix}router`);
    const names = [lab.fabric.name, lab.hosts.a.name, lab.hosts.b.name, agentNs.name];
    try {
      expect(lab.hosts.a.name).toMatch(new RegExp(`^cw-lab-a-${process.pid}-[0-9a-f]{6}$`));
      await lab.attach(lab.hosts.a, "brq-lab", "192.0.2.1/24");
      await lab.attach(lab.hosts.b, "brq-lab", "192.0.2.2/24", "192.0.2.1");
      const lines: string[] = [];
      await lab.netTool(lab.hosts.a, ["echo-server", "7100"], (l) => lines.push(l));
      expect(lines).toEqual(["ready"]);
      const probe = await lab.hosts.b.exec([process.execPath, netToolPath(), "probe", "192.0.2.1", "7100"]);
      expect(probe.stdout.trim()).toBe("ok");
      await expect(lab.netTool(lab.hosts.a, ["no-such-mode"])).rejects.toThrow("net-tool no-such-mode exited 2");
    } finally {
      await lab.delete();
    }
    const left = await listNetns();
    for (const name of names) expect(left).not.toContain(name);
    await lab.delete(); // twice is fine
  });

  it("removes what it made when a host cannot be created", async () => {
    const before = await listNetns();
    await expect(createRouterLab({ prefix: "cw-lab", hosts: ["ok", "bad/name"] })).rejects.toThrow();
    expect((await listNetns()).filter((n) => n.startsWith("cw-lab-"))).toEqual(before.filter((n) => n.startsWith("cw-lab-")));
  });
});
