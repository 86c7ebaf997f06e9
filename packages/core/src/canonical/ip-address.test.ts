import { describe, expect, it } from "vitest";
import { formatIpv6, maskWords, parseIpv4, parseIpv6, parsePrefix } from "./ip-address.js";

describe("IPv6 text", () => {
  it.each([
    ["2001:db8::1", "2001:db8::1"],
    ["2001:DB8:0:0:0:0:0:1", "2001:db8::1"],
    ["2001:0db8:0000::0001", "2001:db8::1"],
    ["::", "::"],
    ["::1", "::1"],
    ["1::", "1::"],
    ["1:2:3:4:5:6:7:0", "1:2:3:4:5:6:7:0"], // a single zero word is not compressed
    ["2001:0:0:1:0:0:1:1", "2001::1:0:0:1:1"], // equal runs: the first is compressed
    ["2001:0:0:1:0:0:0:1", "2001:0:0:1::1"], // the longer run wins
    ["::ffff:1.2.3.4", "::ffff:1.2.3.4"], // glibc prints v4-mapped addresses dotted
    ["::1.2.3.4", "::1.2.3.4"],
    ["::2:3", "::0.2.0.3"], // and anything with six leading zero words
    ["::ffff:0:1", "::ffff:0.0.0.1"],
    ["1:2:3:4:5:6:1.2.3.4", "1:2:3:4:5:6:102:304"],
    ["fe80::a9fe:a9fe", "fe80::a9fe:a9fe"],
  ])("%s prints as %s (glibc inet_ntop)", (input, printed) => {
    const words = parseIpv6(input);
    expect(words).toBeDefined();
    expect(formatIpv6(words!)).toBe(printed);
  });

  it.each(["", ":", ":::", "1:::2", "1::2::3", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "12345::", "g::", "fe80::1%eth0", "1.2.3.4", "::1.2.3", "::1.2.3.256", ":1::"])(
    "refuses %j",
    (input) => {
      expect(parseIpv6(input)).toBeUndefined();
    },
  );
});

describe("IPv4 text", () => {
  it("takes dotted decimal only", () => {
    expect(parseIpv4("10.0.0.1")).toEqual([10, 0, 0, 1]);
    for (const bad of ["10.1", "010.0.0.1", "10.0.0.256", "10.0.0.1.2", "0x0a.0.0.1", "10.0.0.", " 10.0.0.1"]) expect(parseIpv4(bad)).toBeUndefined();
  });
});

describe("prefixes", () => {
  it("reads lengths and contiguous masks", () => {
    expect(parsePrefix("10.0.0.5", 4)).toEqual({ words: [10, 0, 0, 5], prefix: 32, host: true });
    expect(parsePrefix("10.0.0.5/24", 4)?.prefix).toBe(24);
    expect(parsePrefix("10.0.0.5/255.255.240.0", 4)?.prefix).toBe(20);
    expect(parsePrefix("2001:db8::/ffff:ffff::", 6)?.prefix).toBe(32);
    expect(parsePrefix("10.0.0.0/255.0.255.0", 4)).toBeUndefined();
    expect(parsePrefix("10.0.0.0/33", 4)).toBeUndefined();
    expect(parsePrefix("10.0.0.0/024", 4)).toBeUndefined();
    expect(parsePrefix("::/129", 6)).toBeUndefined();
  });

  it("masks host bits", () => {
    expect(maskWords([10, 1, 2, 3], 12, 4)).toEqual([10, 0, 0, 0]);
    expect(maskWords([10, 1, 2, 3], 0, 4)).toEqual([0, 0, 0, 0]);
    expect(maskWords([0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, 1], 36, 6)).toEqual([0x2001, 0xdb8, 0xf000, 0, 0, 0, 0, 0]);
  });
});
