/** Nearest-rank percentile (p in 0..100) of the finite values; NaN when there are none. */
export function percentile (values: readonly number[], p: number): number {
  const sorted = values.filter(Number.isFinite).sort((a, b) => a - b)
  if (sorted.length === 0) return NaN
  const rank = Math.ceil((p / 100) * sorted.length)
  return sorted[Math.min(sorted.length - 1, Math.max(0, rank - 1))] as number
}

export function median (values: readonly number[]): number {
  return percentile(values, 50)
}

/** The median of every numeric field across rounds; other fields come from the first round. */
export function medianOf<T extends object> (rounds: readonly T[]): T {
  const first = rounds[0]
  if (first === undefined) throw new Error('medianOf: no rounds')
  const out: Record<string, unknown> = { ...(first as Record<string, unknown>) }
  for (const [key, value] of Object.entries(first)) {
    if (typeof value === 'number') out[key] = median(rounds.map((round) => (round as Record<string, unknown>)[key] as number))
  }
  return out as T
}

export function round (value: number, digits = 1): number {
  if (!Number.isFinite(value)) return value
  const factor = 10 ** digits
  return Math.round(value * factor) / factor
}

export const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms))
