/**
 * The value, or an error that names what is missing: a test fails where the value was expected, with
 * a reason, not later on a TypeError (what a non-null assertion would give).
 */
export function defined<T>(value: T | null | undefined, what: string): T {
  if (value === undefined || value === null) throw new Error(`no ${what}`);
  return value;
}
