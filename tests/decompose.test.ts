import { describe, expect, test } from 'bun:test'
import { type Decomposer, decompose, simpleDecomposer } from '../src/tasks/decompose'

describe('decompose: lists', () => {
  test('numbered "1." lines become subtasks, markers and trailing full stops stripped', () => {
    expect(decompose('1. Fetch the data.\n2. Clean it.\n3. Train the model.')).toEqual([
      'Fetch the data',
      'Clean it',
      'Train the model',
    ])
  })

  test('"1)" and "(1)" styles', () => {
    expect(decompose('1) Provision the VM\n2) Install Redis\n(3) Run the smoke test')).toEqual([
      'Provision the VM',
      'Install Redis',
      'Run the smoke test',
    ])
  })

  test('"Step 3:" style', () => {
    expect(decompose('Step 1: Back up the database\nStep 2: Run migrations\nStep 3: Verify row counts')).toEqual([
      'Back up the database',
      'Run migrations',
      'Verify row counts',
    ])
  })

  test('"-", "*" and "•" bullets', () => {
    expect(decompose('- Write the parser\n* Write the tests\n• Update the docs')).toEqual([
      'Write the parser',
      'Write the tests',
      'Update the docs',
    ])
  })

  test('a preamble line before a list is dropped: only the list items become subtasks', () => {
    expect(decompose('Prepare the release:\n1. Bump the version\n2. Tag the commit\n3. Publish')).toEqual([
      'Bump the version',
      'Tag the commit',
      'Publish',
    ])
  })

  test('an indented line after an item continues it; an unindented closing remark is dropped', () => {
    expect(decompose('- Export the orders\n  from last quarter\n- Email the CSV\nThanks!')).toEqual([
      'Export the orders from last quarter',
      'Email the CSV',
    ])
  })

  test('a single bulleted item gives that item', () => {
    expect(decompose('- Rotate the API keys')).toEqual(['Rotate the API keys'])
  })

  test('"3.5" at a line start is not a list marker', () => {
    expect(decompose('3.5 GB of logs need archiving.')).toEqual(['3.5 GB of logs need archiving.'])
  })
})

describe('decompose: prose', () => {
  test('"First ..., then ..., then ..." splits on the joiners and strips them', () => {
    expect(decompose('First fetch the data, then clean it, then train the model.')).toEqual([
      'Fetch the data',
      'Clean it',
      'Train the model',
    ])
  })

  test('"First, ..., and then ..., and finally ..."', () => {
    expect(decompose('First, fetch the data, and then clean it, and finally train the model.')).toEqual([
      'Fetch the data',
      'Clean it',
      'Train the model',
    ])
  })

  test('sentences split on ".", "!" and "?"; "!" and "?" are kept, a leading "Then" dropped', () => {
    expect(decompose('Fetch the data. Clean it! Is the model still good? Then deploy.')).toEqual([
      'Fetch the data',
      'Clean it!',
      'Is the model still good?',
      'Deploy',
    ])
  })

  test('semicolons split clauses', () => {
    expect(decompose('Stop the workers; drain the queue; restart Redis')).toEqual([
      'Stop the workers',
      'Drain the queue',
      'Restart Redis',
    ])
  })

  test('unmarked lines are steps; a line starting lowercase continues the previous one', () => {
    expect(decompose('Migrate the database\nUpdate the API and\nthe client\nDeploy')).toEqual([
      'Migrate the database',
      'Update the API and the client',
      'Deploy',
    ])
  })

  test('a single sentence gives one subtask equal to the description', () => {
    const description = 'Train the model on the new data.'
    expect(decompose(description)).toEqual([description])
  })

  test('a bare "then" joins steps too (sentences joined by "then")', () => {
    expect(decompose('Compile then test then deploy')).toEqual(['Compile', 'Test', 'Deploy'])
    expect(decompose('Download the file then unzip it.')).toEqual(['Download the file', 'Unzip it'])
  })

  test('a conditional "if ... then ..." and "then" as a time are one step', () => {
    for (const one of [
      'If the build fails then retry it once.',
      'If the build fails, then retry it once.',
      'Retry when the mirror is back then report the result.',
      'Keep the old cluster until then.',
      'Wait for the backup and by then stop the writes.',
    ])
      expect(decompose(one)).toEqual([one])
  })

  test('decimals, abbreviations and URLs are not split', () => {
    expect(
      decompose(
        'Use a learning rate of 3.5 e.g. for the small model, i.e. the default. ' +
          'Deploy to example.com and check https://example.com/v1.2/health. Compare vs. last week.',
      ),
    ).toEqual([
      'Use a learning rate of 3.5 e.g. for the small model, i.e. the default',
      'Deploy to example.com and check https://example.com/v1.2/health',
      'Compare vs. last week',
    ])
  })

  test('"etc." ends a step only before a capitalised word', () => {
    expect(decompose('Install deps, linters, etc. Then run the tests, lint etc. and ship.')).toEqual([
      'Install deps, linters, etc.',
      'Run the tests, lint etc. and ship',
    ])
  })
})

describe('decompose: noise and limits', () => {
  test('tabs, blank lines and trailing spaces are collapsed and ignored', () => {
    expect(decompose('  \tFetch   the data.  \n\n\n\t Clean\tit.   \n  ')).toEqual(['Fetch the data', 'Clean it'])
  })

  test('CRLF line endings', () => {
    expect(decompose('1. Fetch the data\r\n2. Clean it\r\n\r\n3. Train the model\r\n')).toEqual([
      'Fetch the data',
      'Clean it',
      'Train the model',
    ])
    expect(decompose('Fetch the data\r\nClean it\r\n')).toEqual(['Fetch the data', 'Clean it'])
  })

  test('"   x   " gives ["x"]', () => {
    expect(decompose('   x   ')).toEqual(['x'])
  })

  test('a single step spread over whitespace noise is the collapsed description', () => {
    expect(decompose('  Train\tthe   model\n  ')).toEqual(['Train the model'])
  })

  test('punctuation-only text stays one subtask, never empty', () => {
    expect(decompose('...')).toEqual(['...'])
    expect(decompose(';;;')).toEqual([';;;'])
  })

  test('a blank description is rejected', () => {
    expect(() => decompose(' \n\t ')).toThrow(RangeError)
  })

  test('10,000 chars of sentences give 100 subtasks, the tail merged into the 100th', () => {
    const sentences = Array.from({ length: 1000 }, (_, i) => `Task ${String(i).padStart(3, '0')}.`)
    const text = sentences.join(' ')
    expect(text.length).toBe(9999)
    const result = decompose(text)
    expect(result).toHaveLength(100)
    expect(result.slice(0, 3)).toEqual(['Task 000', 'Task 001', 'Task 002'])
    expect(result[98]).toBe('Task 098')
    const last = result[99] ?? ''
    expect(last.startsWith('Task 099; Task 100; ')).toBe(true)
    expect(last.endsWith('; Task 999')).toBe(true)
  })

  test('more than 100 list items: the tail is merged into the 100th', () => {
    const text = Array.from({ length: 150 }, (_, i) => `- item ${i}`).join('\n')
    const result = decompose(text)
    expect(result).toHaveLength(100)
    expect(result[0]).toBe('item 0')
    expect(result[99]).toBe(Array.from({ length: 51 }, (_, i) => `item ${i + 99}`).join('; '))
  })

  test('pathological 10,000-char inputs return, each subtask at most 10,000 chars', () => {
    expect(decompose('x'.repeat(12_000))).toEqual(['x'.repeat(10_000)])
    expect(decompose(`${','.repeat(10_000)}a`)).toEqual([`${','.repeat(10_000)}a`.slice(0, 10_000)])
    expect(decompose('e.'.repeat(5_000))).toEqual(['e.'.repeat(5_000)])
    expect(decompose('a, then '.repeat(1_250))).toHaveLength(100)
  })

  test('every subtask is trimmed and non-empty', () => {
    for (const text of ['- a\n-  \n- b', 'x; ; y', 'One.  . Two.', 'First, then x']) {
      for (const item of decompose(text)) {
        expect(item).toBe(item.trim())
        expect(item).not.toBe('')
      }
    }
    expect(decompose('- a\n-  \n- b')).toEqual(['a', 'b'])
    expect(decompose('x; ; y')).toEqual(['X', 'Y'])
  })
})

test('simpleDecomposer implements Decomposer with decompose', () => {
  const decomposer: Decomposer = simpleDecomposer
  expect(decomposer.decompose('Fetch the data; clean it')).toEqual(['Fetch the data', 'Clean it'])
})
