import { readFileSync } from 'node:fs';
import t from 'tap';
import { TYPES_PATH, profileTypes } from '../../src/drivers/build-profile-types';

// The profile format has one description, src/drivers/profile.schema.json; profile-types.ts is
// generated from it by `npm run build` and committed. A schema changed without a build, or a
// generated file edited by hand, fails here.
t.test('profile-types.ts is what the schema gives', async (t) => {
  t.equal(readFileSync(TYPES_PATH, 'utf8'), await profileTypes(), 'run npm run build and commit src/drivers/profile-types.ts');
});
