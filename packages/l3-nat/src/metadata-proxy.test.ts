import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { createMetadataProxyServer, forwardedHeaders, parseMetadataUpstream, type MetadataUpstream } from "./metadata-proxy.js";

interface Seen {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function listen(server: Server, where: { path: string } | { port: 0; host: string }): Promise<void> {
  cleanups.push(() => new Promise<void>((r) => server.close(() => r())));
  return new Promise((resolve) => server.listen(where, () => resolve()));
}

/** A stand-in for Neutron's metadata agent that records what reaches it. */
async function upstream(kind: "unix" | "url"): Promise<{ seen: Seen[]; upstream: MetadataUpstream }> {
  const seen: Seen[] = [];
  const server = createServer((req, res) => {
    let body = "";
    req.on("data", (c: Buffer) => (body += c.toString()));
    req.on("end", () => {
      seen.push({ method: req.method, url: req.url, headers: req.headers, body });
      res.writeHead(200, { "content-type": "text/plain", "x-upstream": "yes" });
      res.end(`instance-id for ${req.headers["x-forwarded-for"]}`);
    });
  });
  if (kind === "unix") {
    const dir = mkdtempSync(join(tmpdir(), "cw-md-"));
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "metadata_proxy");
    await listen(server, { path });
    return { seen, upstream: { kind: "unix", socketPath: path } };
  }
  await listen(server, { port: 0, host: "127.0.0.1" });
  const port = (server.address() as AddressInfo).port;
  return { seen, upstream: parseMetadataUpstream(`http://127.0.0.1:${port}/prefix`) };
}

async function proxy(up: MetadataUpstream, routerId = "router-1"): Promise<number> {
  const server = createMetadataProxyServer({ routerId, upstream: up, timeoutSeconds: 2 });
  await listen(server, { port: 0, host: "127.0.0.1" });
  return (server.address() as AddressInfo).port;
}

function get(port: number, path: string, headers: Record<string, string> = {}, method = "GET", body?: string): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers }, (res) => {
      let text = "";
      res.on("data", (c: Buffer) => (text += c.toString()));
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: text }));
    });
    req.on("error", reject);
    req.end(body);
  });
}

describe("the metadata proxy", () => {
  it.each(["unix", "url"] as const)("forwards to a %s upstream with X-Neutron-Router-ID and X-Forwarded-For, dropping the client's", async (kind) => {
    const { seen, upstream: up } = await upstream(kind);
    const port = await proxy(up);
    const res = await get(port, "/latest/meta-data/instance-id?x=1", {
      "X-Forwarded-For": "6.6.6.6",
      "X-Neutron-Router-ID": "evil-router",
      "X-Neutron-Network-ID": "evil-net",
      "X-Instance-ID": "evil-instance",
      Forwarded: "for=6.6.6.6",
      "User-Agent": "cloud-init",
    });
    expect(res).toMatchObject({ status: 200, body: "instance-id for 127.0.0.1" });
    expect(res.headers["x-upstream"]).toBe("yes");
    expect(seen).toHaveLength(1);
    expect(seen[0]!.url).toBe(kind === "unix" ? "/latest/meta-data/instance-id?x=1" : "/prefix/latest/meta-data/instance-id?x=1");
    expect(seen[0]!.headers).toMatchObject({ "x-forwarded-for": "127.0.0.1", "x-neutron-router-id": "router-1", "user-agent": "cloud-init" });
    for (const h of ["x-neutron-network-id", "x-instance-id", "forwarded"]) expect(seen[0]!.headers[h]).toBeUndefined();
  });

  it("passes methods and bodies through (cloud-init posts to the metadata service)", async () => {
    const { seen, upstream: up } = await upstream("unix");
    const port = await proxy(up);
    const res = await get(port, "/openstack/latest/password", { "content-type": "text/plain" }, "POST", "secret");
    expect(res.status).toBe(200);
    expect(seen[0]).toMatchObject({ method: "POST", body: "secret" });
  });

  it("answers 502 when the upstream is not there", async () => {
    const port = await proxy({ kind: "unix", socketPath: join(tmpdir(), "cw-md-nothing-here.sock") });
    expect((await get(port, "/")).status).toBe(502);
  });

  it("drops hop-by-hop headers and the forbidden ones, and sets its own", () => {
    const out = forwardedHeaders({ "x-forwarded-for": "1.1.1.1", "x-neutron-router-id": "x", connection: "keep-alive, x-foo", host: "169.254.169.254" }, "10.0.0.5", "r1");
    expect(out).toEqual({ host: "169.254.169.254", "x-forwarded-for": "10.0.0.5", "x-neutron-router-id": "r1" });
  });

  it("accepts unix socket paths and http(s) URLs only", () => {
    expect(parseMetadataUpstream("/var/lib/neutron/metadata_proxy")).toEqual({ kind: "unix", socketPath: "/var/lib/neutron/metadata_proxy" });
    expect(parseMetadataUpstream("unix:/run/md.sock")).toEqual({ kind: "unix", socketPath: "/run/md.sock" });
    expect(parseMetadataUpstream("http://10.0.0.1:8775").kind).toBe("url");
    expect(() => parseMetadataUpstream("relative.sock")).toThrow(/neither an absolute unix socket path nor an http\(s\) URL/);
    expect(() => parseMetadataUpstream("ftp://x")).toThrow(/only http and https/);
    expect(() => parseMetadataUpstream("http://u:p@x/")).toThrow(/no query, fragment or credentials/);
  });
});
