/**
 * Profiles: what a profile is (profile.schema.json; its TypeScript view, profile-types.ts),
 * loading one (profile-load.ts), validating it (profile-validation.ts) and registering its
 * parents in an emulation (profile-registration.ts).
 */
export { BUILTIN_PROFILES, loadParents, loadProfile, syntaxErrorAt } from './profile-load';
export { ProfileError, namedIommuGroups, profileProblems, validateProfile } from './profile-validation';
export { type Registrar, isProfileParentRegistered, registerProfileParent, reserveIommuGroups } from './profile-registration';
