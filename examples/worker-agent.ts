#!/usr/bin/env bun
/**
 * The worker integration pattern: a worker agent that executes a subtask and logs as it goes
 * through WorkerLogger, which never blocks or fails the work, even when the server is down.
 *
 *   bun examples/worker-agent.ts <subtask_id> [base_url] [--fail] [--delay-ms <n>]
 *
 * The run includes an optional step that fails: the agent logs the error and carries on.
 * With --fail a required step fails too: the agent logs "Task failed: …", marks the subtask
 * failed and exits with 1. TASKLOG_TOKEN, when set, is sent as the access token (the SDK reads it).
 */
import { TasklogApi, WorkerLogger, canonicalUuid, type Status } from '../clients/ts/src'
import { delayOption, parseCommandLine } from './send-log'

interface Step {
  name: string
  /** A failed optional step is logged and skipped; a failed required step fails the task. */
  optional?: boolean
  run(): Promise<Record<string, unknown>>
}

class WorkerAgent {
  private readonly log: WorkerLogger
  private readonly api: TasklogApi

  constructor(
    readonly subtaskId: string,
    readonly backendUrl: string,
    readonly workerName = `worker-${process.pid}`,
  ) {
    // A warning once per cause when lines are lost, as the task must go on regardless.
    this.log = new WorkerLogger(subtaskId, backendUrl, {
      maxAttempts: 4,
      onProblem: (message) => console.warn(`Warning: logs not delivered: ${message}`),
    })
    this.api = new TasklogApi(backendUrl)
  }

  /** Runs the steps; rethrows the error of a failed required step after logging it. */
  async executeTask(steps: Step[]): Promise<void> {
    await this.setStatus('in_progress')
    this.log.info('Task execution started', { worker: this.workerName, steps: steps.length })
    let outcome: Status = 'failed'
    let current = ''
    try {
      for (const [i, step] of steps.entries()) {
        current = step.name
        this.log.info(`Processing step ${i + 1}: ${step.name}`, { step: i + 1, of: steps.length })
        try {
          const result = await step.run()
          this.log.debug(`Step ${i + 1} done`, result)
        } catch (error) {
          if (!step.optional) throw error
          this.log.error(`Optional step failed: ${step.name}: ${(error as Error).message}`, { step: i + 1 })
        }
      }
      this.log.info('Task completed successfully')
      outcome = 'completed'
    } catch (error) {
      this.log.error(`Task failed: ${(error as Error).message}`, { step: current })
      throw error
    } finally {
      // Deliver the last lines before the final status, so watchers see them in that order,
      // but wait a few seconds at most: finishing must not depend on the log server.
      const stats = await this.log.close(5_000)
      console.log(`Logs: ${stats.sent} sent, ${stats.rejected + stats.overflowed + stats.failed} lost`)
      await this.setStatus(outcome)
    }
  }

  /** Status updates are best effort too: a failure is reported, never thrown. */
  private async setStatus(status: Status): Promise<void> {
    try {
      await this.api.updateSubtask(this.subtaskId, { status, worker_name: this.workerName })
    } catch (error) {
      console.warn(`Warning: could not set status ${status}: ${(error as Error).message}`)
    }
  }
}

async function main(argv: string[]): Promise<number> {
  const usage = () => {
    console.error('Usage: bun examples/worker-agent.ts <subtask_id> [base_url] [--fail] [--delay-ms <n>]')
    return 1
  }
  const args = parseCommandLine(argv, { options: ['--delay-ms'], flags: ['--fail'] })
  if (typeof args === 'string') return usage()
  const [subtaskId, baseUrl = 'http://localhost:8000', extra] = args.positional
  const delayMs = delayOption(args.options) ?? 300
  if (!subtaskId || !canonicalUuid(subtaskId) || !URL.canParse(baseUrl) || extra || Number.isNaN(delayMs)) return usage()
  // Simulated work: each step takes delayMs, then returns its result or fails.
  const work = (result: Record<string, unknown>) => () => Bun.sleep(delayMs).then(() => result)
  const fails = (message: string) => () => Bun.sleep(delayMs).then(() => Promise.reject(new Error(message)))
  const steps: Step[] = [
    { name: 'Download input', run: work({ files: 3, bytes: 1_048_576 }) },
    { name: 'Transform records', run: work({ records: 3000 }) },
    { name: 'Send notification email', optional: true, run: fails('SMTP server unavailable') },
    { name: 'Upload results', run: args.options.has('--fail') ? fails('storage quota exceeded') : work({ uploaded: 3 }) },
  ]
  const agent = new WorkerAgent(subtaskId, baseUrl)
  console.log(`Worker ${agent.workerName} executing subtask ${subtaskId}`)
  try {
    await agent.executeTask(steps)
    console.log('Task completed successfully')
    return 0
  } catch (error) {
    console.error(`Task failed: ${(error as Error).message}`)
    return 1
  }
}

if (import.meta.main) process.exit(await main(Bun.argv.slice(2)))
