import { parseIp } from "@chainwarden/core";

/** What a `conntrack -L` line says about an entry's original direction: enough to decide a `-D`. */
export interface ConntrackEntry {
  /** Original source and destination, canonical text. */
  readonly src: string;
  readonly dst: string;
  /** 0 when the line has no `zone=`. */
  readonly zone: number;
}

/**
 * Reads `conntrack -L` output (`tcp 6 99 ESTABLISHED src=A dst=B sport=… src=B dst=A … zone=N
 * use=1`): the first `src=`/`dst=` pair is the original direction. Undefined when a line does not
 * read like that, so that the caller falls back to deleting without looking.
 */
export function parseConntrackListing(text: string): ConntrackEntry[] | undefined {
  const entries: ConntrackEntry[] = [];
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let src: string | undefined;
    let dst: string | undefined;
    let zone = 0;
    for (const word of line.split(/\s+/)) {
      if (src === undefined && word.startsWith("src=")) src = parseIp(word.slice(4))?.text ?? "";
      else if (dst === undefined && word.startsWith("dst=")) dst = parseIp(word.slice(4))?.text ?? "";
      else if (word.startsWith("zone=")) zone = Number(word.slice(5));
    }
    if (!src || !dst || !Number.isInteger(zone)) return undefined;
    entries.push({ src, dst, zone });
  }
  return entries;
}

/**
 * Whether a deletion (`conntrackCommands` arguments: `-D [-p P] -f F -d|-s IP -w ZONE [-s|-d IP]`)
 * could delete one of these entries. Errs towards yes: the protocol is not compared, and
 * arguments it does not know make it yes. Only a no lets the caller skip the command, so a
 * connection the command would have deleted is never left.
 */
export function deletionMayMatch(args: readonly string[], entries: readonly ConntrackEntry[]): boolean {
  let src: string | undefined;
  let dst: string | undefined;
  let zone: number | undefined;
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    const value = args[i + 1];
    if (flag === "-D") continue;
    if (value === undefined) return true;
    if (flag === "-s" || flag === "-d") {
      const ip = parseIp(value)?.text;
      if (ip === undefined) return true;
      if (flag === "-s") src = ip;
      else dst = ip;
    } else if (flag === "-w") {
      zone = Number(value);
      if (!Number.isInteger(zone)) return true;
    } else if (flag !== "-p" && flag !== "-f") {
      return true;
    }
    i++;
  }
  return entries.some((e) => (src === undefined || e.src === src) && (dst === undefined || e.dst === dst) && (zone === undefined || e.zone === zone));
}
