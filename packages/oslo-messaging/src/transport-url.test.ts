import { describe, expect, it } from "vitest";
import { InvalidTransportUrlError } from "./oslo-messaging-errors.js";
import { runPeerScript } from "./python-peer.test-support.js";
import { parseTransportUrl, redactTransportUrl, type TransportUrl } from "./transport-url.js";

/** oslo.messaging's own cases (tests/test_urls.py), then ours: multi-host, decoding, queries, odd corners. */
const URLS = [
  "foo:",
  "foo:////",
  "foo:///bar",
  "foo://host/bar",
  "foo://[ffff::1]/bar",
  "foo://host:1234/bar",
  "foo://[ffff::1]:1234/bar",
  "foo://u@host:1234/bar",
  "foo://u:p@host:1234/bar",
  "foo://u:p@/bar",
  "foo://u:p@host1:1234,host2:4321/bar",
  "foo://u:p@host1,host2/bar",
  "foo://u1:p1@host1:1234,u2:p2@host2:4321/bar",
  "foo://u1:p1@[ffff::1]:1234,u2:p2@[ffff::2]:4321/bar",
  "foo://u%24:p%26@host:1234/%24",
  "rabbit://",
  "rabbit://guest:guest@127.0.0.1:5672/",
  "rabbit://guest:guest@127.0.0.1:5672//",
  "rabbit://guest:guest@127.0.0.1:5672",
  "RABBIT://Guest:Guest@Broker.Example:5672/Neutron",
  "rabbit://openstack:s3cr%2Ft%40%3A@ctl1:5672,openstack:other%25pw@ctl2:5672,ctl3/neutron",
  "rabbit://user@name:p:a:ss@host:5672/",
  "rabbit://u:p@h1:5672,,u:p@h2:5672/",
  "rabbit://u:p@h:5672/vhost?ssl=1&heartbeat_timeout_threshold=30&ssl_ca_file=%2Fetc%2Fca.pem&x=a+b&x=c&blank=&flag",
  "rabbit://u:p@h:5672/a%2Fb%25c%zz?q=%E2%82%AC",
  "rabbit://u:p@h:/vh",
  "rabbit://u:p@h: 5672 /vh",
  "rabbit://u:p@h:5_672/",
  "rabbit://u:p@h:5672/vh#frag?x=1",
  "  \trabbit://u:p@h\n:5672/",
  "rabbit://[::1]:5672,u:p@127.0.0.1:5673/",
  "kombu+memory:////",
  // Refused by oslo (or Python's urlparse under it):
  "no-scheme-here",
  "//u:p@h:5672/",
  "rabbit://u:secret@h:notaport/",
  "rabbit://u:secret@[::1:5672/",
  "rabbit://u:secret@::1]:5672/",
  "rabbit://u:secret@[127.0.0.1]:5672/",
  "rabbit://[::1]:5672,u:secret@ctl2:5672/",
  "rabbit://u:secret@x[::1]:5672/",
];

describe("parseTransportUrl", () => {
  it("parses every URL of the table as oslo.messaging's TransportURL.parse does, and refuses the same ones", () => {
    const python = runPeerScript<({ ok: TransportUrl } | { error: string })[]>("parse_urls.py", URLS);
    const ours = URLS.map((url) => {
      try {
        return { ok: parseTransportUrl(url) };
      } catch (error) {
        expect(error).toBeInstanceOf(InvalidTransportUrlError);
        return { error: "refused" };
      }
    });
    const comparable = python.map((r) => ("ok" in r ? r : { error: "refused" }));
    expect(ours.map((r, i) => ({ url: URLS[i], ...r }))).toEqual(comparable.map((r, i) => ({ url: URLS[i], ...r })));
    // The table covers refusals too.
    expect(python.filter((r) => "error" in r).length).toBeGreaterThanOrEqual(7);
  });

  it("reads several hosts with their own credentials, url-decoded, and the query options", () => {
    expect(parseTransportUrl("rabbit://openstack:s3cr%2Ft%40@ctl1:5672,other:pw@[fd00::2]:5671/neutron?ssl=true")).toEqual({
      transport: "rabbit",
      virtualHost: "neutron",
      hosts: [
        { hostname: "ctl1", port: 5672, username: "openstack", password: "s3cr/t@" },
        { hostname: "fd00::2", port: 5671, username: "other", password: "pw" },
      ],
      query: { ssl: "true" },
    });
  });

  it("names what is wrong and never shows a password", () => {
    const refuse = (url: string) => {
      try {
        parseTransportUrl(url);
      } catch (error) {
        return error as InvalidTransportUrlError;
      }
      throw new Error(`accepted ${url}`);
    };
    const port = refuse("rabbit://openstack:hunter2@ctl1:5672,openstack:hunter3@ctl2:56x2/");
    expect(port.code).toBe("INVALID_TRANSPORT_URL");
    expect(port.message).toContain('host 2: port "56x2" is not an integer');
    expect(port.message).not.toMatch(/hunter/);
    expect(port.message).toContain("openstack:***@ctl2:56x2");
    const scheme = refuse("1openstack:hunter2@ctl1:5672");
    expect(scheme.message).toContain("no scheme");
    expect(scheme.message).not.toContain("hunter2");
    expect(refuse("rabbit://u:hunter2@[::1:5672/").message).toMatch(/IPv6.*|unbalanced/);
  });

  it("redacts the passwords of every host", () => {
    expect(redactTransportUrl("rabbit://a:pw1@h1:5672,b:p%40w2@h2,c@h3,h4/vh?x=1")).toBe("rabbit://a:***@h1:5672,b:***@h2,c@h3,h4/vh?x=1");
  });
});
