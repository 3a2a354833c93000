'use strict'

// neostandard (the style of the Fastify plugins), with its TypeScript rules on .ts/.mts/.cts files.
const neostandard = require('neostandard')

module.exports = [
  ...neostandard({
    ts: true,
    ignores: [
      ...neostandard.resolveIgnoresFromGitignore(),
      'dist/**',
      'coverage/**',
      'node_modules/**'
    ]
  }),
  {
    rules: {
      // neostandard wants exactly `resolve`; files that import `resolve` from node:path name
      // the promise's resolver `resolvePromise` instead of shadowing it. Still a resolve name.
      'promise/param-names': ['error', { resolvePattern: '^_?resolve', rejectPattern: '^_?reject' }]
    }
  }
]
