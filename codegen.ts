import type { CodegenConfig } from '@graphql-codegen/cli';

// `npm run codegen`: typed documents for the operations the tests and load scripts send.
// The schema is the one the server prints (`npm run schema:print` writes schema.graphql).
const config: CodegenConfig = {
  schema: 'schema.graphql',
  documents: ['test/support/operations.ts', 'load/**/*.ts', '!load/**/*.d.ts'],
  ignoreNoDocuments: true,
  generates: {
    'src/generated/graphql/': {
      preset: 'client',
      config: { emitLegacyCommonJSImports: false, useTypeImports: true, enumsAsTypes: true, scalars: { DateTime: 'string', BigInt: 'string' } },
      presetConfig: { fragmentMasking: false, persistedDocuments: { hashAlgorithm: 'sha256' } },
    },
    // Which types each union and interface may be, for a client's normalized cache: Apollo Client
    // (`new InMemoryCache({ possibleTypes })`) needs it to match fragments
    // such as `... on UserError`. Kept fresh by test/possible-types.test.ts.
    'src/generated/graphql/possible-types.json': {
      plugins: ['fragment-matcher'],
      config: { apolloClientVersion: 3, deterministic: true },
    },
  },
};

export default config;
