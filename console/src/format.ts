// Numbers as the pages show them: always with their unit, "—" for a value
// that does not exist (never NaN), and about three significant digits so
// figures do not jitter between refreshes.

export const NONE = "—";

const counts = new Intl.NumberFormat("en");

/** 0–2 decimals by magnitude: 4.56, 45.6, 456. */
export function num(v: number): string {
  const a = Math.abs(v);
  const digits = a >= 100 || a === 0 ? 0 : a >= 10 ? 1 : 2;
  return counts.format(Number(v.toFixed(digits)));
}

const unit = (u: string) => (v: number | null) => (v === null || !Number.isFinite(v) ? NONE : `${num(v)} ${u}`);

export const count = (v: number | null) => (v === null || !Number.isFinite(v) ? NONE : counts.format(Math.round(v)));
export const rate = unit("req/s");
export const ms = unit("ms");
export const seconds = unit("s");
/** A share (0–1) as a percentage. */
export const percent = (share: number | null) => unit("%")(share === null ? null : share * 100);

/** A difference with its sign and, when the baseline is not 0, its
 * relative size: `+12.3 ms (+8 %)`. */
export function delta(d: number | null, relative: number | null, u: string): string {
  if (d === null || !Number.isFinite(d)) return NONE;
  const sign = (v: number) => (v < 0 ? "-" : "+");
  const abs = `${sign(d)}${num(Math.abs(d))} ${u}`;
  if (relative === null || !Number.isFinite(relative)) return abs;
  return `${abs} (${sign(relative)}${Math.round(Math.abs(relative) * 100)} %)`;
}

/** How long ago, coarsely: "<1 min", "3 min", "2 h 5 min", "4 d 1 h". */
export function age(secondsAgo: number): string {
  const m = Math.floor(Math.max(0, secondsAgo) / 60);
  if (m < 1) return "<1 min";
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  if (h < 24) return m % 60 ? `${h} h ${m % 60} min` : `${h} h`;
  const d = Math.floor(h / 24);
  return h % 24 ? `${d} d ${h % 24} h` : `${d} d`;
}

/** A clock time for axis-free places ("updated 14:05:09"). */
export const clock = (d: Date) => d.toLocaleTimeString("en-GB", { hour12: false });
