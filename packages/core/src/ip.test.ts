import { describe, expect, it } from "vitest";
import { cidrContains, ipFamily, linkLocalFromMac, parseCidr, parseIp, parseMac } from "./ip.js";

describe("ip", () => {
  it("parses literal addresses into the text iptables prints", () => {
    expect(parseIp("10.0.0.1")?.text).toBe("10.0.0.1");
    expect(parseIp("2001:DB8:0:0::1")?.text).toBe("2001:db8::1");
    expect(parseIp("10.0.0.1/32")).toBeUndefined();
    expect(parseIp("10.1")).toBeUndefined();
    expect(parseIp("010.0.0.1")).toBeUndefined();
    expect(parseIp("host.example")).toBeUndefined();
  });
  it("parses networks, masking host bits as the kernel does", () => {
    expect(parseCidr("10.0.0.5/24")).toMatchObject({ text: "10.0.0.0/24", prefix: 24, hostBitsSet: true, family: 4 });
    expect(parseCidr("10.0.0.5")?.text).toBe("10.0.0.5/32");
    expect(parseCidr("2001:db8::1/64")?.text).toBe("2001:db8::/64");
    expect(parseCidr("10.0.0.0/33")).toBeUndefined();
    expect(ipFamily("::1")).toBe(6);
    expect(ipFamily("nope")).toBeUndefined();
    expect(cidrContains(parseCidr("10.0.0.0/24")!, parseIp("10.0.0.77")!)).toBe(true);
    expect(cidrContains(parseCidr("10.0.0.0/24")!, parseIp("10.0.1.1")!)).toBe(false);
  });
  it("normalizes MACs and derives the EUI-64 link-local address", () => {
    expect(parseMac("FA:16:3E:31:E3:11")).toBe("fa:16:3e:31:e3:11");
    expect(parseMac("fa:16:3e:31:e3")).toBeUndefined();
    expect(linkLocalFromMac("fa:16:3e:31:e3:11")).toBe("fe80::f816:3eff:fe31:e311");
  });
});
