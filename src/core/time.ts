/** ISO 8601 in UTC with microseconds and a Z, as Keystone renders expires_at. */
export function isoMicro(date: Date): string {
  return date.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z');
}
