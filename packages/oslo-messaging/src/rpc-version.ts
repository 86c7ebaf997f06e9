/**
 * oslo.messaging's `version_is_compatible(imp_version, version)`: an endpoint implementing
 * `imp` serves a request for `version` when the majors are equal and the request's minor (then
 * revision) is not newer. `null` as `imp` accepts everything; a request without a version is
 * refused. Throws on a version that is not `major.minor[.rev]` integers, as Python's `int()` would.
 */
export function versionIsCompatible(imp: string | null | undefined, version: string | null | undefined): boolean {
  if (imp === null || imp === undefined) return true;
  if (version === null || version === undefined) return false;
  const [major, minor, rev] = parts(version);
  const [impMajor, impMinor, impRev] = parts(imp);
  if (major !== impMajor) return false;
  if (minor > impMinor) return false;
  if (minor === impMinor && rev > impRev) return false;
  return true;
}

function parts(version: string): [number, number, number] {
  const split = String(version).split(".");
  const number = (text: string | undefined, fallback?: number): number => {
    if (text === undefined && fallback !== undefined) return fallback;
    if (text === undefined || !/^\s*[+-]?\d+\s*$/.test(text)) throw new Error(`RPC version ${JSON.stringify(version)} is not major.minor[.revision] integers`);
    return Number(text);
  };
  return [number(split[0]), number(split[1]), number(split[2], 0)];
}
