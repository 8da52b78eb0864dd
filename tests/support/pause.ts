/**
 * Stops a process with SIGSTOP and waits until the kernel reports it stopped ("T"), so that
 * nothing it would still have answered slips through after the call.
 */
export async function pauseProcess(proc: { pid: number; kill(signal?: number | NodeJS.Signals): void }): Promise<void> {
  proc.kill('SIGSTOP')
  for (let i = 0; i < 200; i++) {
    const stat = await Bun.file(`/proc/${proc.pid}/stat`)
      .text()
      .catch(() => '')
    if (!stat || / T /.test(stat.slice(stat.lastIndexOf(')')))) return
    await Bun.sleep(5)
  }
}
