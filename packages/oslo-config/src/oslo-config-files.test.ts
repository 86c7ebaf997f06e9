import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { readOsloConfigFiles } from "./oslo-config-files.js";

const root = mkdtempSync(join(tmpdir(), "oslo-files-"));
afterAll(() => rmSync(root, { recursive: true, force: true }));
const write = (path: string, text: string) => {
  mkdirSync(join(root, path, ".."), { recursive: true });
  writeFileSync(join(root, path), text);
  return join(root, path);
};

describe("readOsloConfigFiles", () => {
  it("reads files and directories in the order given; a directory gives its *.conf, not hidden ones, by name", () => {
    const a = write("a.conf", "[DEFAULT]\n");
    write("d/2.conf", "[DEFAULT]\n");
    write("d/1.conf", "[DEFAULT]\n");
    write("d/.0.conf", "[DEFAULT]\n");
    write("d/3.ini", "[DEFAULT]\n");
    mkdirSync(join(root, "d/sub.d"));
    const b = write("b.ini", "[DEFAULT]\n");
    const { files, problems } = readOsloConfigFiles([{ file: a }, { dir: join(root, "d") }, { file: b }]);
    expect(problems).toEqual([]);
    expect(files.map((f) => f.file)).toEqual([a, join(root, "d/1.conf"), join(root, "d/2.conf"), b]);
  });

  it("lists every file it cannot use, and still reads the others", () => {
    const good = write("good.conf", "[DEFAULT]\na = 1\n");
    const broken = write("broken.conf", "[DEFAULT]\nnot an option\n");
    const latin1 = join(root, "latin1.conf");
    writeFileSync(latin1, Buffer.from([0x5b, 0x44, 0x5d, 0x0a, 0x61, 0x3d, 0xe9, 0x0a]));
    const { files, problems } = readOsloConfigFiles([{ file: join(root, "missing.conf") }, { file: broken }, { dir: join(root, "no-such.d") }, { file: good }, { file: latin1 }, { file: root }]);
    expect(files.map((f) => f.file)).toEqual([good]);
    expect(problems.map((p) => [p.code, p.message])).toEqual([
      ["OSLO_CONFIG_UNREADABLE", `${join(root, "missing.conf")}: config file not found`],
      ["OSLO_CONFIG_PARSE", `${broken} line 2: neither '=' nor ':' in an option line: "not an option"`],
      ["OSLO_CONFIG_UNREADABLE", `${join(root, "no-such.d")}: config directory not found`],
      ["OSLO_CONFIG_PARSE", `${latin1}: not UTF-8 text`],
      ["OSLO_CONFIG_UNREADABLE", `${root}: config file is a directory (use --config-dir for a directory)`],
    ]);
  });

  it.skipIf(process.getuid?.() === 0)("a file it may not read is a problem naming it", () => {
    const secret = write("secret.conf", "[DEFAULT]\n");
    chmodSync(secret, 0o000);
    expect(readOsloConfigFiles([{ file: secret }]).problems[0]?.message).toBe(`${secret}: config file: permission denied`);
  });
});
