import { mkdtempSync, rmSync } from "node:fs";
import { createServer, request, type IncomingHttpHeaders, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { connect } from "node:net";
import { Cleanups } from "@chainwarden/testing";
import { createMetadataProxyServer, forwardedHeaders, isOriginFormTarget, parseMetadataUpstream, type MetadataProxyOptions, type MetadataUpstream } from "./metadata-proxy.js";

interface Seen {
  method: string | undefined;
  url: string | undefined;
  headers: IncomingHttpHeaders;
  body: string;
}

// Last in, first out: agents go before their namespaces and files.
const cleanups = new Cleanups();
afterEach(() => cleanups.run());

function listen(server: Server, where: { path: string } | { port: 0; host: string }): Promise<void> {
  cleanups.defer(() => new Promise<void>((r) => server.close(() => r())));
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
    cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "metadata_proxy");
    await listen(server, { path });
    return { seen, upstream: { kind: "unix", socketPath: path } };
  }
  await listen(server, { port: 0, host: "127.0.0.1" });
  const port = (server.address() as AddressInfo).port;
  return { seen, upstream: parseMetadataUpstream(`http://127.0.0.1:${port}/prefix`) };
}

async function proxy(up: MetadataUpstream, routerId = "router-1", options: Partial<MetadataProxyOptions> = {}): Promise<number> {
  const server = createMetadataProxyServer({ routerId, upstream: up, timeoutSeconds: 2, ...options });
  await listen(server, { port: 0, host: "127.0.0.1" });
  return (server.address() as AddressInfo).port;
}

function get(port: number, path: string, headers: Record<string, string> = {}, method = "GET", body?: string, signal?: AbortSignal): Promise<{ status: number; headers: IncomingHttpHeaders; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request({ host: "127.0.0.1", port, path, method, headers, ...(signal ? { signal } : {}) }, (res) => {
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

  it("drops hop-by-hop headers, those the client's Connection names, and the forbidden ones, and sets its own", () => {
    const out = forwardedHeaders({ "x-forwarded-for": "1.1.1.1", "x-neutron-router-id": "x", connection: "keep-alive, x-foo", "x-foo": "1", host: "169.254.169.254" }, "10.0.0.5", "r1");
    expect(out).toEqual({ host: "169.254.169.254", "x-forwarded-for": "10.0.0.5", "x-neutron-router-id": "r1" });
  });

  it("drops every client header a WSGI upstream would read as ours, in any case and with _ for -", async () => {
    const { seen, upstream: up } = await upstream("unix");
    const port = await proxy(up);
    const spoofed = {
      X_Neutron_Router_ID: "evil-router",
      x_forwarded_for: "6.6.6.6",
      X_Instance_ID: "evil-instance",
      "X-Instance_ID-Signature": "evil-signature",
      X_TENANT_ID: "evil-tenant",
      "x-neutron_network-id": "evil-net",
      "X-FORWARDED-HOST": "evil-host",
      "X-Real-IP": "6.6.6.6",
      "X-OVN-Network-ID": "evil-ovn",
      Some_Other_Header: "x",
      "Accept-Language": "en",
    };
    expect((await get(port, "/latest/meta-data/", spoofed)).status).toBe(200);
    const names = Object.keys(seen[0]!.headers);
    // What a WSGI server would make of them (HTTP_X_NEUTRON_ROUTER_ID ...): only ours.
    expect(names.filter((n) => n.includes("_"))).toEqual([]);
    expect(names.filter((n) => /^(x-neutron|x-instance|x-tenant|x-forwarded|x-real-ip|x-ovn)/.test(n)).sort()).toEqual(["x-forwarded-for", "x-neutron-router-id"]);
    expect(seen[0]!.headers).toMatchObject({ "x-forwarded-for": "127.0.0.1", "x-neutron-router-id": "router-1", "accept-language": "en" });
  });

  it("answers 400 to anything but an origin-form target and forwards nothing", async () => {
    const { seen, upstream: up } = await upstream("unix");
    const port = await proxy(up);
    for (const line of ["GET http://elsewhere.example/latest/meta-data/ HTTP/1.1", "GET http://169.254.169.254/latest/ HTTP/1.1", "CONNECT elsewhere.example:443 HTTP/1.1", "OPTIONS * HTTP/1.1", "GET //elsewhere.example/x HTTP/1.1"]) {
      expect(await raw(port, `${line}\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n`), line).toMatch(/^HTTP\/1\.1 400 /);
    }
    expect(seen).toEqual([]);
    expect(await raw(port, "GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\nConnection: close\r\n\r\n")).toMatch(/^HTTP\/1\.1 200 /);
    expect(seen.map((s) => s.url)).toEqual(["/latest/meta-data/"]);
  });

  it("origin form only: the target check", () => {
    for (const ok of ["/", "/latest/meta-data/instance-id", "/openstack/latest/meta_data.json?x=1"]) expect(isOriginFormTarget(ok), ok).toBe(true);
    for (const bad of [undefined, "", "*", "http://x/", "https://x/", "x:443", "//x/y", "/a\\b", "/a b"]) expect(isOriginFormTarget(bad), String(bad)).toBe(false);
  });

  it("keeps answering while the upstream hangs: other requests go through, hung ones get 504, and the hung ones are bounded (503)", async () => {
    const hung: (() => void)[] = [];
    const server = createServer((req, res) => {
      if (req.url === "/hang") hung.push(() => res.destroy());
      else res.end("ok");
    });
    const dir = mkdtempSync(join(tmpdir(), "cw-md-"));
    cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "md.sock");
    await listen(server, { path });
    cleanups.defer(() => hung.forEach((h) => h()));
    const port = await proxy({ kind: "unix", socketPath: path }, "router-1", { timeoutSeconds: 0.6, maxUpstreamRequests: 2 });
    const started = Date.now();
    const slow = [get(port, "/hang"), get(port, "/hang")];
    await waitFor(() => hung.length === 2);
    // Both upstream slots are taken: a third request is refused at once, not queued behind them.
    const full = await get(port, "/hang");
    expect(full.status).toBe(503);
    expect(Date.now() - started).toBeLessThan(500);
    expect((await Promise.all(slow)).map((r) => r.status)).toEqual([504, 504]);
    // The slots are free again.
    expect(await get(port, "/ok")).toMatchObject({ status: 200, body: "ok" });
  });

  it("a client that gives up frees its upstream slot", async () => {
    const hung: (() => void)[] = [];
    const server = createServer((req, res) => {
      if (req.url === "/hang") hung.push(() => res.destroy());
      else res.end("ok");
    });
    const dir = mkdtempSync(join(tmpdir(), "cw-md-"));
    cleanups.defer(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, "md.sock");
    await listen(server, { path });
    cleanups.defer(() => hung.forEach((h) => h()));
    const port = await proxy({ kind: "unix", socketPath: path }, "router-1", { timeoutSeconds: 30, maxUpstreamRequests: 1 });
    const abort = new AbortController();
    const gaveUp = get(port, "/hang", {}, "GET", undefined, abort.signal).catch(() => "aborted");
    await waitFor(() => hung.length === 1);
    expect((await get(port, "/ok")).status).toBe(503);
    abort.abort();
    expect(await gaveUp).toBe("aborted");
    await waitFor(async () => (await get(port, "/ok")).status === 200);
  });

  it("cuts off a client that never finishes its request headers", async () => {
    const { upstream: up } = await upstream("unix");
    const port = await proxy(up, "router-1", { headersTimeoutSeconds: 0.3, requestTimeoutSeconds: 0.3 });
    const started = Date.now();
    // Headers never end: the connection must not be held open for Node's default of a minute.
    const answer = await raw(port, "GET /latest/meta-data/ HTTP/1.1\r\nHost: 169.254.169.254\r\n", 3_000);
    expect(answer).toMatch(/^HTTP\/1\.1 408 /);
    expect(Date.now() - started).toBeLessThan(2_000);
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

/** Sends raw bytes and resolves with what comes back until the server closes (or `ms` passes). */
function raw(port: number, text: string, ms = 3_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port });
    let got = "";
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(got);
    }, ms);
    socket.on("data", (d: Buffer) => (got += d.toString()));
    socket.on("close", () => {
      clearTimeout(timer);
      resolve(got);
    });
    socket.on("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.write(text);
  });
}

async function waitFor(cond: () => boolean | Promise<boolean>, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await cond())) {
    if (Date.now() > end) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 10));
  }
}
