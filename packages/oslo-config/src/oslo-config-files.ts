import { readdirSync, readFileSync, statSync } from "node:fs";
import { homedir } from "node:os";
import { join, resolve } from "node:path";
import { OsloConfigError } from "./oslo-config-error.js";
import { parseOsloIni, type OsloIniFile } from "./oslo-ini-parser.js";

/** One `--config-file FILE` or `--config-dir DIR`, in command-line order. */
export type OsloConfigSource = { readonly file: string } | { readonly dir: string };

export interface OsloConfigFilesResult {
  /** The files that parsed, in order: each `--config-file`, and each `--config-dir`'s `*.conf` in name order. */
  readonly files: OsloIniFile[];
  /** Every file or directory that could not be read or parsed (the others are still read). */
  readonly problems: OsloConfigError[];
}

/**
 * Reads config files as oslo.config's `--config-file` and `--config-dir` do, in the order given: a
 * file is read as it is named (`~` expanded, relative to the working directory); a directory gives
 * its `*.conf` files (not hidden ones), sorted by name, and nothing else. A missing file, a missing
 * directory, a file that is not UTF-8 or does not parse is a problem naming it (and the line); all
 * of them are returned, so one run shows them all.
 */
export function readOsloConfigFiles(sources: readonly OsloConfigSource[]): OsloConfigFilesResult {
  const files: OsloIniFile[] = [];
  const problems: OsloConfigError[] = [];
  const read = (path: string) => {
    try {
      files.push(readOsloConfigFile(path));
    } catch (err) {
      if (err instanceof OsloConfigError) problems.push(err);
      else throw err;
    }
  };
  for (const source of sources) {
    if ("file" in source) {
      read(fixPath(source.file));
      continue;
    }
    const dir = fixPath(source.dir);
    let names: string[];
    try {
      // A path that exists but is no directory gives no files, as oslo.config's glob gives none.
      names = statSync(dir).isDirectory() ? readdirSync(dir) : [];
    } catch (err) {
      problems.push(unreadable(dir, err, "config directory"));
      continue;
    }
    for (const name of names.filter((n) => n.endsWith(".conf") && !n.startsWith(".")).sort()) read(join(dir, name));
  }
  return { files, problems };
}

/**
 * Reads and parses one file.
 * @throws OsloConfigError (`OSLO_CONFIG_UNREADABLE`, `OSLO_CONFIG_PARSE`) naming the file.
 */
export function readOsloConfigFile(path: string): OsloIniFile {
  let bytes: Buffer;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    throw unreadable(path, err, "config file");
  }
  let text: string;
  try {
    // Python reads the file as UTF-8 and keeps a byte order mark as a character.
    text = new TextDecoder("utf-8", { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    throw new OsloConfigError("OSLO_CONFIG_PARSE", "not UTF-8 text", { file: path });
  }
  if (text.startsWith("\ufeff")) {
    throw new OsloConfigError("OSLO_CONFIG_PARSE", "the file starts with a byte order mark, which oslo.config does not accept: save it without one", { file: path, line: 1 });
  }
  return parseOsloIni(text, path);
}

function unreadable(path: string, err: unknown, what: string): OsloConfigError {
  const code = (err as NodeJS.ErrnoException).code;
  const reason =
    code === "ENOENT"
      ? `${what} not found`
      : code === "EACCES"
        ? `${what}: permission denied`
        : code === "EISDIR"
          ? `${what} is a directory (use --config-dir for a directory)`
          : `cannot read the ${what}: ${(err as Error).message}`;
  return new OsloConfigError("OSLO_CONFIG_UNREADABLE", reason, { file: path }, { cause: err });
}

/** oslo.config's `_fixpath`: `~` expanded, made absolute. */
function fixPath(path: string): string {
  const expanded = path === "~" || path.startsWith("~/") ? homedir() + path.slice(1) : path;
  return resolve(expanded);
}
