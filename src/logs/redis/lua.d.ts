/** Lua scripts are imported as text (`with { type: 'text' }`), also into a compiled binary. */
declare module '*.lua' {
  const source: string
  export default source
}
