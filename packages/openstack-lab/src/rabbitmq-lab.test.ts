import { existsSync } from "node:fs";
import { connect } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { RabbitMqLab } from "./rabbitmq-lab.js";

/** What the broker answers to the AMQP 0-9-1 protocol header: a Connection.Start frame (type 1). */
function amqpGreeting(port: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: "127.0.0.1" }, () => socket.write(Buffer.from("AMQP\x00\x00\x09\x01", "latin1")));
    socket.once("data", (data) => (socket.destroy(), resolve(data)));
    socket.once("error", reject);
  });
}

describe("RabbitMqLab", () => {
  let lab: RabbitMqLab;
  beforeAll(async () => {
    lab = await RabbitMqLab.start();
  });
  afterAll(async () => {
    await lab?.stop();
  });

  it("runs a broker on a private loopback port that speaks AMQP 0-9-1", async () => {
    expect(lab.transportUrl).toMatch(/^rabbit:\/\/guest:guest@127\.0\.0\.1:\d+\/$/);
    const greeting = await amqpGreeting(lab.port);
    expect(greeting[0]).toBe(1);
    expect(lab.ctl(["list_vhosts", "--quiet"])).toContain("/");
  });

  it("restarts on the same port", async () => {
    const port = lab.port;
    await lab.restart();
    expect(lab.port).toBe(port);
    expect((await amqpGreeting(port))[0]).toBe(1);
  });

  it("stop ends the broker and removes its directory", async () => {
    const other = await RabbitMqLab.start();
    await other.stop();
    expect(existsSync(other.dir)).toBe(false);
    await expect(amqpGreeting(other.port)).rejects.toThrow(/ECONNREFUSED/);
  });
});
