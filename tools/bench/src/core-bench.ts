import { CanonicalCache, ExecaRunner, IptablesManager, type Backend } from "@chainwarden/core";
import { cpu, ms, withNamespace } from "./netns.js";

export interface CoreBenchRow {
  backend: Backend;
  chains: number;
  rulesPerChain: number;
  rules: number;
  /** Building the desired state (validating and canonicalizing every rule). */
  buildMs: number;
  coldMs: number;
  coldCpuMs: number;
  rawColdMs: number;
  changeBytes: number;
  changeLines: number;
  changeCpuMs: number;
  changeMs: number;
  rawChangeMs: number;
  secondApplyLines: number;
}

function ruleFor(chain: number, rule: number): string {
  const a = (chain >> 8) & 255;
  const b = chain & 255;
  return `-s 10.${a}.${b}.${rule + 1}/32 -p tcp -m tcp --dport ${1000 + rule} -j RETURN`;
}

/**
 * N chains × M rules behind jumps from the wrapped FORWARD chain: the cold apply and a one-rule
 * change, each next to the raw `iptables-restore` of the very same input in an identical namespace.
 */
export async function benchCore(backend: Backend, chains: number, rulesPerChain: number): Promise<CoreBenchRow> {
  const runner = new ExecaRunner({ backend });
  await runner.version();
  return withNamespace(runner, (ours) =>
    withNamespace(runner, async (raw) => {
      const b0 = performance.now();
      // A fresh canonical cache: measure what a newly started agent pays, not a cache warm from another case.
      const manager = new IptablesManager({ runner, namespace: ours, useIpv6: false, canonicalCache: new CanonicalCache() });
      const filter = manager.table(4, "filter");
      for (let c = 0; c < chains; c++) {
        const name = `c${c}`;
        filter.addChain(name);
        filter.addRule("FORWARD", `-s 10.${(c >> 8) & 255}.${c & 255}.0/24 -j $${name}`);
        for (let r = 0; r < rulesPerChain; r++) filter.addRule(name, ruleFor(c, r));
      }
      const buildMs = ms(b0);
      const cold = await cpu(() => manager.apply(), runner);
      const coldInput = cold.value.families.map((f) => f.input).join("");

      let t = performance.now();
      await runner.restore({ namespace: raw, family: 4 }, coldInput);
      const rawColdMs = ms(t);

      const again = await manager.apply();

      // One rule changes in the middle chain.
      const mid = `c${chains >> 1}`;
      filter.removeRule(mid, ruleFor(chains >> 1, 0));
      filter.addRule(mid, "-s 10.255.255.254/32 -p udp -m udp --dport 53 -j RETURN");
      const change = await cpu(() => manager.apply(), runner);
      const input = change.value.families.map((f) => f.input).join("");
      t = performance.now();
      await runner.restore({ namespace: raw, family: 4 }, input);
      const rawChangeMs = ms(t);

      return {
        backend,
        chains,
        rulesPerChain,
        rules: chains * (rulesPerChain + 1),
        buildMs,
        coldMs: cold.wallMs,
        coldCpuMs: cold.cpuMs,
        rawColdMs,
        changeBytes: Buffer.byteLength(input),
        changeLines: change.value.lines,
        changeCpuMs: change.cpuMs,
        changeMs: change.wallMs,
        rawChangeMs,
        secondApplyLines: again.lines,
      };
    }),
  );
}
