/**
 * Top functions of a `bun --cpu-prof` profile (Chrome .cpuprofile format), by samples.
 *
 *   bun bench/profile-top.ts <file.cpuprofile> [N=25]
 *
 * Bun's sampler records only while JavaScript (or native code it called) runs; an idle gap
 * shows up as one long time delta, so sample counts, not time deltas, measure busy time.
 * "self" = samples whose top frame is the function; "total" = samples with it on the stack.
 */
export {}

interface ProfileNode {
  id: number
  callFrame: { functionName: string; url: string; lineNumber: number; columnNumber: number }
  children?: number[]
}
interface Profile {
  nodes: ProfileNode[]
  samples: number[]
  timeDeltas: number[]
}

const [file, n = '25'] = process.argv.slice(2)
if (!file) {
  console.error('usage: bun bench/profile-top.ts <file.cpuprofile> [N]')
  process.exit(2)
}
const profile = (await Bun.file(file).json()) as Profile
const parent = new Map<number, number>()
for (const node of profile.nodes) for (const child of node.children ?? []) parent.set(child, node.id)
const byId = new Map(profile.nodes.map((node) => [node.id, node]))
const label = (node: ProfileNode) => {
  const f = node.callFrame
  const where = f.url ? ` ${f.url.replace(/^.*\/(node_modules|src|bench)\//, '$1/')}:${f.lineNumber + 1}` : ''
  return `${f.functionName || '(anonymous)'}${where}`
}
const selfCount = new Map<string, number>()
const totalCount = new Map<string, number>()
let samples = 0
for (const id of profile.samples) {
  const node = byId.get(id)
  if (!node) continue
  samples++
  const key = label(node)
  selfCount.set(key, (selfCount.get(key) ?? 0) + 1)
  const seen = new Set<string>()
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = label(byId.get(cur)!)
    if (seen.has(k)) continue
    seen.add(k)
    totalCount.set(k, (totalCount.get(k) ?? 0) + 1)
  }
}
console.log(`${file}: ${samples} samples`)
console.log('| self % | total % | function |\n| ---: | ---: | --- |')
for (const [key, count] of [...selfCount].sort((a, b) => b[1] - a[1]).slice(0, Number(n)))
  console.log(
    `| ${((100 * count) / samples).toFixed(1)} | ${((100 * (totalCount.get(key) ?? 0)) / samples).toFixed(1)} | ${key.replaceAll('|', '\\|')} |`,
  )
