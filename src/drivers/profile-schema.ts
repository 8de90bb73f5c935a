import { createHash } from 'node:crypto';
import { join } from 'node:path';

/** The published schema (src/drivers/profile.schema.json), read from the source tree in both src/ and dist/. */
export const SCHEMA_PATH = join(__dirname, '..', '..', 'src', 'drivers', 'profile.schema.json');

/**
 * The schema compiled ahead of time (ajv standalone code), written by `npm run build`
 * (dist/drivers/build-validator.js) and never committed: the schema file stays the source of
 * truth. Found from src/ (tests run through tsx) and dist/ alike.
 */
export const GENERATED_VALIDATOR_PATH = join(__dirname, '..', '..', 'dist', 'drivers', 'profile-validator.js');

/** The ajv options of both the generated validator and the run-time fallback: the messages depend on them. */
export const AJV_OPTIONS = { allErrors: true, verbose: true, discriminator: true, strict: false } as const;

/** Names the schema text a generated validator was made from; one made from another text is not used. */
export function schemaDigest(schemaText: string): string {
  return createHash('sha256').update(JSON.stringify(AJV_OPTIONS)).update(schemaText).digest('hex');
}
