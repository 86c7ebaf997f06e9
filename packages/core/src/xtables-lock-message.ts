/**
 * What the legacy tools print when the xtables lock is held by someone else ("Can't lock
 * /run/xtables.lock: Resource temporarily unavailable", "Another app is currently holding the
 * xtables lock..."). Internal: the restore classifier and the hold's probe read the same words.
 */
export const XTABLES_LOCK_HELD = /xtables lock|Can't lock|holding the xtables lock/i;
