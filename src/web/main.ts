import { taskPage } from './task-page'
import { tasksPage } from './tasks-page'

const root = document.getElementById('app')!
const task = /^\/tasks\/([^/]+)\/?$/.exec(location.pathname)
if (task) void taskPage(root, decodeURIComponent(task[1]!))
else void tasksPage(root)
