/**
 * ISO-8601 weeks in UTC: a week starts Monday 00:00 UTC and belongs to the year of its Thursday,
 * so 2021-01-03 (a Sunday) is in 2020-W53 and 2024-12-30 (a Monday) is in 2025-W01. UTC, not
 * local time: instances in different zones must agree on which week a range call fell in.
 */
const DAY_MS = 86_400_000;
export const WEEK_MS = 7 * DAY_MS;

/** Monday 00:00 UTC of the ISO week holding `ms`. */
export function isoWeekStart(ms: number): number {
  const dayStart = Math.floor(ms / DAY_MS) * DAY_MS;
  const mondayBased = (new Date(dayStart).getUTCDay() + 6) % 7; // Monday 0 ... Sunday 6
  return dayStart - mondayBased * DAY_MS;
}

/** `YYYY-Www` of the ISO week holding `ms`. */
export function isoWeek(ms: number): string {
  const thursday = isoWeekStart(ms) + 3 * DAY_MS;
  const year = new Date(thursday).getUTCFullYear();
  // Week 1 is the week with the year's first Thursday, which falls on Jan 1..7; so the Thursday
  // of week n falls 7(n-1)..7(n-1)+6 days after Jan 1.
  const week = 1 + Math.floor((thursday - Date.UTC(year, 0, 1)) / WEEK_MS);
  return `${year}-W${String(week).padStart(2, '0')}`;
}

/** `YYYY-Www` of the week `weeksBack` weeks before the one holding `ms`. */
export function isoWeekBefore(ms: number, weeksBack: number): string {
  return isoWeek(isoWeekStart(ms) - weeksBack * WEEK_MS);
}

export const ISO_WEEK_PATTERN = /^\d{4}-W(0[1-9]|[1-4]\d|5[0-3])$/;
