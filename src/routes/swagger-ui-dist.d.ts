/** Swagger UI's files, imported `with { type: 'file' }`: each is its path (inside the binary when compiled). */
declare module 'swagger-ui-dist/swagger-ui.css' {
  const path: string
  export default path
}
declare module 'swagger-ui-dist/swagger-ui-bundle.js' {
  const path: string
  export default path
}
