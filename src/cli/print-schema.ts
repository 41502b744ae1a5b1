import { writeFileSync } from 'node:fs';
import { printSchema } from 'graphql';
import { schema } from '../schema/index.js';

// Writes the schema the server serves to schema.graphql (checked in; a test fails when stale).
writeFileSync(new URL('../../schema.graphql', import.meta.url), `${printSchema(schema)}\n`);
