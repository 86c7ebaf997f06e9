import { randomBytes } from "node:crypto";
import { ExecaRunner, IptablesManager, type BackendChoice } from "@chainwarden/core";

export interface DemoOptions {
  backend?: BackendChoice;
  /** Where the report goes (default stdout). */
  write?: (text: string) => void;
}

export interface DemoResult {
  namespace: string;
  backend: string;
  firstApplyLines: number;
  secondApplyLines: number;
  fipChangeLines: number;
  save: string;
}

/**
 * The seed's l3-agent layout (older Neutron: comments off) with a router's metadata, SNAT and one
 * floating IP, programmed into a throwaway namespace through the real applier.
 */
export async function runDemo(options: DemoOptions = {}): Promise<DemoResult> {
  const write = options.write ?? ((t: string) => process.stdout.write(t));
  const runner = new ExecaRunner({ backend: options.backend ?? "auto" });
  const backend = await runner.backend();
  const namespace = `cw-demo-${randomBytes(4).toString("hex")}`;
  await runner.exec("ip", ["netns", "add", namespace]);
  try {
    const manager = new IptablesManager({ runner, namespace, wrapName: "neutron-l3-agent", comments: false, useIpv6: false });
    const filter = manager.table(4, "filter");
    const nat = manager.table(4, "nat");
    // _router_added: the metadata rules.
    filter.addRule("INPUT", "-s 0.0.0.0/0 -d 127.0.0.1 -p tcp -m tcp --dport 9697 -j ACCEPT");
    nat.addRule("PREROUTING", "-s 0.0.0.0/0 -d 169.254.169.254/32 -p tcp -m tcp --dport 80 -j REDIRECT --to-port 9697");
    // process_router: external gateway SNAT and a floating IP.
    nat.addRule("POSTROUTING", "! -i qg-6b5b2f5e-1a ! -o qg-6b5b2f5e-1a -m conntrack ! --ctstate DNAT -j ACCEPT");
    nat.addRule("snat", "-s 10.10.10.0/24 -j SNAT --to-source 172.24.4.10");
    const fip = (floating: string, fixed: string) => {
      nat.addRule("PREROUTING", `-d ${floating} -j DNAT --to ${fixed}`, { tag: "floating_ip" });
      nat.addRule("OUTPUT", `-d ${floating} -j DNAT --to ${fixed}`, { tag: "floating_ip" });
      nat.addRule("float-snat", `-s ${fixed} -j SNAT --to ${floating}`, { tag: "floating_ip" });
    };
    fip("172.24.4.20", "10.10.10.5");

    const first = await manager.apply();
    write(`# namespace ${namespace}, backend ${backend}\n`);
    write(`# first apply: one iptables-restore, ${first.lines} lines:\n${first.families.map((f) => f.input).join("")}\n`);
    const second = await manager.apply();
    write(`# second apply of the same state: ${second.lines} lines sent\n`);
    nat.clearRulesByTag("floating_ip");
    fip("172.24.4.21", "10.10.10.5");
    const change = await manager.apply();
    write(`# floating IP 172.24.4.20 -> 172.24.4.21: ${change.lines} lines:\n${change.families.map((f) => f.input).join("")}\n`);
    const save = await runner.save({ namespace, family: 4 });
    write(`# iptables-save in ${namespace}:\n${save}`);
    return { namespace, backend, firstApplyLines: first.lines, secondApplyLines: second.lines, fipChangeLines: change.lines, save };
  } finally {
    await runner.exec("ip", ["netns", "delete", namespace], { reject: false });
  }
}
