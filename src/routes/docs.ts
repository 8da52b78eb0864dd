import { Elysia } from 'elysia'
import { swagger } from '@elysiajs/swagger'
import { dirname, join } from 'node:path'

const assetDir = dirname(Bun.resolveSync('swagger-ui-dist/package.json', import.meta.dir))
const asset = (file: string, type: string) =>
  new Response(Bun.file(join(assetDir, file)), { headers: { 'content-type': type, 'cache-control': 'public, max-age=86400' } })

// The plugin's own page loads Swagger UI from a CDN; this one serves it from the installed
// swagger-ui-dist package so the docs work with no internet access.
const page = `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8" />
  <meta name="viewport" content="width=device-width, initial-scale=1" />
  <title>tasklog API</title>
  <link rel="stylesheet" href="/swagger/assets/swagger-ui.css" />
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/swagger/assets/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: '/swagger/json', dom_id: '#swagger-ui', deepLinking: true, validatorUrl: null })
  </script>
</body>
</html>`

export const docsRoutes = new Elysia({ name: 'docs' })
  .use(
    swagger({
      provider: 'swagger-ui',
      path: '/swagger',
      exclude: [/^\/swagger/],
      documentation: {
        info: {
          title: 'tasklog',
          version: '0.1.0',
          description:
            'Real-time log streaming for distributed task execution. Workers POST log lines; watchers follow a task live over WebSocket (`/api/v1/ws/tasks/{task_id}/logs`) or Server-Sent Events.',
        },
        tags: [
          { name: 'tasks', description: 'Tasks and their decomposition into subtasks' },
          { name: 'subtasks', description: 'Subtask status and worker assignment' },
          { name: 'logs', description: 'Log ingest and history' },
          { name: 'stream', description: 'Live log streams' },
          { name: 'ops', description: 'Health, readiness and metrics' },
        ],
      },
    }),
  )
  // Registered after the plugin so this static page replaces the plugin's CDN page.
  .get('/swagger', new Response(page, { headers: { 'content-type': 'text/html; charset=utf-8' } }), { detail: { hide: true } })
  .get('/swagger/assets/swagger-ui.css', asset('swagger-ui.css', 'text/css; charset=utf-8'), { detail: { hide: true } })
  .get('/swagger/assets/swagger-ui-bundle.js', asset('swagger-ui-bundle.js', 'text/javascript; charset=utf-8'), {
    detail: { hide: true },
  })
