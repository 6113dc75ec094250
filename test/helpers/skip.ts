// The visible reason a privileged suite does not run here. Registered only when something is
// missing (root, a dockerd): as root with everything present nothing is skipped, so the
// closing line's skipped count means what it says.

import { describe, it } from 'vitest';

export function skipBecause(missing: boolean, name: string, reason: string): void {
  if (missing) describe(name, () => it.skip(reason, () => {}));
}
