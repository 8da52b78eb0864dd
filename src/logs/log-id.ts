/** Compares two log ids (`<ms>-<seq>`) numerically: negative, zero or positive. */
export function compareLogIds(a: string, b: string): number {
  const da = a.indexOf('-')
  const db = b.indexOf('-')
  const ms = Number(a.slice(0, da)) - Number(b.slice(0, db))
  return ms !== 0 ? ms : Number(a.slice(da + 1)) - Number(b.slice(db + 1))
}
